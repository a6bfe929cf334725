//! Boots small test systems in QEMU and checks their serial logs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod support;

use std::time::Duration;
use support::{Firmware, boot};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn hello_boots_from_the_bios_image() {
    boot("hello", Firmware::Bios, None, TIMEOUT)
        .expect("atoll: booting")
        .expect("[hello] hello from a Wasm service")
        .expect("atoll: system ready (1 services)")
        .expect(
            "atoll: no service can run: 1 exited, 0 faulted, 0 failed to load, 0 waiting for ever",
        )
        .expect_status(0);
}

#[test]
fn hello_boots_from_the_uefi_image() {
    boot("hello", Firmware::Uefi, None, TIMEOUT)
        .expect("[hello] hello from a Wasm service")
        .expect("atoll: system ready (1 services)")
        .expect_status(0);
}

#[test]
fn the_default_system_ends_at_a_shell_where_ps_ls_cat_and_errors_work() {
    let port = support::free_port().to_string();
    let mut vm = support::Vm::start_with(
        support::workspace().join("examples/default/system.toml"),
        &["--http-port", &port],
        Duration::from_secs(120),
    );
    let wait = Duration::from_secs(60);
    vm.wait_for_seen("atoll: system ready (14 services)", wait);
    vm.wait_for_seen("[hello] hello from a Wasm service", wait);
    vm.wait_for_seen("Atoll shell. Type `help` for the commands.", wait);
    vm.wait_for_seen("[echo-client] echo replied: hello over IPC", wait);
    vm.wait_for_seen("[echo-client] 10 pings, 10 pongs in", wait);
    vm.wait_for_seen(
        "[kv-client] visits = Some(3), answer = Ok(Value(Some(42))), long key: Ok(Error(KeyTooLong)), keys: Ok(Len(2))",
        wait,
    );
    vm.wait_for_seen("[supervisor] hello exited; not restarted (Transient)", wait);
    vm.wait_for_seen("[fat] mounted FAT16 volume \"ATOLL\"", wait);

    vm.type_line("ps");
    vm.wait_for_line(
        "a ps row for the console driver",
        |line| line.starts_with("console ") && line.contains("receiving"),
        wait,
    );
    vm.wait_for_line(
        "a ps row for the shell itself",
        |line| line.starts_with("shell ") && line.contains("running"),
        wait,
    );
    vm.type_line("ls /");
    vm.wait_for("HELLO.TXT", wait);
    vm.type_line("cat /HELLO.TXT");
    vm.wait_for(
        "Hello from a FAT volume, read through two user-space services.",
        wait,
    );
    vm.type_line("write /NOTE.TXT typed in the shell");
    vm.type_line("cat /NOTE.TXT");
    // The file's line alone (the echoed commands hold the text too).
    vm.wait_for_line(
        "NOTE.TXT's contents",
        |line| line.trim_end() == "typed in the shell",
        wait,
    );
    vm.type_line("bogus");
    vm.wait_for("error: unknown command `bogus` (try `help`)", wait);
    let before_restart = vm.log.len();
    vm.type_line("restart fat");
    vm.wait_for_line(
        "the shell's answer to `restart fat`",
        |line| line.trim_end().ends_with("Done"),
        wait,
    );
    // The kernel's line about the restart, held in its console ring, comes
    // out before the shell's answer, which the console driver prints after
    // it (serial::before_driver_write).
    assert!(
        vm.log[before_restart..].contains("atoll: service fat restarted (1 so far)"),
        "the kernel's line after the shell's answer:\n{}",
        &vm.log[before_restart..]
    );
    vm.type_line("ls /DOCS");
    vm.wait_for("ABOUT.TXT", wait);
    vm.type_line("stats");
    vm.wait_for_line("the uptime", |line| line.contains("uptime"), wait);
    vm.wait_for_line(
        "the console endpoint's counters",
        |line| line.starts_with("console ") && line.contains("/"),
        wait,
    );
    vm.type_line("trace on");
    vm.wait_for("atoll: tracing on", wait);
    vm.wait_for("[supervisor] tracing on on request", wait);
    vm.type_line("stats");
    vm.wait_for_line(
        "the trace ring, on",
        |line| line.starts_with("trace") && line.contains("on, "),
        wait,
    );
    vm.type_line("trace off");
    vm.wait_for("atoll: tracing off", wait);
    vm.type_line("top 2");
    vm.wait_for("atoll top: uptime", wait);
    vm.wait_for_line(
        "a top row for the shell",
        |line| line.starts_with("shell ") && line.contains("running"),
        wait,
    );
    vm.wait_for("atoll top: uptime", wait);
    // Without a count, top runs until a key: the key is taken by top, and
    // what is typed after it reaches the shell again.
    vm.type_line("top");
    vm.wait_for("atoll top: uptime", wait);
    vm.type_line("q");
    // top polls for a key once a second: by then it has taken the `q`.
    std::thread::sleep(Duration::from_secs(3));
    vm.type_line("echo top stopped");
    vm.wait_for_line(
        "the shell's answer after top",
        |line| line.trim_end() == "top stopped",
        wait,
    );
    // A caller gone before its answer (fat restarted meanwhile) is a quiet
    // event for every server, not an error line.
    assert!(!vm.log.contains("reply failed"), "{}", vm.log);
}

/// Boots a system whose kernel provokes a fault in itself: image-builder
/// exits with 3, the kernel's failure (not 1, a service's).
fn fault(name: &str) -> support::Boot {
    let boot = boot(name, Firmware::Bios, None, TIMEOUT);
    boot.expect("atoll: self-test: provoking").expect_status(3);
    boot.expect_no("did not stop the kernel");
    boot
}

#[test]
fn a_page_fault_in_the_kernel_is_reported() {
    fault("fault-page")
        .expect("atoll: fault address 0xffffff0000000000 (the guard page below the kernel stack)")
        .expect("atoll: CPU EXCEPTION page fault (vector 14, error code 0x0) at rip 0x");
}

#[test]
fn a_kernel_stack_overflow_hits_the_guard_page_and_is_reported() {
    fault("fault-stack-overflow")
        .expect("atoll: kernel stack overflow (access to the guard page")
        .expect("atoll: CPU EXCEPTION double fault (vector 8, error code 0x0)");
}

#[test]
fn a_divide_error_in_the_kernel_is_reported() {
    fault("fault-divide").expect("atoll: CPU EXCEPTION divide error (vector 0) at rip 0x");
}

#[test]
fn an_invalid_opcode_in_the_kernel_is_reported() {
    fault("fault-invalid-opcode")
        .expect("atoll: CPU EXCEPTION invalid opcode (vector 6) at rip 0x");
}

