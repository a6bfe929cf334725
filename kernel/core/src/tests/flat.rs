//! A thousand restarts and a thousand hot swaps leave the kernel heap flat
//! (issue 11, item 5): a restart instantiates the kept program in a fresh
//! Store, a swap drops the version before last with its Engine.

use super::probes::escaped;
use super::swap::counter_module;
use super::system::TestSystem;
use atoll_abi::bundle::ServiceLimits;

/// Boots a supervisor (`sup`, running `supervisor`) and `svc` (a counter
/// waiting in `receive`), runs them to the end, and returns the console and
/// the bytes the calling thread holds with the kernel still alive.
fn held_after(supervisor: String) -> (String, isize) {
    let limits = ServiceLimits {
        swap_probation_ms: 0,
        ..ServiceLimits::default()
    };
    let mut system = TestSystem::new()
        .service("sup", supervisor)
        .provides("sup")
        .supervisor()
        .limits(limits)
        .module("svc", counter_module(1, false))
        .provides("svc")
        .limits(limits)
        .boot();
    // The console's growth is the test's, not the kernel's.
    system.platform.reserve_console(4 << 20);
    let summary = system.run();
    assert_eq!(summary.faulted, 0);
    let held = crate::test_allocator::live_bytes();
    (system.console(), held)
}

/// Restarts `svc` `times` times, sleeping between restarts so that it runs.
fn restarter(times: u32) -> String {
    format!(
        r#"(module
        (import "atoll" "control" (func $control (param i32 i32 i32) (result i32)))
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "svc")
        (func (export "_start") (local $i i32)
            (loop $again
                (if (i32.ne (call $control (i32.const {restart}) (i32.const 0) (i32.const 3)) (i32.const 0))
                    (then unreachable))
                (drop (call $sleep (i64.const 1000000)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const {times}))))))"#,
        restart = atoll_abi::supervision::CONTROL_RESTART,
    )
}

/// Swaps `svc` `times` times, between two versions, sleeping between swaps so
/// that each takes place.
fn swapper_loop(times: u32, versions: &[Vec<u8>; 2]) -> String {
    let [first, second] = versions;
    let at = 4096 + first.len() + 16;
    format!(
        r#"(module
        (import "atoll" "swap" (func $swap (param i32 i32 i32 i32) (result i32)))
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (memory (export "memory") 4)
        (data (i32.const 0) "svc")
        (data (i32.const 4096) "{}")
        (data (i32.const {at}) "{}")
        (func (export "_start") (local $i i32) (local $r i32)
            (loop $again
                (local.set $r (if (result i32) (i32.and (local.get $i) (i32.const 1))
                    (then (call $swap (i32.const 0) (i32.const 3) (i32.const {at}) (i32.const {})))
                    (else (call $swap (i32.const 0) (i32.const 3) (i32.const 4096) (i32.const {})))))
                (if (i32.ne (local.get $r) (i32.const 0)) (then unreachable))
                (drop (call $sleep (i64.const 1000000)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const {times}))))))"#,
        escaped(first),
        escaped(second),
        second.len(),
        first.len(),
    )
}

/// The heap may grow by this much between 10 and 1,000 rounds (allocator
/// slack, the call table's and the timers' capacity), not by a round's worth.
const SLACK: isize = 64 * 1024;

#[test]
fn a_thousand_restarts_leave_the_kernel_heap_flat() {
    let (_, after_10) = held_after(restarter(10));
    let (console, after_1000) = held_after(restarter(1000));
    assert!(
        console.contains("service svc restarted (1000 so far)"),
        "{console}"
    );
    assert!(
        after_1000 <= after_10 + SLACK,
        "held after 10 restarts: {after_10} bytes, after 1,000: {after_1000}"
    );
}

#[test]
fn a_thousand_swaps_leave_the_kernel_heap_flat() {
    let versions = [counter_module(2, false), counter_module(3, false)];
    let (_, after_10) = held_after(swapper_loop(10, &versions));
    let (console, after_1000) = held_after(swapper_loop(1000, &versions));
    assert!(
        console.contains("service svc swapped to a new version (1000 swaps)"),
        "{console}"
    );
    assert!(
        after_1000 <= after_10 + SLACK,
        "held after 10 swaps: {after_10} bytes, after 1,000: {after_1000}"
    );
}
