//! WASI programs and their shim: what the kernel does for them. WASI itself
//! lives in the user-space shim (`wasm-services/wasi-shim`, tested there and
//! by the QEMU suites); here a small WAT shim stands in for it, so that
//! these tests see only the kernel's part: linking a program's WASI imports
//! to its shim's exports, the shim's kernel functions (`program_read`,
//! `program_write`, `print`, `exit`; `stdin_read` is the hosted tests'),
//! the ABI's `startup` record, and the loader's rules.

use super::system::{LIMITS, TestSystem};
use crate::{LoadError, ServiceState};
use atoll_abi::startup::{Listener, Preopen, Startup};
use atoll_abi::wasi::FUNCTIONS;

/// Bodies of the test shim's functions that do something; every other
/// preview1 function returns `ENOSYS`.
///
/// - `fd_write(fd, iovs, count, written)`: the first iovec only, printed to
///   stream `fd`, its length stored at `written`; `EFAULT` if the kernel
///   refuses a copy.
/// - `proc_exit(status)`: the kernel's `exit`.
/// - `args_sizes_get`: copies the startup record to the shim's memory at
///   1024, and stores its length (or what `startup` returned) at the
///   program's `count` pointer.
/// - `random_get(buffer, len)`: sixteen copies of `len` bytes of the
///   shim's memory (from 0) into the program's (kernel work the program
///   pays for).
/// - `sched_yield`: counts its calls in the shim's memory and logs "yieldN"
///   through the ABI's `log`, from the shim's memory.
fn body(name: &str) -> Option<&'static str> {
    Some(match name {
        "fd_write" => {
            r#"(if (call $pread (local.get 1) (i32.const 8) (i32.const 0)) (then (return (i32.const 21))))
               (if (call $pread (i32.load (i32.const 0)) (i32.load (i32.const 4)) (i32.const 64))
                   (then (return (i32.const 21))))
               (drop (call $print (local.get 0) (i32.const 64) (i32.load (i32.const 4))))
               (if (call $pwrite (local.get 3) (i32.const 4) (i32.const 4)) (then (return (i32.const 21))))
               (i32.const 0)"#
        }
        "proc_exit" => "(call $exit (local.get 0))",
        "args_sizes_get" => {
            r#"(i32.store (i32.const 8) (call $startup (i32.const 1024) (i32.const 4096)))
               (drop (call $pwrite (local.get 0) (i32.const 8) (i32.const 4)))
               (i32.const 0)"#
        }
        "random_get" => {
            r#"(local $round i32)
               (loop $again
                 (drop (call $pwrite (local.get 0) (i32.const 0) (local.get 1)))
                 (local.set $round (i32.add (local.get $round) (i32.const 1)))
                 (br_if $again (i32.lt_u (local.get $round) (i32.const 16))))
               (i32.const 0)"#
        }
        "sched_yield" => {
            r#"(i32.store8 (i32.const 2053) (i32.add (i32.load8_u (i32.const 2053)) (i32.const 1)))
               (drop (call $log (i32.const 2048) (i32.const 6))) (i32.const 0)"#
        }
        _ => return None,
    })
}

/// A WAT shim exporting every preview1 function with its signature.
pub(crate) fn test_shim() -> String {
    let wat_type = |ty: &atoll_abi::ValueType| match ty {
        atoll_abi::ValueType::I32 => "i32",
        atoll_abi::ValueType::I64 => "i64",
    };
    let mut functions = String::new();
    for function in FUNCTIONS {
        let params: Vec<&str> = function.params.iter().map(wat_type).collect();
        let results: Vec<&str> = function.results.iter().map(wat_type).collect();
        let default = if results.is_empty() {
            ""
        } else {
            "(i32.const 52)"
        };
        functions.push_str(&format!(
            "(func (export \"{}\") (param {}) (result {}) {})\n",
            function.name,
            params.join(" "),
            results.join(" "),
            body(function.name).unwrap_or(default),
        ));
    }
    format!(
        r#"(module
            (import "atoll" "startup" (func $startup (param i32 i32) (result i32)))
            (import "atoll-shim" "program_read" (func $pread (param i32 i32 i32) (result i32)))
            (import "atoll-shim" "program_write" (func $pwrite (param i32 i32 i32) (result i32)))
            (import "atoll-shim" "print" (func $print (param i32 i32 i32) (result i32)))
            (import "atoll-shim" "exit" (func $exit (param i32)))
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (memory (export "memory") 8)
            (data (i32.const 2048) "yield0")
            {functions})"#
    )
}

/// A WASI program: `body` runs in `_start`; `$write` writes the 9 bytes at
/// 100 ("out line\n") to `fd`, `$write_part` the first 4 ("out ").
fn program(body: &str) -> String {
    format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
            (import "wasi_snapshot_preview1" "fd_advise" (func $advise (param i32 i64 i64 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "\64\00\00\00\09\00\00\00")
            (data (i32.const 8) "\64\00\00\00\04\00\00\00")
            (data (i32.const 100) "out line\0a")
            (func $write (param $fd i32) (result i32)
                (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 50)))
            (func $write_part (param $fd i32) (result i32)
                (call $fd_write (local.get $fd) (i32.const 8) (i32.const 1) (i32.const 50)))
            (func (export "_start") {body}))"#
    )
}