#[test]
fn a_breakpoint_in_the_kernel_is_reported() {
    fault("fault-breakpoint").expect("atoll: CPU EXCEPTION breakpoint (vector 3) at rip 0x");
}

#[test]
fn an_sse_floating_point_exception_in_the_kernel_is_reported() {
    // Under QEMU's TCG (7.2 here) the CPU raises no SSE exception; the kernel
    // then enters the handler with `int 19` (logged), see selftest.rs.
    fault("fault-simd")
        .expect("atoll: SSE2 enabled, MXCSR 0x1f80")
        .expect("atoll: CPU EXCEPTION SIMD floating-point exception (vector 19) at rip 0x");
}

#[test]
fn a_kernel_panic_is_reported_with_its_location() {
    fault("fault-panic").expect("atoll: KERNEL PANIC: panicked at kernel/x86_64/src/selftest.rs:");
}

#[test]
fn echo_round_trip() {
    boot("echo", Firmware::Bios, None, TIMEOUT)
        .expect("[echo-client] echo replied: hello over IPC")
        .expect("[echo-client] 10 pings, 10 pongs in")
        .expect(
            "atoll: no service can run: 1 exited, 0 faulted, 0 failed to load, 1 waiting for ever",
        )
        .expect_status(0);
}

#[test]
fn a_spinning_service_does_not_starve_an_echo_pair() {
    let boot = boot(
        "spinner",
        Firmware::Bios,
        Some("[echo-client] 10 pings, 10 pongs"),
        TIMEOUT,
    );
    boot.expect("[spinner] spinning for ever")
        .expect("[echo-client] echo replied: hello over IPC")
        .expect("[echo-client] 10 pings, 10 pongs");
}

#[test]
fn forged_ungranted_oversized_and_wild_requests_get_errors_and_the_system_goes_on() {
    boot("misbehave", Firmware::Bios, None, TIMEOUT)
        .expect("[misbehave] lookup of an ungranted endpoint: NotFound")
        .expect("[misbehave] send on a forged handle: BadHandle")
        .expect("[misbehave] send on a negative handle: BadHandle")
        .expect("[misbehave] receive on a used endpoint: NotPermitted")
        .expect("[misbehave] oversized message: TooLarge")
        .expect("[misbehave] out-of-bounds message: OutOfBounds")
        .expect("[misbehave] out-of-bounds reply buffer: OutOfBounds")
        .expect("[misbehave] reply with a forged token: BadHandle")
        .expect("[misbehave] still served: Pong(7)")
        .expect_no("faulted:")
        .expect_status(0);
}

#[test]
fn calls_to_a_service_that_stops_return_an_error() {
    let boot = boot("quitter", Firmware::Bios, None, TIMEOUT);
    boot.expect("[quitter] took a call (reply expected: true) and quits")
        .expect("atoll: service quitter exited")
        .expect("[first] call 1 failed: peer has stopped")
        .expect("[first] call 2 failed: peer has stopped")
        .expect("[second] call 1 failed: peer has stopped")
        .expect("[second] call 2 failed: peer has stopped")
        .expect(
            "atoll: no service can run: 3 exited, 0 faulted, 0 failed to load, 0 waiting for ever",
        )
        .expect_status(0);
}

#[test]
fn two_hundred_services_boot_and_each_answers_a_ping() {
    const SERVICES: usize = 200;
    let mut description = String::from(
        "# Generated by tests/qemu.rs\n[system]\nname = \"test-two-hundred\"\nexit-when-idle = true\n",
    );
    for index in 0..SERVICES {
        description.push_str(&format!(
            "\n[[service]]\nname = \"ponger-{index}\"\ncrate = \"test-ponger\"\nprovides = [\"p{index}\"]\nmemory-limit-kib = 256\n"
        ));
    }
    let uses: Vec<String> = (0..SERVICES).map(|index| format!("\"p{index}\"")).collect();
    description.push_str(&format!(
        "\n[[service]]\nname = \"pinger\"\ncrate = \"test-pinger\"\nuses = [{}]\n",
        uses.join(", ")
    ));
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("two-hundred");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("system.toml");
    std::fs::write(&path, description).unwrap();
    support::boot_path(path, Firmware::Bios, None, Duration::from_secs(240))
        .expect("atoll: system ready (201 services)")
        .expect("[pinger] 200 of 200 services answered a ping")
        .expect("atoll: no service can run: 1 exited, 0 faulted, 0 failed to load, 200 waiting for ever")
        .expect_status(0);
}

/// The fault-isolation system, booted once for all the tests that read it.
fn faults_boot() -> &'static support::Boot {
    static BOOT: std::sync::OnceLock<support::Boot> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| boot("faults", Firmware::Bios, None, TIMEOUT))
}

/// Checks that `service` was reported with `reason` and that the unrelated echo
/// pair kept answering; image-builder run exits with 1 (services faulted),
/// as host-run does (it exited with 0, "guest ended: Success").
fn contained(service: &str, reason: &str) {
    faults_boot()
        .expect(&format!("atoll: service {service} faulted: {reason}"))
        .expect("[echo-client] 10 pings, 10 pongs")
        .expect(
            "atoll: no service can run: 1 exited, 6 faulted, 0 failed to load, 1 waiting for ever",
        )
        .expect("image-builder: a service faulted or failed to load (exit status 1)")
        .expect_status(1);
}

#[test]
fn fault_unreachable_is_contained() {
    contained("unreachable", "wasm `unreachable` instruction executed");
}

#[test]
fn fault_out_of_bounds_memory_access_is_contained() {
    contained("out-of-bounds", "out of bounds memory access");
}

#[test]
fn fault_divide_by_zero_is_contained() {
    contained("divide-by-zero", "integer divide by zero");
}

#[test]
fn fault_call_stack_exhaustion_is_contained() {
    contained("stack-exhaustion", "call stack exhausted");
}

#[test]
fn fault_memory_bomb_is_capped_and_contained() {
    // memory-limit-kib = 1024: growth stops at 16 pages.
    faults_boot().expect("[memory-bomb] refused at page 0016");
    contained("memory-bomb", "out of bounds memory access");
}

#[test]
fn fault_rust_panic_is_logged_and_contained() {
    faults_boot()
        .expect("[panic] panic: panicked at tests/services/panic/src/lib.rs:")
        .expect("[panic] deliberate panic (10 / 0 = None)");
    contained("panic", "wasm `unreachable` instruction executed");
}

