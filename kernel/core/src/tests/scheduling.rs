//! Scheduling and fuel: preemption, round robin, what kernel calls and
//! console output cost, and slices of one service run alone.

use super::probes::{hello, probe};
use super::system::{LIMITS, TestSystem};
use crate::service::SliceOutcome;
use atoll_abi::bundle::ServiceLimits;

/// Where `marker` first appears on `console` (it must).
fn position(console: &str, marker: &str) -> usize {
    console
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {console}"))
}

#[test]
fn a_spinning_service_is_preempted_and_others_run() {
    let spin = r#"(module
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "done")
        (func (export "_start") (local $i i32)
            (loop $again
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const 200000))))
            (drop (call $log (i32.const 0) (i32.const 4)))))"#;
    let (system, summary) = TestSystem::new()
        .service("spinner", spin)
        .service("hello", hello("still here"))
        .run();
    let console = system.console();
    assert!(
        position(&console, "[hello] still here") < position(&console, "[spinner] done"),
        "{console}"
    );
    assert_eq!(summary.exited, 2);
}

#[test]
fn kernel_calls_do_not_extend_a_slice() {
    // A service that spins while making kernel calls is still preempted: the
    // other service finishes first.
    let busy = probe(
        "x",
        "(loop $again
            (drop (call $lookup (i32.const 0) (i32.const 1)))
            (drop (call $send (i32.const 99) (i32.const 0) (i32.const 1)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 20000))))
         (call $report (i32.const 1))",
    );
    let (system, _) = TestSystem::new()
        .service("busy", busy)
        .service("quick", hello("done"))
        .run();
    let console = system.console();
    assert!(
        position(&console, "[quick] done") < position(&console, "[busy] 1"),
        "{console}"
    );
}

#[test]
fn round_robin_is_fair_between_equal_spinners() {
    // Three services with the same CPU-bound work, and a short one added last:
    // with equal slices in turn the short one finishes first and the equal ones
    // finish in the order they started, each having burnt the same fuel.
    let spin = probe(
        "",
        "(loop $again
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 30000))))
         (call $report (i32.const 1))",
    );
    let (system, summary) = TestSystem::new()
        .service("a", &spin)
        .service("b", &spin)
        .service("c", &spin)
        .service("short", hello("first"))
        .run();
    let console = system.console();
    let at = |marker: &str| position(&console, marker);
    assert!(at("[short] first") < at("[a] 1"), "{console}");
    assert!(at("[a] 1") < at("[b] 1"), "{console}");
    assert!(at("[b] 1") < at("[c] 1"), "{console}");
    assert_eq!(summary.exited, 4);
    let fuel = |name: &str| system.kernel.fuel_used(name).unwrap();
    assert_eq!(fuel("a"), fuel("b"));
    assert_eq!(fuel("b"), fuel("c"));
}

#[test]
fn fuel_is_accounted_per_service() {
    let busy = probe(
        "",
        "(loop $again
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 5000))))",
    );
    let (system, _) = TestSystem::new()
        .service("busy", busy)
        .service("idle", probe("", ""))
        .run();
    let busy = system.kernel.fuel_used("busy").unwrap();
    let idle = system.kernel.fuel_used("idle").unwrap();
    assert!(busy > 5000 * 3, "{busy}");
    assert!(idle < 100, "{idle}");
    assert_eq!(system.kernel.fuel_used("nobody"), None);
}

#[test]
fn an_instruction_costing_more_than_a_slice_still_runs() {
    // memory.grow of 10 pages costs 10 * 65536 / 64 = 10,240 fuel: ten slices.
    let grower = probe("", "(call $report (memory.grow (i32.const 10)))");
    let (system, summary) = TestSystem::new().service("grower", grower).run();
    assert_eq!(system.lines_of("grower"), ["1"]);
    assert_eq!(summary.exited, 1);
    assert!(system.kernel.fuel_used("grower").unwrap() > 10_240);
}