#[test]
fn a_wasi_programs_imports_are_its_shims_exports_and_its_output_whole_lines() {
    let (system, summary) = TestSystem::new()
        .wasi_shim(test_shim())
        .service(
            "w",
            program(
                "(drop (call $write (i32.const 1)))
                 (drop (call $write_part (i32.const 2)))
                 (drop (call $write (i32.const 2)))
                 (drop (call $write_part (i32.const 1)))
                 (if (i32.ne (call $advise (i32.const 3) (i64.const 0) (i64.const 0) (i32.const 0)) (i32.const 52))
                     (then unreachable))
                 (drop (call $yield))
                 (call $exit (i32.const 5))
                 unreachable",
            ),
        )
        .run();
    // stderr's "out " joins its next write; stdout's unfinished "out " is
    // printed when the service ends; the shim's `log` reads the shim's memory.
    assert_eq!(
        system.lines_of("w"),
        ["out line", "out out line", "yield1", "out "]
    );
    assert_eq!(system.state_of("w"), Some(ServiceState::Exited));
    assert_eq!((summary.exited, summary.faulted), (1, 0));
    let console = system.console();
    assert!(
        console.contains("atoll: service w exited with status 5\n"),
        "{console}"
    );
}

#[test]
fn the_shims_copies_are_checked_against_both_memories() {
    // An iovec past the end of the program's memory, a `written` pointer
    // past it: each copy is refused whole (EFAULT from the shim), and the
    // program goes on.
    let (system, summary) = TestSystem::new()
        .wasi_shim(test_shim())
        .service(
            "w",
            program(
                "(i32.store (i32.const 16) (i32.const 65530))
                 (i32.store (i32.const 20) (i32.const 10))
                 (if (i32.ne (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 50)) (i32.const 21))
                     (then unreachable))
                 (if (i32.ne (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 65534)) (i32.const 21))
                     (then unreachable))
                 (drop (call $write (i32.const 1)))",
            ),
        )
        .run();
    assert_eq!(
        (summary.exited, summary.faulted),
        (1, 0),
        "{}",
        system.console()
    );
    // The second call printed before its `written` store failed.
    assert_eq!(system.lines_of("w"), ["out line", "out line"]);
}

#[test]
fn the_startup_record_carries_the_programs_description() {
    let (system, summary) = TestSystem::new()
        .wasi_shim(test_shim())
        .service(
            "w",
            program("(drop (call $sizes (i32.const 200) (i32.const 204)))"),
        )
        .uses("fs")
        .uses("net")
        .wasi(&["w", "--flag"], &["KEY=value"])
        .preopen("/", "fs", "/data", true)
        .listen("net", 8080)
        .run();
    assert_eq!(
        (summary.exited, summary.faulted),
        (1, 0),
        "{}",
        system.console()
    );
    let len = system.kernel.memory_of("w", 8, 4).unwrap();
    let len = i32::from_le_bytes(len.try_into().unwrap());
    let record = system.kernel.memory_of("w", 1024, len).unwrap();
    let startup: Startup = postcard::from_bytes(&record).unwrap();
    assert_eq!(startup.args, ["w", "--flag"]);
    assert_eq!(startup.env, ["KEY=value"]);
    // Handles in the order of the service's endpoints.
    assert_eq!(
        startup.preopens,
        [Preopen {
            guest: "/".into(),
            handle: 1,
            directory: "/data".into(),
            read_only: true
        }]
    );
    assert_eq!(
        startup.listeners,
        [Listener {
            handle: 2,
            port: 8080,
            nonblocking: false
        }]
    );
    assert_ne!(startup.random_seed, 0);
    // Two memories count: the program's page and the shim's 8.
    let service = TestSystem::new()
        .wasi_shim(test_shim())
        .service("w", program(""))
        .load_alone()
        .unwrap();
    assert_eq!(service.memory_size(), 9 * 65536);
}