#[test]
fn flooding_a_queue_does_not_stop_the_system() {
    boot(
        "flood",
        Firmware::Bios,
        Some("[echo-client] 10 pings, 10 pongs"),
        TIMEOUT,
    )
    .expect("[echo-client] echo replied: hello over IPC")
    .expect("[echo-client] 10 pings, 10 pongs")
    .expect_no("faulted:");
}

#[test]
fn a_supervised_service_is_restarted_then_escalated() {
    boot("supervised", Firmware::Bios, None, TIMEOUT)
        .expect("[supervisor] supervising")
        .expect("[crasher] ping 4 is poison")
        .expect("atoll: service crasher restarted (1 so far)")
        .expect("atoll: service crasher restarted (2 so far)")
        .expect("[supervisor] escalation: crasher faulted (wasm `unreachable` instruction executed) after 2 restarts within 60000 ms; stopping it")
        .expect("atoll: service crasher stopped by the supervisor")
        .expect("[client] answered [1, 2, 3, 5, 6, 7, 9, 10, 11], failed [4, 8, 12, 13]")
        .expect("[supervisor] client exited; not restarted (Temporary)")
        .expect_no("reply failed")
        // The crasher faulted (then was restarted): a service faulted.
        .expect_status(1);
}

#[test]
fn a_service_pushed_from_the_host_takes_over_and_a_broken_one_is_rolled_back() {
    let mut vm = support::Vm::start("push", Duration::from_secs(240));
    vm.wait_for("[ticker] ping 3: pong 3", TIMEOUT);
    let v2 =
        support::workspace().join("target/cross/wasm32-unknown-unknown/service/test_echo_v2.wasm");
    // Build echo-v2 through a description that names it, as a developer would.
    let status = support::image_builder()
        .args(["build", "--quiet", "--firmware", "bios"])
        .arg(support::system("push-v2"))
        .status()
        .unwrap();
    assert!(status.success());
    let instance = vm.instance.clone();
    let push = |module: &std::path::Path| {
        support::image_builder()
            .arg("push")
            .arg(support::system("push"))
            .args(["--instance", &instance])
            .args(["--service", "echo-server", "--watch", "2", "--module"])
            .arg(module)
            .output()
            .unwrap()
    };
    let pushed = push(&v2);
    let answer = String::from_utf8_lossy(&pushed.stdout).into_owned();
    assert!(
        pushed.status.success(),
        "{answer}\n{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert!(
        answer.contains("ok: service echo-server swapped to a new version (1 swaps)"),
        "{answer}"
    );
    vm.wait_for("[echo-server] echo v2 starting", TIMEOUT);
    vm.wait_for_line("a pong from v2", pong_from_v2, TIMEOUT);
    let broken = support::workspace().join("tests/systems/faults/unreachable.wat");
    let refused = push(&broken);
    let answer = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{answer}");
    assert!(
        answer.contains("rolled back: swap of echo-server rolled back"),
        "{answer}"
    );
    vm.wait_for("atoll: swap of echo-server rolled back", TIMEOUT);
    // v2 is back in service: the ticker goes on getting v2's answers.
    let mark = vm.log.len();
    vm.wait_for_line("a pong from v2", pong_from_v2, TIMEOUT);
    vm.wait_for_line("a pong from v2", pong_from_v2, TIMEOUT);
    assert!(!vm.log[mark..].contains("Err("), "{}", vm.log);
}

#[test]
fn a_system_idle_after_its_services_ended_still_answers_the_host() {
    // Every service has ended: the kernel waits in its idle loop, where only
    // the control channel wakes it. A request it refuses is answered there.
    let mut vm = support::Vm::start("push-idle", Duration::from_secs(120));
    vm.wait_for("atoll: idle after", TIMEOUT);
    let refused = support::image_builder()
        .arg("push")
        .arg(support::system("push-idle"))
        .args(["--instance", &vm.instance])
        .args(["--service", "nobody", "--module"])
        .arg(support::workspace().join("tests/systems/faults/unreachable.wat"))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{answer}\n{}\n{}",
        String::from_utf8_lossy(&refused.stderr),
        vm.log
    );
    assert!(
        answer.contains("error: swap of nobody"),
        "{answer}\n{}",
        vm.log
    );
    // The kernel's log of the request went out at idle too.
    vm.wait_for("host asks to swap nobody", TIMEOUT);
}

/// `[ticker] ping N: pong M` with M = 1,000 N: an answer from echo v2.
fn pong_from_v2(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("[ticker] ping ") else {
        return false;
    };
    let Some((ping, pong)) = rest.split_once(": pong ") else {
        return false;
    };
    matches!((ping.parse::<u64>(), pong.parse::<u64>()), (Ok(ping), Ok(pong)) if pong == ping * 1000)
}

#[test]
fn a_hundred_host_pushes_under_a_request_stream_lose_nothing_and_leak_nothing() {
    const SWAPS: usize = 100;
    let mut vm = support::Vm::start("swaps", Duration::from_secs(600));
    vm.wait_for("[client] 3: version 1, count 3", TIMEOUT);
    support::build(&support::system("swaps-v2"), Firmware::Bios);
    let service = support::workspace().join("target/cross/wasm32-unknown-unknown/service");
    let versions = [
        service.join("test_counter_v2.wasm"),
        service.join("test_counter.wasm"),
    ];
    for swap in 0..SWAPS {
        let pushed = support::image_builder()
            .arg("push")
            .arg(support::system("swaps"))
            .args(["--instance", &vm.instance])
            .args(["--service", "counter", "--watch", "0", "--module"])
            .arg(&versions[swap % 2])
            .output()
            .unwrap();
        assert!(
            pushed.status.success(),
            "push {swap}: {}{}\n{}",
            String::from_utf8_lossy(&pushed.stdout),
            String::from_utf8_lossy(&pushed.stderr),
            vm.log
        );
    }
    vm.wait_for(
        &format!("swapped to a new version ({SWAPS} swaps)"),
        TIMEOUT,
    );
    let last = vm.log.matches("[client] ").count();
    vm.wait_for(&format!("[client] {}: ", last + 3), TIMEOUT);
    // Every request answered once, in order, with the count carried across
    // every swap, by the version in service at the time.
    let mut versions_seen = std::collections::BTreeSet::new();
    let answers = vm
        .log
        .lines()
        .filter_map(|line| line.strip_prefix("[client] "));
    for (expected, line) in (1u64..).zip(answers) {
        let (number, answer) = line
            .split_once(": version ")
            .unwrap_or_else(|| panic!("{line}\n{}", vm.log));
        let (version, count) = answer.split_once(", count ").unwrap();
        assert_eq!(number.parse::<u64>().unwrap(), expected, "{}", vm.log);
        assert_eq!(count.parse::<u64>().unwrap(), expected, "{}", vm.log);
        versions_seen.insert(version.to_string());
    }
    assert_eq!(versions_seen.len(), 2, "both versions served: {}", vm.log);
    // The kernel heap after the 100th swap is where it was after the 10th.
    let heap: Vec<u64> = vm
        .log
        .lines()
        .filter_map(|line| line.strip_prefix("atoll: kernel heap in use: "))
        .map(|kib| kib.trim_end_matches(" KiB").parse().unwrap())
        .collect();
    assert_eq!(heap.len(), SWAPS, "{}", vm.log);
    eprintln!(
        "kernel heap in use after swap 1, 10, 50, 100: {} / {} / {} / {} KiB",
        heap[0],
        heap[9],
        heap[49],
        heap[SWAPS - 1]
    );
    assert!(
        heap[SWAPS - 1] <= heap[9] + 256,
        "heap after swaps: {heap:?}"
    );
}