#[test]
fn console_output_is_paid_for_in_fuel() {
    // 40 lines of 1,000 bytes cost 40,000 fuel: the loud service is preempted
    // many times, and the quiet one gets the CPU before the loud one is done.
    let loud = probe(
        "",
        "(memory.fill (i32.const 3000) (i32.const 65) (i32.const 1000))
         (loop $again
            (drop (call $log (i32.const 3000) (i32.const 1000)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 40))))
         (call $report (i32.const 1))",
    );
    let (system, _) = TestSystem::new()
        .service("loud", loud)
        .service("quiet", hello("me too"))
        .run();
    let console = system.console();
    let quiet = position(&console, "[quiet] me too");
    assert!(quiet < position(&console, "[loud] 1"), "{console}");
    assert!(quiet > position(&console, "[loud] AAAA"), "{console}");
    assert!(system.kernel.fuel_used("loud").unwrap() > 40_000);
}

// One service alone, a slice at a time.

#[test]
fn a_slice_is_larger_only_to_resume_the_costly_instruction() {
    // One `memory.fill` costing three slices and a `sleep` at once, then
    // turns of a `sleep` and a spin longer than a slice. Before: every later
    // slice kept the fill's size, so the spin was never preempted.
    let system = TestSystem::new().service(
        "alone",
        r#"(module
            (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
            (memory (export "memory") 4)
            (func (export "_start") (local $i i32)
                (memory.fill (i32.const 0) (i32.const 0) (i32.const 200000))
                (loop $turns
                    (drop (call $sleep (i64.const 0)))
                    (local.set $i (i32.const 0))
                    (loop $spin
                        (local.set $i (i32.add (local.get $i) (i32.const 1)))
                        (br_if $spin (i32.lt_u (local.get $i) (i32.const 150))))
                    (br $turns))))"#,
    );
    let mut service = system.load_alone().unwrap();
    let mut preempted_after_fill = 0;
    let mut filled = false;
    for _ in 0..40 {
        match service.run_slice(0, true) {
            SliceOutcome::Preempted if filled => preempted_after_fill += 1,
            SliceOutcome::Preempted => {}
            SliceOutcome::Syscall(_) => filled = true,
            other => panic!("{other:?}"),
        }
    }
    assert!(filled);
    // The spin (about 1,350 fuel) does not fit a 1,000-fuel slice.
    assert!(preempted_after_fill >= 10, "{preempted_after_fill}");
}

/// Iterations of a counting loop (kept at address 0) after `slices` slices,
/// with `random_get` over `random_bytes` first (none if 0): the test shim
/// makes the kernel copy that many bytes into the program sixteen times.
fn iterations_after(random_bytes: u32, slices: usize) -> u32 {
    let system = TestSystem::new()
        .wasi_shim(super::wasi::test_shim())
        .service(
            "alone",
            format!(
                r#"(module
            (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
            (memory (export "memory") 32)
            (func (export "_start")
                (if (i32.ne (i32.const {random_bytes}) (i32.const 0)) (then
                    (drop (call $random (i32.const 64) (i32.const {random_bytes})))))
                (loop $count
                    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
                    (br $count))))"#
            ),
        )
        .limits(ServiceLimits {
            memory_bytes: 4 << 20,
            ..LIMITS
        });
    let mut service = system.load_alone().unwrap();
    for _ in 0..slices {
        assert_eq!(service.run_slice(0, true), SliceOutcome::Preempted);
    }
    let counter = service
        .read_program_memory(crate::guest::GuestSlice::new(0, 4))
        .unwrap();
    u32::from_le_bytes(counter.try_into().unwrap())
}

#[test]
fn kernel_work_is_paid_in_full_even_when_the_slice_is_nearly_spent() {
    // 16 copies of 512 KiB cost 131,072 fuel; the slice is 1,000. Before,
    // the charge stopped at what was left of the slice: the rest was free.
    let idle = iterations_after(0, 300);
    let spender = iterations_after(1 << 19, 300);
    // 300 slices are 300,000 fuel; the random bytes take 131,072 of them.
    assert!(
        spender * 10 < idle * 6,
        "spender {spender} vs idle {idle} iterations"
    );
    assert!(spender * 10 > idle * 4, "spender {spender} vs idle {idle}");
}