#[test]
fn the_loader_refuses_wasi_without_a_shim_mixed_imports_and_a_bad_shim() {
    let wasi = wat::parse_str(program("")).unwrap();
    let error = TestSystem::new()
        .module("w", wasi.clone())
        .load_alone()
        .err();
    assert!(matches!(error, Some(LoadError::NoWasiShim)), "{error:?}");
    let (system, summary) = TestSystem::new().module("w", wasi.clone()).run();
    assert_eq!(summary.failed_to_load, 1);
    assert_eq!(system.state_of("w"), None);
    // A WASI program must not import `atoll`: the ABI's functions work on
    // the shim's memory.
    let mixed = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
            (import "atoll" "log" (func (param i32 i32) (result i32)))
            (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let error = crate::loader::validate(&mixed, &LIMITS).unwrap_err();
    assert!(matches!(error, LoadError::WasiWithAtoll), "{error:?}");
    // The shim's own functions are not the services'.
    let sneaky = wat::parse_str(
        r#"(module
            (import "atoll-shim" "program_write" (func (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let error = crate::loader::validate(&sneaky, &LIMITS).unwrap_err();
    assert!(matches!(error, LoadError::UnknownImports(_)), "{error:?}");
    // A shim without one of preview1's functions, or with a foreign import.
    let shim = test_shim();
    let missing = shim.replace("(export \"fd_advise\")", "");
    let error = TestSystem::new()
        .wasi_shim(&missing)
        .module("w", wasi.clone())
        .load_alone()
        .err();
    assert!(
        matches!(&error, Some(LoadError::BadWasiShim(reason)) if reason.contains("fd_advise")),
        "{error:?}"
    );
    let foreign = shim.replace("\"atoll\" \"log\"", "\"env\" \"log\"");
    let error = crate::loader::validate_shim(&wat::parse_str(foreign).unwrap()).unwrap_err();
    assert!(matches!(error, LoadError::BadWasiShim(_)), "{error:?}");
    crate::loader::validate_shim(&wat::parse_str(shim).unwrap()).unwrap();
    // Unknown and mistyped WASI imports stay errors of the program.
    let mistyped = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
            (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let error = crate::loader::validate(&mistyped, &LIMITS).unwrap_err();
    assert!(
        matches!(&error, LoadError::ImportSignature(module, name)
            if module == "wasi_snapshot_preview1" && name == "fd_write"),
        "{error:?}"
    );
    let info = crate::loader::validate(&wasi, &LIMITS).unwrap();
    assert!(info.uses_wasi);
    assert_eq!(info.wasi_stubs, ["fd_advise"]);
}

#[test]
fn a_wasi_services_memory_limit_holds_both_its_memories() {
    // The shim takes 8 pages of the 16 the limit allows: the program's
    // memory gets the other 8, not 16.
    let (system, summary) = TestSystem::new()
        .wasi_shim(test_shim())
        .service(
            "w",
            program(
                "(if (i32.ne (memory.grow (i32.const 7)) (i32.const 1)) (then unreachable))
                 (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))",
            ),
        )
        .run();
    assert_eq!(
        (summary.exited, summary.faulted),
        (1, 0),
        "{}",
        system.console()
    );
    // A program whose own initial memory leaves no room for the shim does
    // not start.
    let big = program("").replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 9)"#,
    );
    let error = TestSystem::new()
        .wasi_shim(test_shim())
        .service("w", big)
        .load_alone()
        .err();
    assert!(
        matches!(error, Some(LoadError::Instantiate(_))),
        "{error:?}"
    );
}

#[test]
fn a_restarted_wasi_service_gets_a_fresh_shim() {
    // The shim counts `sched_yield`s in its memory; the program yields
    // twice and faults. Restarted once by the supervisor, it counts from 1
    // again.
    let supervisor = super::probes::probe(
        "w",
        &format!(
            "(local.set $r (call $receive (i32.const 1) (i32.const 400) (i32.const 512) (i64.const -1) (i32.const 200)))
             (call $report (call $control (i32.const {}) (i32.const 0) (i32.const 1)))
             (drop (call $receive (i32.const 1) (i32.const 400) (i32.const 512) (i64.const -1) (i32.const 200)))",
            atoll_abi::supervision::CONTROL_RESTART
        ),
    );
    let (system, summary) = TestSystem::new()
        .wasi_shim(test_shim())
        .service("sup", supervisor)
        .provides("events")
        .supervisor()
        .service(
            "w",
            program("(drop (call $yield)) (drop (call $yield)) unreachable"),
        )
        .run();
    assert_eq!(summary.faulted, 2, "{}", system.console());
    assert_eq!(system.kernel.restarts("w"), Some(1));
    assert_eq!(
        system.lines_of("w"),
        ["yield1", "yield2", "yield1", "yield2"]
    );
}

#[test]
fn a_host_swap_of_a_wasi_program_is_refused() {
    // Its swap would wait for a `receive` that a WASI program never makes.
    let mut system = TestSystem::new()
        .wasi_shim(test_shim())
        .service("w", program("(loop $spin (br $spin))"))
        .boot();
    let other = wat::parse_str(program("")).unwrap();
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap("w", &other));
    system.kernel.poll_control();
    let answer = system.platform.control_output();
    assert!(answer.starts_with("error: swap of w"), "{answer}");
    assert!(
        system.console().contains("never waits in receive"),
        "{}",
        system.console()
    );
    assert_eq!(system.kernel.swaps("w"), Some(0));
}

#[test]
fn a_shim_that_imports_a_driver_function_is_refused() {
    // A shim drives no device: the ABI's driver functions are not linked
    // for it, and the loader says so before instantiation.
    let shim = test_shim().replace(
        r#"(import "atoll" "log" (func $log (param i32 i32) (result i32)))"#,
        r#"(import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (import "atoll" "port_in" (func $port_in (param i32 i32) (result i64)))"#,
    );
    let error = crate::loader::validate_shim(&wat::parse_str(shim).unwrap()).unwrap_err();
    assert!(
        matches!(&error, LoadError::BadWasiShim(reason) if reason.contains("port_in")),
        "{error:?}"
    );
}