#[test]
fn unmodified_wasi_programs_in_c_and_go_run_and_report_their_exit_status() {
    let boot = support::boot_path(
        support::workspace().join("examples/wasi/system.toml"),
        Firmware::Bios,
        None,
        TIMEOUT,
    );
    boot.expect("[hello-c] hello from C: printf works, 3 args: hello-c one two")
        .expect("[hello-c] GREETING=hello from system.toml")
        .expect("[hello-c] slept at least 20 ms")
        .expect("[hello-c] wall clock after 2020: yes")
        .expect("[hello-c] lseek on stdout: -1, errno 70 (Invalid seek); still running")
        .expect("[hello-c] random bytes: ok")
        .expect("[hello-c] exiting with status 3")
        .expect("atoll: service hello-c exited with status 3")
        .expect("[hello-go] hello from Go wasip1: args hello-go --flag")
        .expect("[hello-go] GREETING=hi Go")
        .expect("[hello-go] slept at least 20 ms")
        .expect("atoll: service hello-go exited with status 7")
        .expect("atoll: no service can run: 2 exited, 0 faulted")
        .expect_status(0);
}

#[test]
fn a_driver_gets_errors_for_what_it_was_not_granted_and_the_kernel_goes_on() {
    boot("driver-probe", Firmware::Bios, None, TIMEOUT)
        // The ACPI PM block where SeaBIOS put it, read from the PIIX4 PM
        // function's configuration; the chipset stays out of `8086:*`.
        .expect("atoll: reserved the ACPI power-management block at ports 0x600-0x63f (PCI function 0x000b, 8086:7113)")
        .expect("not granted: PCI function 0x0000 (8086:1237) is a chipset function (class 0x06)")
        .expect("not granted: PCI function 0x000b (8086:7113) is a chipset function (class 0x06)")
        .expect("[probe] ungranted port in     = -13")
        .expect("[probe] kernel PIC port out   = -13")
        .expect("[probe] granted port in ok    = 1")
        .expect("[probe] dma alloc handle      = 1")
        .expect("[probe] dma address nonzero   = 1")
        // "hello dm" read back as a little-endian i64.
        .expect("[probe] dma round trip        = 7882460910737712488")
        .expect("[probe] forged dma handle     = -6")
        .expect("[probe] dma over budget       = -3")
        .expect("[probe] ungranted pci read    = -13")
        .expect("[probe] ungranted irq ack     = -13")
        .expect("[probe] dma read out of bounds= -2")
        .expect("[probe] pci BAR write         = -13")
        .expect("[probe] chipset PM pci read   = -13")
        .expect("[probe] freed handle reused   = -6")
        .expect("atoll: service probe exited")
        .expect_status(0);
}

#[test]
fn services_in_c_zig_assemblyscript_wat_and_rust_talk_over_typed_protocols() {
    let boot = support::boot_path(
        support::workspace().join("examples/polyglot/system.toml"),
        Firmware::Bios,
        Some("atoll: no service can run"),
        TIMEOUT,
    );
    boot.expect("atoll: system ready (7 services)")
        .expect("[c-kv-client] c-kv-client: all replies correct")
        .expect("[polyglot-client] echo-c: 11 typed replies correct")
        .expect("[polyglot-client] echo-zig: 11 typed replies correct")
        .expect("[polyglot-client] echo-as: 11 typed replies correct")
        .expect("[polyglot-client] echo-wat: 11 typed replies correct")
        .expect("[polyglot-client] 4 of 4 servers answered correctly")
        .expect_no("WRONG")
        .expect_no("FAILED");
}

/// Runs a host tool; panics with its output if it fails.
fn host_tool(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} cannot run ({error}): .ci/setup installs it"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_fat_service_reads_and_writes_a_host_made_disk_and_survives_driver_restarts() {
    // A FAT16 image made on the host with mkfs.fat and filled with mtools
    // (no partition table: a "superfloppy", mounted through a virtual MBR).
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    let disk_name = disk.to_str().unwrap();
    host_tool(
        "mkfs.fat",
        &["-C", "-F", "16", "-n", "HOSTDISK", disk_name, "32768"],
    );
    let hello = dir.join("hello.txt");
    std::fs::write(&hello, "Hello from the host disk!\n").unwrap();
    let pattern: Vec<u8> = (0..96 * 1024u64)
        .map(|index| ((index * 7 + index / 4096) % 251) as u8)
        .collect();
    let pattern_file = dir.join("pattern.bin");
    std::fs::write(&pattern_file, &pattern).unwrap();
    host_tool(
        "mcopy",
        &["-i", disk_name, hello.to_str().unwrap(), "::HELLO.TXT"],
    );
    host_tool(
        "mcopy",
        &[
            "-i",
            disk_name,
            pattern_file.to_str().unwrap(),
            "::PATTERN.BIN",
        ],
    );

    let boot = support::boot_with(
        support::system("storage"),
        Firmware::Bios,
        &["--disk", disk_name],
        Some("fs-reader: "),
        Duration::from_secs(90),
    );
    boot.expect(" 1af4:1001 class 01.00 irq ")
        .expect("[virtio-blk] disk at 00:0")
        .expect("[fat] mounted FAT16 volume")
        .expect("fs-client: PASS list /: HELLO.TXT (26 bytes)")
        .expect("fs-client: PASS read /HELLO.TXT: Hello from the host disk!")
        .expect("fs-client: PASS write /WRITTEN.TXT")
        .expect("fs-client: PASS read with the driver stopped: Ok(Error(Device))")
        .expect("fs-client: PASS read after the driver restarted")
        .expect(", 0 failed")
        .expect_no("fs-client: FAIL")
        // Callers gone at a driver kill are quiet events, not errors.
        .expect_no("reply failed");
    // The reader went on through two driver kills: at most the request in
    // flight at each failed, and no byte read was wrong.
    let line = boot
        .log
        .lines()
        .find(|line| line.contains("fs-reader: "))
        .unwrap();
    let number = |label: &str| -> u64 {
        let before = line.split(label).next().unwrap();
        before.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(number(" reads verified") > 20, "{}", boot.log);
    assert!(number(" device errors") <= 3, "{}", boot.log);
    assert_eq!(number(" corrupt"), 0, "{}", boot.log);

    // What Atoll wrote, the host reads back, and fsck.fat finds the volume clean.
    let written = host_tool("mtype", &["-i", disk_name, "::WRITTEN.TXT"]);
    assert_eq!(
        written,
        "Written by Atoll's fs-client through fat and virtio-blk.\n"
    );
    host_tool("fsck.fat", &["-n", disk_name]);
}

