//! image-builder checks system descriptions like a compiler: each bad input gets
//! an error naming the file, line and column, the service and the offending item.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod support;

use std::path::PathBuf;

/// Writes `files` and a `system.toml` into a fresh folder; returns the description.
fn scenario(name: &str, system: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("image-builder")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, bytes) in files {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    let path = dir.join("system.toml");
    std::fs::write(&path, system).unwrap();
    path
}

/// Runs `image-builder check`; returns (exit status, stderr).
fn check(system: &PathBuf) -> (i32, String) {
    let output = support::image_builder()
        .arg("check")
        .arg(system)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

const GOOD: &str = r#"(module
    (import "atoll" "log" (func (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start")))"#;

#[test]
fn a_valid_system_passes() {
    let system = scenario(
        "valid",
        "[system]\nname = \"ok\"\n\n[[service]]\nname = \"good\"\nmodule = \"good.wasm\"\n",
        &[("good.wasm", wasm(GOOD))],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains("system `ok`: 1 services, all valid"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_module_is_rejected_with_its_service_and_line() {
    let system = scenario(
        "malformed",
        "[system]\nname = \"bad\"\n\n[[service]]\nname = \"broken\"\nmodule = \"broken.wasm\"\n",
        &[("broken.wasm", b"\0asm\x01\0\0\0\x01\xff".to_vec())],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("error: service `broken`: module "),
        "{stderr}"
    );
    assert!(stderr.contains("broken.wasm: invalid module:"), "{stderr}");
    assert!(
        stderr.contains(&format!("--> {}:6:10", system.display())),
        "{stderr}"
    );
    assert!(stderr.contains("6 | module = \"broken.wasm\""), "{stderr}");
}

#[test]
fn a_module_with_an_unknown_import_is_rejected_naming_the_import() {
    let module = wasm(
        r#"(module
            (import "env" "open_door" (func))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
    );
    let system = scenario(
        "unknown-import",
        "[system]\nname = \"bad\"\n\n[[service]]\nname = \"good\"\nmodule = \"good.wasm\"\n\n[[service]]\nname = \"sneaky\"\nmodule = \"sneaky.wasm\"\n",
        &[("good.wasm", wasm(GOOD)), ("sneaky.wasm", module)],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("error: service `sneaky`: module ")
            && stderr.contains("sneaky.wasm: imports unknown function `env::open_door`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--> {}:10:10", system.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("service `good`"), "{stderr}");
}

#[test]
fn an_import_with_the_wrong_signature_is_rejected() {
    let module = wasm(
        r#"(module
            (import "atoll" "log" (func (param i64)))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
    );
    let system = scenario(
        "wrong-signature",
        "[system]\nname = \"bad\"\n[[service]]\nname = \"odd\"\nmodule = \"odd.wasm\"\n",
        &[("odd.wasm", module)],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("imports `atoll::log` with a signature other than the ABI's"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_field_is_rejected_with_its_line() {
    let system = scenario(
        "unknown-field",
        "[system]\nname = \"bad\"\n\n[[service]]\nname = \"good\"\nmodule = \"good.wasm\"\ncolour = \"blue\"\n",
        &[("good.wasm", wasm(GOOD))],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("error: unknown field `colour`, expected one of"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--> {}:7:1", system.display())),
        "{stderr}"
    );
}

#[test]
fn a_missing_module_file_is_rejected() {
    let system = scenario(
        "missing-file",
        "[system]\nname = \"bad\"\n[[service]]\nname = \"ghost\"\nmodule = \"ghost.wasm\"\n",
        &[],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("error: service `ghost`: cannot read module"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--> {}:5:10", system.display())),
        "{stderr}"
    );
}

#[test]
fn a_crate_outside_the_workspace_is_rejected() {
    let system = scenario(
        "missing-crate",
        "[system]\nname = \"bad\"\n[[service]]\nname = \"ghost\"\ncrate = \"no-such-service\"\n",
        &[],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("error: service `ghost`: no crate `no-such-service` in the workspace"),
        "{stderr}"
    );
}

#[test]
fn a_module_without_entry_point_is_rejected() {
    let system = scenario(
        "no-entry",
        "[system]\nname = \"bad\"\n[[service]]\nname = \"idle\"\nmodule = \"idle.wasm\"\n",
        &[(
            "idle.wasm",
            wasm(r#"(module (memory (export "memory") 1))"#),
        )],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("no exported `_start: () -> ()`"),
        "{stderr}"
    );
}

#[test]
fn an_endpoint_nobody_provides_is_rejected_with_its_line() {
    let system = scenario(
        "unprovided",
        "[system]\nname = \"bad\"\n[[service]]\nname = \"client\"\nmodule = \"good.wasm\"\nuses = [\"nobody\"]\n",
        &[("good.wasm", wasm(GOOD))],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr
            .contains("error: service `client` uses endpoint `nobody`, which no service provides"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--> {}:6:9", system.display())),
        "{stderr}"
    );
}

#[test]
fn the_kernel_core_runs_hosted_on_linux() {
    let output = support::image_builder()
        .arg("host-run")
        .arg(support::system("echo"))
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("atoll: hosted kernel core on Linux"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[echo-client] echo replied: hello over IPC"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[echo-client] 10 pings, 10 pongs"),
        "{stdout}"
    );
}

#[test]
fn stubbed_wasi_imports_are_listed_as_a_warning() {
    let module = wasm(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_advise" (func (param i32 i64 i64 i32) (result i32)))
            (import "wasi_snapshot_preview1" "path_symlink"
                (func (param i32 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
    );
    let system = scenario(
        "wasi-stubs",
        "[system]\nname = \"w\"\n[[service]]\nname = \"posix\"\nmodule = \"posix.wasm\"\n",
        &[("posix.wasm", module)],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains(
            "warning: service `posix` imports WASI functions the WASI shim only stubs (they return ENOSYS, or EBADF for a missing descriptor): fd_advise, path_symlink"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--> {}:5:10", system.display())),
        "{stderr}"
    );
}

#[test]
fn a_build_command_runs_before_the_module_is_read_and_its_failure_is_reported() {
    let system = scenario(
        "build-command",
        "[system]\nname = \"b\"\n[[service]]\nname = \"made\"\nmodule = \"out/made.wasm\"\nbuild = \"mkdir -p out && cp good.wasm out/made.wasm\"\n",
        &[("good.wasm", wasm(GOOD))],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 0, "{stderr}");
    assert!(system.with_file_name("out/made.wasm").exists());

    let system = scenario(
        "build-command-fails",
        "[system]\nname = \"b\"\n[[service]]\nname = \"broken\"\nmodule = \"never.wasm\"\nbuild = \"echo compiler says no >&2; exit 3\"\n",
        &[],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("error: service `broken`: build command failed (exit status: 3):")
            && stderr.contains("compiler says no")
            && stderr.contains(&format!("--> {}:6:9", system.display())),
        "{stderr}"
    );
}

#[test]
fn bad_wasi_arguments_and_environment_are_rejected() {
    let system = scenario(
        "bad-env",
        "[system]\nname = \"e\"\n[[service]]\nname = \"good\"\nmodule = \"good.wasm\"\nenv = { \"A=B\" = \"x\" }\n",
        &[("good.wasm", wasm(GOOD))],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("environment variable `A=B`: names are non-empty without `=` or NUL"),
        "{stderr}"
    );
}

/// A valid service whose one global is initialised by `depth` nested
/// `i32.add` (extended constant expressions), written as bytes.
fn nested_const_module(depth: usize) -> Vec<u8> {
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        let mut len = body.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            out.push(if len == 0 { byte } else { byte | 0x80 });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    section(3, &[1, 0], &mut module);
    section(5, &[1, 0, 1], &mut module);
    let mut global = vec![1, 0x7f, 0, 0x41, 1];
    for _ in 0..depth {
        global.extend_from_slice(&[0x41, 1, 0x6a]);
    }
    global.push(0x0b);
    section(6, &global, &mut module);
    let mut exports = vec![2, 6];
    exports.extend_from_slice(b"memory\x02\x00\x06_start\x00\x00");
    section(7, &exports, &mut module);
    section(10, &[1, 2, 0, 0x0b], &mut module);
    module
}

#[test]
fn nested_constant_expressions_are_rejected_without_overflowing_the_stack() {
    // 300,000 levels once overflowed image-builder's own stack (abort).
    let system = scenario(
        "nested-const",
        "[system]\nname = \"bad\"\n\n[[service]]\nname = \"deep\"\nmodule = \"deep.wasm\"\n",
        &[("deep.wasm", nested_const_module(300_000))],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains("deep.wasm: invalid module: a constant expression in the global section has more than 128 operators"),
        "{stderr}"
    );
}

#[test]
fn modules_the_kernel_would_refuse_at_boot_are_rejected_with_their_service_and_line() {
    // Before: check passed each of these; the kernel then refused them at boot.
    let service = |items: &str| {
        wasm(&format!(
            r#"(module (memory (export "memory") 1) {items} (func $f) (func (export "_start")))"#
        ))
    };
    let cases = [
        (
            "two-memories",
            service("(memory 1)"),
            "",
            "defines 2 linear memories; a service has exactly one",
        ),
        (
            "two-tables",
            service("(table 1 funcref) (table 1 funcref)"),
            "",
            "defines 2 tables; a service has at most one",
        ),
        (
            "big-memory",
            wasm(r#"(module (memory (export "memory") 3) (func (export "_start")))"#),
            "memory-limit-kib = 128\n",
            "its initial memory of 192 KiB is above the service's memory-limit-kib of 128",
        ),
        (
            "big-table",
            service("(table 100001 funcref)"),
            "",
            "its initial table of 100001 elements is above the kernel's cap of 100000",
        ),
        (
            "data-out-of-bounds",
            service(r#"(data (i32.const 65535) "ab")"#),
            "",
            "data segment 0 writes bytes 65535..65537, outside the initial memory of 65536 bytes",
        ),
        (
            "elements-out-of-bounds",
            service("(table 1 funcref) (elem (i32.const 1) func $f)"),
            "",
            "element segment 0 fills elements 1..2, outside the initial table of 1",
        ),
    ];
    for (name, module, extra, message) in cases {
        let system = scenario(
            name,
            &format!(
                "[system]\nname = \"bad\"\n\n[[service]]\nname = \"{name}\"\nmodule = \"m.wasm\"\n{extra}"
            ),
            &[("m.wasm", module)],
        );
        let (status, stderr) = check(&system);
        assert_eq!(status, 2, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("error: service `{name}`: module "))
                && stderr.contains(&format!("m.wasm: {message}")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("--> {}:6:10", system.display())),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn every_unknown_import_of_a_module_is_named() {
    let module = wasm(
        r#"(module
            (import "env" "open_door" (func))
            (import "atoll" "log" (func (param i32 i32) (result i32)))
            (import "env" "close_door" (func))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
    );
    let system = scenario(
        "unknown-imports",
        "[system]\nname = \"bad\"\n[[service]]\nname = \"sneaky\"\nmodule = \"sneaky.wasm\"\n",
        &[("sneaky.wasm", module)],
    );
    let (status, stderr) = check(&system);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr
            .contains("sneaky.wasm: imports unknown functions `env::open_door`, `env::close_door`"),
        "{stderr}"
    );
}

/// Runs `image-builder host-run --quiet`; returns (exit status, stdout, stderr).
fn host_run(system: &PathBuf) -> (i32, String, String) {
    let output = support::image_builder()
        .arg("host-run")
        .arg(system)
        .arg("--quiet")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn host_run_exits_with_1_when_a_service_faults_or_fails_to_load() {
    // Before: a service that failed to load left host-run's status at 0.
    let start_traps = wasm(
        r#"(module (memory (export "memory") 1) (func $s unreachable) (start $s)
            (func (export "_start")))"#,
    );
    let faults =
        wasm(r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#);
    for (name, module, summary) in [
        (
            "fails-to-load",
            start_traps,
            "atoll: no service can run: 1 exited, 0 faulted, 1 failed to load, 0 waiting for ever",
        ),
        (
            "faults",
            faults,
            "atoll: no service can run: 1 exited, 1 faulted, 0 failed to load, 0 waiting for ever",
        ),
    ] {
        let system = scenario(
            &format!("host-run-{name}"),
            &format!(
                "[system]\nname = \"h\"\nexit-when-idle = true\n[[service]]\nname = \"good\"\nmodule = \"good.wasm\"\n[[service]]\nname = \"{name}\"\nmodule = \"bad.wasm\"\n"
            ),
            &[("good.wasm", wasm(GOOD)), ("bad.wasm", module)],
        );
        let (status, stdout, stderr) = host_run(&system);
        assert_eq!(status, 1, "{name}: {stdout}\n{stderr}");
        assert!(stdout.contains(summary), "{name}: {stdout}");
        assert!(
            stderr.contains("image-builder: a service faulted or failed to load (exit status 1)"),
            "{name}: {stderr}"
        );
    }
    let system = scenario(
        "host-run-good",
        "[system]\nname = \"h\"\nexit-when-idle = true\n[[service]]\nname = \"good\"\nmodule = \"good.wasm\"\n",
        &[("good.wasm", wasm(GOOD))],
    );
    let (status, stdout, stderr) = host_run(&system);
    assert_eq!(status, 0, "{stdout}\n{stderr}");
}

#[test]
fn host_run_passes_its_stdin_to_a_wasi_program() {
    // Reads up to 64 bytes of fd 0 into 100 and writes what it got to fd 1.
    let echo = wasm(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "\64\00\00\00\40\00\00\00")
            (func (export "_start")
                (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
                (i32.store (i32.const 4) (i32.load (i32.const 8)))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    );
    let system = scenario(
        "host-run-stdin",
        "[system]\nname = \"h\"\nexit-when-idle = true\n[[service]]\nname = \"echo\"\nmodule = \"echo.wasm\"\n",
        &[("echo.wasm", echo)],
    );
    let mut child = support::image_builder()
        .arg("host-run")
        .arg(&system)
        .arg("--quiet")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed on the host\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("[echo] typed on the host\n"), "{stdout}");
}