#[test]
fn unmodified_wasi_programs_in_c_rust_and_go_use_files_on_a_host_made_disk() {
    // FAT16 with 512-byte clusters.
    wasi_programs_on_a_host_made_disk("16", "1");
}

#[test]
fn unmodified_wasi_programs_use_files_on_a_host_made_fat12_disk() {
    // FAT12 with 4 KiB clusters (2,045 of them).
    wasi_programs_on_a_host_made_disk("12", "8");
}

/// The C, Rust and Go programs of `tests/systems/wasi-files.toml` on an
/// 8 MiB disk made by `mkfs.fat -F fat -s cluster_sectors` and filled on the
/// host: an input file, a read-only folder, a 4 MiB file to read, and a
/// filler leaving about 192 KiB free, so that the C program meets a full
/// disk quickly. What they wrote is read back with mtools, and the volume
/// checked by `fsck.fat -n`.
fn wasi_programs_on_a_host_made_disk(fat: &str, cluster_sectors: &str) {
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("wasi-files-fat{fat}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    let disk_name = disk.to_str().unwrap();
    host_tool(
        "mkfs.fat",
        &[
            "-C",
            "-F",
            fat,
            "-s",
            cluster_sectors,
            "-n",
            "WASIFILES",
            disk_name,
            "8192",
        ],
    );
    let put = |name: &str, bytes: &[u8], target: &str| {
        let source = dir.join(name);
        std::fs::write(&source, bytes).unwrap();
        host_tool(
            "mcopy",
            &["-i", disk_name, source.to_str().unwrap(), target],
        );
    };
    put(
        "input.txt",
        b"made on the host\nsecond line\n",
        "::INPUT.TXT",
    );
    host_tool("mmd", &["-i", disk_name, "::DOCS"]);
    put("about.txt", b"about this disk\n", "::DOCS/ABOUT.TXT");
    let big: Vec<u8> = (0..4u64 << 20)
        .map(|at| ((at * 7 + at / 4096) % 251) as u8)
        .collect();
    put("big.bin", &big, "::BIG.BIN");
    let free = |listing: &str| -> u64 {
        let line = listing
            .lines()
            .rev()
            .find(|line| line.contains("bytes free"))
            .unwrap();
        line.split("bytes free")
            .next()
            .unwrap()
            .replace([' ', ','], "")
            .parse()
            .unwrap()
    };
    let before = free(&host_tool("mdir", &["-i", disk_name, "::"]));
    put(
        "filler.bin",
        &vec![0u8; (before - (192 << 10)) as usize],
        "::FILLER.BIN",
    );

    let boot = support::boot_with(
        support::system("wasi-files"),
        Firmware::Bios,
        &["--disk", disk_name],
        Some("c-files: "),
        Duration::from_secs(400),
    );
    boot.expect(&format!("[fat] mounted FAT{fat} volume"))
        .expect("[rust-files] rust-files: 0 failures")
        .expect("[go-files] go-files: 0 failures")
        .expect("[c-files] PASS 4 MiB read whole in 64 KiB chunks")
        .expect("[c-files] PASS a full disk: ENOSPC")
        .expect("[c-files] c-files: 0 failures")
        .expect_no("FAIL ");
    // The programs' own lines, for people reading `--nocapture` output.
    for line in boot.log.lines().filter(|line| {
        ["[c-files]", "[rust-files]", "[go-files]"]
            .iter()
            .any(|name| line.starts_with(name))
    }) {
        println!("{line}");
    }

    // What the programs wrote, the host reads back; the long name shows in
    // mdir, and fsck.fat finds the volume clean.
    let long = host_tool("mtype", &["-i", disk_name, "::A long file name.txt"]);
    assert_eq!(long, "long names work\n");
    let root = host_tool("mdir", &["-i", disk_name, "::"]);
    assert!(root.contains("A long file name.txt"), "{root}");
    assert_eq!(
        host_tool("mtype", &["-i", disk_name, "::c/after.txt"]),
        "space again\n"
    );
    assert_eq!(
        host_tool("mtype", &["-i", disk_name, "::rust/deep/er/Moved File.txt"]),
        "hello from Rust std\nappended\n"
    );
    assert_eq!(
        host_tool("mtype", &["-i", disk_name, "::go/nested/Renamed by Go.txt"]),
        "written by Go\n"
    );
    let check = host_tool("fsck.fat", &["-n", disk_name]);
    for alarm in [
        "Orphaned",
        "lost",
        "differ",
        "wrong",
        "Free cluster summary",
    ] {
        assert!(!check.contains(alarm), "fsck.fat: {check}");
    }
}

#[test]
fn the_shell_swaps_a_service_for_a_module_read_from_the_disk() {
    // A disk folder holding a new echo server: answers like the old one and
    // says so when it starts.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shell-swap");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let module = wat::parse_str(
        r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
            (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "echo v2 serving")
            (func (export "_start") (local $len i32)
                (drop (call $log (i32.const 0) (i32.const 15)))
                (loop $serve
                    (local.set $len (call $receive (i32.const 1) (i32.const 1024) (i32.const 4096)
                        (i64.const -1) (i32.const 64)))
                    (if (i32.ge_s (local.get $len) (i32.const 0))
                        (then (drop (call $reply (i32.load (i32.const 64)) (i32.const 1024) (local.get $len)))))
                    (br $serve))))"#,
    )
    .unwrap();
    std::fs::write(dir.join("ECHO2.WASM"), module).unwrap();
    std::fs::write(dir.join("BAD.WASM"), b"not wasm").unwrap();

    let port = support::free_port().to_string();
    let mut vm = support::Vm::start_with(
        support::workspace().join("examples/default/system.toml"),
        &["--disk", dir.to_str().unwrap(), "--http-port", &port],
        Duration::from_secs(120),
    );
    let wait = Duration::from_secs(60);
    vm.wait_for_seen("Atoll shell. Type `help` for the commands.", wait);
    vm.wait_for_seen("[fat] mounted FAT16 volume", wait);
    vm.type_line("ls /");
    vm.wait_for("ECHO2.WASM", wait);
    vm.type_line("swap echo-server /BAD.WASM");
    vm.wait_for_line(
        "the refusal of a module that is not Wasm",
        |line| line.starts_with("error: "),
        wait,
    );
    vm.type_line("swap echo-server /ECHO2.WASM");
    vm.wait_for_seen("[echo-server] echo v2 serving", wait);
    vm.wait_for_seen(
        "atoll: service echo-server swapped to a new version (1 swaps)",
        wait,
    );
    vm.type_line("ps");
    vm.wait_for_line(
        "echo-server still receiving",
        |line| line.starts_with("echo-server ") && line.contains("receiving"),
        wait,
    );
}

#[test]
fn a_wasi_program_reads_its_stdin_from_the_serial_console() {
    let mut vm = support::Vm::start_path(
        support::workspace().join("examples/wasi/stdin.toml"),
        Duration::from_secs(90),
    );
    let wait = Duration::from_secs(60);
    vm.wait_for_seen("[ask-c] What is your name?", wait);
    vm.wait_for_seen("[console] ", wait);
    vm.type_line("Atoll");
    vm.wait_for("[ask-c] hello, Atoll!", wait);
    vm.wait_for("atoll: service ask-c exited", wait);
}

#[test]
fn kernel_output_survives_a_driver_that_leaves_dlab_set_on_com1() {
    // Before: the log line written while DLAB was set went into the divisor
    // latch and never reached the serial port.
    boot("dlab", Firmware::Bios, None, TIMEOUT)
        .expect("[dlab] written while DLAB was set")
        .expect("[dlab] DLAB cleared")
        .expect("atoll: service dlab exited")
        .expect_status(0);
}

/// Runs test system `name` in the hosted core (`image-builder host-run`) and
/// returns what its services printed.
fn host_run(name: &str) -> String {
    let output = support::image_builder()
        .arg("host-run")
        .arg(support::system(name))
        .arg("--quiet")
        .output()
        .expect("image-builder runs");
    assert!(
        output.status.success(),
        "host-run {name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The lines of `log` holding `marker`, from the marker on, sorted (services
/// interleave differently in the guest and hosted).
fn lines_with(log: &str, marker: &str) -> Vec<String> {
    let mut lines: Vec<String> = log
        .lines()
        .filter_map(|line| {
            line.find(marker)
                .map(|at| line[at..].trim_end().to_string())
        })
        .collect();
    lines.sort();
    lines
}

/// The kernel's report `kernel stack high-water mark N KiB of M KiB; T timer
/// interrupts`: (N, M, T).
fn stack_report(boot: &support::Boot) -> (u64, u64, u64) {
    let line = boot
        .log
        .lines()
        .find_map(|line| line.split("atoll: kernel stack high-water mark ").nth(1))
        .unwrap_or_else(|| panic!("no stack report; the log:\n{}", boot.log));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers[..] {
        [used, size, ticks, ..] => (used, size, ticks),
        _ => panic!("unreadable stack report `{line}`"),
    }
}

#[test]
fn the_stack_torture_service_gives_the_hosted_results_and_uses_under_half_the_kernel_stack() {
    let boot = boot("torture", Firmware::Bios, None, Duration::from_secs(300));
    boot.expect("torture: done 0x0000000000000000")
        .expect("atoll: no service can run: 1 exited, 0 faulted")
        .expect_status(0);
    let guest = lines_with(&boot.log, "torture: ");
    assert_eq!(guest.len(), 8, "eight parts report; the log:\n{}", boot.log);
    assert_eq!(guest, lines_with(&host_run("torture"), "torture: "));
    let (used_kib, size_kib, _) = stack_report(&boot);
    assert!(
        used_kib * 2 < size_kib,
        "kernel stack high-water mark {used_kib} KiB of {size_kib} KiB; the log:\n{}",
        boot.log
    );
}

#[test]
fn float_work_interrupted_thousands_of_times_keeps_every_bit() {
    let boot = boot(
        "float-check",
        Firmware::Bios,
        None,
        Duration::from_secs(300),
    );
    boot.expect("atoll: no service can run: 3 exited, 0 faulted")
        .expect_no("MISMATCH")
        .expect_status(0);
    let guest = lines_with(&boot.log, "float-check: ");
    assert_eq!(
        guest.len(),
        3,
        "three checkers report; the log:\n{}",
        boot.log
    );
    assert_eq!(guest, lines_with(&host_run("float-check"), "float-check: "));
    let (_, _, ticks) = stack_report(&boot);
    assert!(
        ticks >= 2000,
        "only {ticks} timer interrupts during the float work; the log:\n{}",
        boot.log
    );
}

/// The interrupt handlers that return to the interrupted code (the timer, the
/// device lines, the spurious ones) may run in the middle of the interpreter,
/// whose float values live in XMM registers: they must not touch any XMM
/// register (docs/design.md, "Interrupt handlers and XMM state"). Checked on
/// the disassembly of the kernel that the tests boot.
#[test]
fn interrupt_handlers_that_return_touch_no_xmm_register() {
    let system = support::system("hello");
    support::build(&system, Firmware::Bios);
    let elf = support::workspace().join("target/atoll/test-hello/kernel.elf");
    let libdir = std::process::Command::new("rustc")
        .current_dir(support::workspace())
        .args(["--print", "target-libdir"])
        .output()
        .expect("rustc runs");
    let libdir = std::path::PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    let objdump = libdir.with_file_name("bin").join("llvm-objdump");
    let output = std::process::Command::new(&objdump)
        .args(["-d", "-C", "--no-show-raw-insn"])
        .arg(&elf)
        .output()
        .expect("llvm-objdump (the toolchain's llvm-tools) runs");
    assert!(output.status.success(), "{} failed", objdump.display());
    let disassembly = String::from_utf8_lossy(&output.stdout);
    let mut returning: Vec<String> = ["timer", "spurious_master", "spurious_slave"]
        .iter()
        .map(|name| name.to_string())
        .chain([1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14].map(|irq| format!("irq{irq}")))
        .map(|name| format!("<atoll_kernel::interrupts::{name}>:"))
        .collect();
    for function in disassembly.split("\n\n") {
        let Some(position) = returning
            .iter()
            .position(|header| function.lines().any(|line| line.ends_with(header.as_str())))
        else {
            continue;
        };
        let header = returning.swap_remove(position);
        assert!(
            function.contains("iretq"),
            "{header} does not return:\n{function}"
        );
        assert!(
            !function.contains("%xmm") && !function.contains("fxsave"),
            "{header} touches XMM state:\n{function}"
        );
    }
    assert!(
        returning.is_empty(),
        "handlers not found in {}: {returning:?}",
        elf.display()
    );
}

/// Whether `text` is well-formed XML as far as the SVG writer goes: every
/// element closed in order, attribute values quoted, `<` and `&` escaped in
/// text. Returns the element names opened, in order.
fn well_formed_xml(text: &str) -> Result<Vec<String>, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut opened = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let between = &rest[..start];
        check_text(between)?;
        let end = rest[start..].find('>').ok_or("a tag is not closed")? + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body.split_whitespace().next().ok_or("an empty tag")?;
        // Attributes: name="value" pairs.
        let mut attributes = body[name.len()..].trim();
        while !attributes.is_empty() {
            let (_, value) = attributes
                .split_once("=\"")
                .ok_or_else(|| format!("an unquoted attribute in <{body}>"))?;
            let close = value.find('"').ok_or("an attribute value is not closed")?;
            check_text(&value[..close])?;
            attributes = value[close + 1..].trim_start();
        }
        opened.push(name.to_string());
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("elements left open: {stack:?}"));
    }
    Ok(opened)
}

fn check_text(text: &str) -> Result<(), String> {
    for (index, _) in text.match_indices('&') {
        let entity = &text[index..];
        if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
            .iter()
            .any(|name| entity.starts_with(name))
        {
            return Err(format!("a bare & in {text:?}"));
        }
    }
    if text.contains('>') && text.contains('<') {
        return Err(format!("markup in text {text:?}"));
    }
    Ok(())
}

#[test]
fn the_xml_check_refuses_what_it_should() {
    assert!(well_formed_xml("<a><b x=\"1\"/></a>").is_ok());
    assert!(well_formed_xml("<a><b></a></b>").is_err());
    assert!(well_formed_xml("<a>").is_err());
    assert!(well_formed_xml("<a x=1></a>").is_err());
    assert!(well_formed_xml("<a>fish & chips</a>").is_err());
    assert!(well_formed_xml("<a>fish &amp; chips</a>").is_ok());
}

#[test]
fn a_trace_of_calls_a_fault_and_a_restart_is_fetched_and_drawn() {
    let mut vm = support::Vm::start("trace", Duration::from_secs(300));
    vm.wait_for("[client] pinging: ", TIMEOUT);
    // The crasher has faulted and been restarted at least once.
    vm.wait_for_seen("atoll: service crasher restarted (1 so far)", TIMEOUT);
    let out = support::workspace()
        .join("target/trace-test")
        .join(&vm.instance);
    let _ = std::fs::remove_dir_all(&out);
    let traced = support::image_builder()
        .arg("trace")
        .arg(support::system("trace"))
        .args(["--instance", &vm.instance, "--seconds", "4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&traced.stdout).into_owned();
    assert!(
        traced.status.success(),
        "{said}{}\n{}",
        String::from_utf8_lossy(&traced.stderr),
        vm.log
    );
    assert!(
        said.contains("trace: ") && said.contains("records over"),
        "{said}"
    );
    vm.wait_for_seen("atoll: tracing off", TIMEOUT);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace.json")).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let tid_of = |name: &str| {
        events
            .iter()
            .find(|event| event["name"] == "thread_name" && event["args"]["name"] == name)
            .and_then(|event| event["tid"].as_u64())
            .unwrap_or_else(|| panic!("no track for {name}"))
    };
    let (client, crasher) = (tid_of("client"), tid_of("crasher"));
    tid_of("supervisor");
    // The records in order: timestamps never go back.
    let records: Vec<&serde_json::Value> = events
        .iter()
        .filter(|event| event["ph"] == "X" && event["cat"] != "blocked")
        .collect();
    let times: Vec<f64> = records
        .iter()
        .map(|event| event["ts"].as_f64().unwrap())
        .collect();
    assert!(times.len() > 20, "{} records", times.len());
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
    // Every complete flow goes from a call on the client's track to the
    // crasher's receive, then its reply, in time order; the events it binds
    // to are that call, receive and reply.
    let mut flows: std::collections::BTreeMap<u64, Vec<&serde_json::Value>> = Default::default();
    for event in events
        .iter()
        .filter(|event| event["cat"] == "call" && event["ph"] != "X")
    {
        flows
            .entry(event["id"].as_u64().unwrap())
            .or_default()
            .push(event);
    }
    let record_at = |tid: u64, ts: f64, kind: &str| {
        records.iter().any(|event| {
            event["tid"] == tid && event["ts"].as_f64() == Some(ts) && event["cat"] == kind
        })
    };
    let mut complete = 0;
    for steps in flows.values() {
        let phases: Vec<&str> = steps
            .iter()
            .map(|step| step["ph"].as_str().unwrap())
            .collect();
        // A flow cut by the ring's start, the end of the trace or the
        // crasher's fault is a contiguous piece of s, t, f; any other shape
        // (a reply before its receive) is wrong.
        let pieces: [&[&str]; 6] = [
            &["s", "t", "f"],
            &["s", "t"],
            &["t", "f"],
            &["s"],
            &["t"],
            &["f"],
        ];
        assert!(pieces.contains(&phases.as_slice()), "{steps:?}");
        if phases != ["s", "t", "f"] {
            continue;
        }
        complete += 1;
        let ts: Vec<f64> = steps
            .iter()
            .map(|step| step["ts"].as_f64().unwrap())
            .collect();
        assert!(ts[0] <= ts[1] && ts[1] <= ts[2], "{steps:?}");
        assert_eq!(steps[0]["tid"], client);
        assert_eq!(steps[1]["tid"], crasher);
        assert_eq!(steps[2]["tid"], crasher);
        assert!(record_at(client, ts[0], "call"), "{steps:?}");
        assert!(record_at(crasher, ts[1], "receive"), "{steps:?}");
        assert!(record_at(crasher, ts[2], "reply"), "{steps:?}");
    }
    assert!(complete >= 3, "{complete} complete call flows");
    // A fault of the crasher, then its restart.
    let at = |kind: &str| {
        records
            .iter()
            .position(|event| event["cat"] == kind && event["tid"] == crasher)
    };
    let fault = at("fault").expect("a fault of the crasher");
    let restart = records[fault..]
        .iter()
        .position(|event| event["cat"] == "restart" && event["tid"] == crasher);
    assert!(restart.is_some(), "no restart after the fault");

    let svg = std::fs::read_to_string(out.join("trace.svg")).unwrap();
    let elements = well_formed_xml(&svg).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(elements.first().map(String::as_str), Some("svg"));
    let lanes: Vec<&str> = svg
        .match_indices("<g class=\"lane\" data-service=\"")
        .map(|(at, marker)| {
            let name = &svg[at + marker.len()..];
            &name[..name.find('"').unwrap()]
        })
        .collect();
    assert_eq!(lanes, ["supervisor", "crasher", "client"]);
    let _ = std::fs::remove_dir_all(&out);
}

/// The QEMU fault campaign, short (`make chaos-qemu` runs 10,000 faults):
/// the disk driver, the file system and the console killed, stopped and fed
/// garbage and hostile requests while a reader verifies a file byte by byte.
#[test]
fn a_short_qemu_fault_campaign_on_the_storage_path_loses_no_byte() {
    const FAULTS: u64 = 300;
    // A copy of its own: a `make chaos-qemu` may run beside the tests.
    let instance = support::instance();
    let output = support::image_builder()
        .args([
            "chaos",
            "--qemu",
            "--seed",
            "3",
            "--instance",
            &instance,
            "--faults",
        ])
        .arg(FAULTS.to_string())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(
        support::workspace()
            .join("target/atoll/storage-chaos/instances")
            .join(&instance),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    // The campaign's own report: every fault injected, each kind at least
    // once, and the reader verified reads with no wrong byte.
    let report = stdout
        .lines()
        .find(|line| line.contains("storage-chaos: report "))
        .unwrap_or_else(|| panic!("no report:\n{stdout}\n{stderr}"));
    let value = |key: &str| -> u64 {
        report
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {report}"))
    };
    assert_eq!(value("faults"), FAULTS, "{report}");
    for kind in [
        "kill-disk-driver",
        "kill-file-system",
        "kill-console",
        "hostile-disk-read",
    ] {
        assert!(value(kind) > 0, "{report}");
    }
    assert_eq!(value("corrupt"), 0, "{report}");
    assert_eq!(value("violations"), 0, "{report}");
    assert!(value("verified") > value("restarts"), "{report}");
}

/// The slot of QEMU 7.2's per-CPU jump cache (`tb_jmp_cache_hash_func`,
/// 4,096 entries) for a guest address: every indirect jump, and so every
/// dispatch from one Wasm instruction's handler to the next, looks its
/// target up there; two hot targets in one slot evict each other, and each
/// lookup then goes to QEMU's global table at several times the cost.
fn qemu_jump_cache_slot(pc: u64) -> u64 {
    let mixed = pc ^ (pc >> 6);
    ((mixed >> 6) & 0xfc0) | (mixed & 0x3f)
}

/// The addresses of a 64-bit ELF file's function symbols for which
/// `wanted` holds (on the mangled name).
fn elf_functions(elf: &[u8], wanted: impl Fn(&str) -> bool) -> Vec<u64> {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let (sections, entry_size, count) = (u64_at(0x28) as usize, u16_at(0x3a), u16_at(0x3c));
    let section = |index: usize| sections + index * entry_size;
    let symbol_table = (0..count)
        .map(section)
        .find(|&header| u32_at(header + 4) == 2)
        .expect("a symbol table (the unstripped kernel)");
    let strings = u64_at(section(u32_at(symbol_table + 0x28)) + 0x18) as usize;
    let (start, size) = (
        u64_at(symbol_table + 0x18) as usize,
        u64_at(symbol_table + 0x20) as usize,
    );
    let mut found = Vec::new();
    for symbol in (start..start + size).step_by(24) {
        if elf[symbol + 4] & 0xf != 2 {
            continue;
        }
        let name_start = strings + u32_at(symbol);
        let name_end = name_start + elf[name_start..].iter().position(|&b| b == 0).unwrap();
        if wanted(&String::from_utf8_lossy(&elf[name_start..name_end])) {
            found.push(u64_at(symbol + 8));
        }
    }
    found
}

/// Whether a (v0-mangled) symbol is one of wasmi's instruction handlers, a
/// plain function `wasmi::engine::executor::handler::exec::NAME`: the path
/// ends with NAME's length and NAME (generic functions instantiated with an
/// `exec` closure, such as `Fuel::consume_fuel_if`, do not).
fn is_wasmi_handler(symbol: &str) -> bool {
    let Some((_, name)) = symbol
        .strip_prefix("_RNvNtNtNtNtCs")
        .and_then(|rest| rest.split_once("_5wasmi6engine8executor7handler4exec"))
    else {
        return false;
    };
    let digits = name.len() - name.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    name[..digits].parse::<usize>() == Ok(name.len() - digits)
}

/// Every handler of wasmi's tail-call dispatch starts on a 64-byte boundary
/// (`-Zmin-function-alignment=64` for the kernel target, .cargo/config.toml),
/// and no two of them share a slot of QEMU's jump cache. With rustc's
/// default 16-byte alignment the 256 possible starts in a page map onto 64
/// slots: 672 of the 1,095 handlers shared 300 slots, and a benchmark whose
/// hot handlers collided ran at half speed (docs/design.md, "Handlers and
/// QEMU's jump cache"). Aligned, the starts within one 256 KiB-aligned block
/// of code map one to one onto the slots; if a change of layout makes the
/// handlers straddle two such blocks and two of them collide, this fails.
#[test]
fn the_interpreters_handlers_each_have_a_slot_of_qemus_jump_cache() {
    support::build(&support::system("hello"), Firmware::Bios);
    let elf = std::fs::read(support::workspace().join("target/atoll/test-hello/kernel.elf"))
        .expect("the unstripped kernel beside the image");
    let mut handlers = elf_functions(&elf, is_wasmi_handler);
    handlers.sort_unstable();
    handlers.dedup(); // identical handlers folded into one by the linker
    assert!(handlers.len() > 1_000, "{} handlers found", handlers.len());
    let base = atoll_abi::bundle::KERNEL_BASE;
    let mut by_slot = std::collections::BTreeMap::<u64, Vec<u64>>::new();
    for &address in &handlers {
        assert_eq!(
            address % 64,
            0,
            "handler at {address:#x} not 64-byte aligned"
        );
        by_slot
            .entry(qemu_jump_cache_slot(base + address))
            .or_default()
            .push(address);
    }
    let shared: Vec<_> = by_slot.values().filter(|at| at.len() > 1).collect();
    assert!(shared.is_empty(), "handlers sharing a slot: {shared:x?}");
}
