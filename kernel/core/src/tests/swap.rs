//! Hot swap: state handoff, rollback, refusals, the request stream around a
//! swap, the heap over many swaps, and swaps asked for by the host.

use super::platform::TestPlatform;
use super::probes::{code, escaped, hello, holder, nested_const_module, probe, service_with};
use super::system::{LIMITS, TestSystem};
use crate::preflight::PreflightError;
use crate::{LoadError, ServiceState, Wait};
use atoll_abi::Error;
use atoll_abi::bundle::ServiceLimits;
use atoll_abi::supervision::CONTROL_START;

/// A counting server of `version`: each call is answered with the byte
/// `version * 100 + count`. It hands its count on through the state exports,
/// and, if `poison`, traps as soon as it starts.
fn counter(version: u32, poison: bool) -> String {
    let start = if poison { "unreachable" } else { "" };
    format!(
        r#"(module
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (global $count (mut i32) (i32.const 0))
        (func (export "atoll_state_save") (result i64)
            (i32.store (i32.const 500) (global.get $count))
            (i64.or (i64.shl (i64.const 500) (i64.const 32)) (i64.const 4)))
        (func (export "atoll_state_alloc") (param i32) (result i32) (i32.const 600))
        (func (export "atoll_state_restore") (param i32 i32)
            (global.set $count (i32.load (local.get 0))))
        (func (export "_start") (local $r i32)
            {start}
            (loop $serve
                (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
                (global.set $count (i32.add (global.get $count) (i32.const 1)))
                (i32.store8 (i32.const 300) (i32.add (i32.const {base}) (global.get $count)))
                (drop (call $reply (i32.load (i32.const 200)) (i32.const 300) (i32.const 1)))
                (br $serve))))"#,
        base = version * 100 % 256,
    )
}

/// [`counter`] as module bytes.
pub(super) fn counter_module(version: u32, poison: bool) -> Vec<u8> {
    wat::parse_str(counter(version, poison)).unwrap()
}

/// A supervisor that, for each message from a service (not the kernel),
/// swaps `svc` to the next of `modules` (in turn) and replies with the result.
fn swapper(modules: &[Vec<u8>]) -> String {
    let mut data = String::from("(data (i32.const 0) \"svc\")");
    let mut offsets = Vec::new();
    let mut at = 4096;
    for module in modules {
        data.push_str(&format!("(data (i32.const {at}) \"{}\")", escaped(module)));
        offsets.push((at, module.len()));
        at += module.len() + 16;
    }
    let mut choose = String::new();
    for (index, (offset, len)) in offsets.iter().enumerate() {
        choose.push_str(&format!(
            "(if (i32.eq (local.get $i) (i32.const {index})) (then (local.set $r (call $swap (i32.const 0) (i32.const 3) (i32.const {offset}) (i32.const {len})))))"
        ));
    }
    let count = modules.len();
    format!(
        r#"(module
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
        (import "atoll" "swap" (func $swap (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 4)
        {data}
        (func (export "_start") (local $r i32) (local $i i32)
            (loop $events
                (drop (call $receive (i32.const 1) (i32.const 1000) (i32.const 1024) (i64.const -1) (i32.const 200)))
                (if (i32.ne (i32.load (i32.const 204)) (i32.const -1)) (then
                    {choose}
                    (local.set $i (i32.rem_u (i32.add (local.get $i) (i32.const 1)) (i32.const {count})))
                    (i32.store (i32.const 300) (local.get $r))
                    (drop (call $reply (i32.load (i32.const 200)) (i32.const 300) (i32.const 4)))))
                (br $events))))"#
    )
}

/// A client that calls `svc` `rounds` times per swap for `swaps` swaps, each
/// swap requested from the supervisor (handle 2) between rounds, and reports
/// every answer, and every swap result.
fn swap_client(rounds: u32, swaps: u32) -> String {
    probe(
        "",
        &format!(
            "(loop $swaps
                (local.set $i (i32.const 0))
                (loop $calls
                    (local.set $r (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
                    (call $report (select (i32.load8_u (i32.const 300)) (local.get $r) (i32.ge_s (local.get $r) (i32.const 0))))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $calls (i32.lt_u (local.get $i) (i32.const {rounds}))))
                (local.set $h (i32.add (local.get $h) (i32.const 1)))
                (if (i32.le_u (local.get $h) (i32.const {swaps})) (then
                    (drop (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 400) (i32.const 8)))
                    (call $report (i32.load (i32.const 400)))
                    (br $swaps))))"
        ),
    )
}

/// The swap system: a supervisor swapping `svc` (a [`counter`] of version 1)
/// to `modules` in turn, and a [`swap_client`] asking for `swaps` swaps.
fn swap_system(modules: &[Vec<u8>], rounds: u32, swaps: u32) -> TestSystem {
    TestSystem::new()
        .service("sup", swapper(modules))
        .provides("sup")
        .supervisor()
        .service("svc", counter(1, false))
        .provides("svc")
        .service("client", swap_client(rounds, swaps))
        .uses("svc")
        .uses("sup")
}

#[test]
fn a_swap_hands_the_state_over_and_loses_no_request() {
    let modules = [counter_module(2, false), counter_module(1, false)];
    let (system, _) = swap_system(&modules, 3, 2).run();
    // v1 answers 101..103, v2 continues the count (204..206), v1 again (107..109);
    // each swap request answers 0.
    assert_eq!(
        system.lines_of("client"),
        [
            "101", "102", "103", "0", "204", "205", "206", "0", "107", "108", "109"
        ]
    );
    assert_eq!(system.kernel.swaps("svc"), Some(2));
    assert!(matches!(
        system.state_of("svc"),
        Some(ServiceState::Blocked(Wait::Receive { .. }))
    ));
}

#[test]
fn a_broken_version_is_rolled_back_and_an_invalid_one_refused() {
    let broken = counter_module(3, true);
    let invalid = b"\0asm\x01\0\0\0\x05".to_vec();
    let (system, _) = swap_system(&[broken, invalid], 2, 2).run();
    // The broken version is swapped in (0) and faults at once: version 1 is
    // back and goes on counting (103, 104). The invalid one is refused.
    assert_eq!(
        system.lines_of("client"),
        [
            "101",
            "102",
            "0",
            "103",
            "104",
            &code(Error::InvalidModule),
            "105",
            "106"
        ]
    );
    assert_eq!(system.kernel.swaps("svc"), Some(1));
    assert!(matches!(
        system.state_of("svc"),
        Some(ServiceState::Blocked(Wait::Receive { .. }))
    ));
    let console = system.console();
    assert!(
        console.contains("atoll: swap of svc rolled back: the new version faulted"),
        "{console}"
    );
}

#[test]
fn a_hundred_swaps_under_a_request_stream() {
    let modules = [counter_module(2, false), counter_module(1, false)];
    let (system, _) = swap_system(&modules, 2, 100).run();
    let answers: Vec<u32> = system
        .lines_of("client")
        .iter()
        .map(|line| line.parse().unwrap())
        .collect();
    // 101 rounds of 2 answers with a swap report (0) between rounds.
    assert_eq!(answers.len(), 101 * 2 + 100, "{answers:?}");
    let replies: Vec<u32> = answers
        .chunks(3)
        .flat_map(|chunk| chunk.iter().take(2).copied())
        .collect();
    for (index, reply) in replies.iter().enumerate() {
        // The count is carried across every swap; the version alternates.
        let count = index as u32 + 1;
        let version = if (index / 2) % 2 == 0 { 100 } else { 200 };
        assert_eq!(
            *reply,
            (version + count) % 256,
            "answer {index}: {answers:?}"
        );
    }
    assert!(
        answers
            .chunks(3)
            .all(|chunk| chunk.get(2).is_none_or(|swap| *swap == 0))
    );
    assert_eq!(system.kernel.swaps("svc"), Some(100));
}

#[test]
fn a_thousand_swaps_leave_the_heap_flat() {
    let modules = [counter_module(2, false), counter_module(1, false)];
    let no_probation = ServiceLimits {
        swap_probation_ms: 0,
        ..LIMITS
    };
    let (system, _) = TestSystem::new()
        .service("sup", swapper(&modules))
        .provides("sup")
        .supervisor()
        .limits(no_probation)
        .service("svc", counter(1, false))
        .provides("svc")
        .limits(no_probation)
        .service("client", swap_client(1, 1000))
        .uses("svc")
        .uses("sup")
        .limits(no_probation)
        .platform(TestPlatform::new().sampling_heap(4000))
        .run();
    assert_eq!(system.kernel.swaps("svc"), Some(1000));
    let samples = system.platform.heap_samples();
    // One console line per swap (the kernel's) plus the client's two reports.
    assert!(samples.len() > 3000, "{} samples", samples.len());
    let settled = samples[300..600].iter().copied().max().unwrap();
    let end = samples[samples.len() - 300..]
        .iter()
        .copied()
        .max()
        .unwrap();
    assert!(
        end <= settled + 64 * 1024,
        "heap grew from {settled} to {end} bytes over 1,000 swaps"
    );
}

#[test]
fn a_hot_swap_to_nested_constant_expressions_is_refused() {
    // 20,000 levels (60 KB) double-faulted the kernel at swap time.
    let deep = nested_const_module(20_000);
    assert!(matches!(
        crate::loader::validate(&deep, &LIMITS),
        Err(LoadError::Preflight(
            PreflightError::ConstExprTooLong { .. }
        ))
    ));
    let (system, summary) = swap_system(&[deep], 1, 1).run();
    assert_eq!(
        system.lines_of("client"),
        ["101", &code(Error::InvalidModule), "102"]
    );
    assert_eq!(system.kernel.swaps("svc"), Some(0));
    assert_eq!(summary.faulted, 0);
}

#[test]
fn a_rollback_of_the_supervisors_swap_is_not_reported_to_the_host() {
    // Before: "rolled back: ..." went to the control channel whoever had
    // asked, where a concurrent `push` could take it for its own answer.
    let broken = counter_module(3, true);
    let (system, _) = swap_system(&[broken], 2, 1).run();
    // Swapped (0), then rolled back: version 1 answers on.
    assert_eq!(system.lines_of("client"), ["101", "102", "0", "103", "104"]);
    assert_eq!(system.platform.control_output(), "");
}

#[test]
fn a_swap_pending_when_a_service_ends_is_not_applied_to_its_next_start() {
    // svc is busy (spinning) when the swap is asked, then faults; the
    // supervisor starts it afresh. Before: the new instance was swapped to
    // the old request's module at its first `receive`.
    let v2 = wat::parse_str(hello("v2")).unwrap();
    let svc = probe(
        "v1",
        "(if (i64.lt_u (call $time) (i64.const 5000000)) (then
            (loop $spin
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $spin (i32.lt_u (local.get $i) (i32.const 100000))))
            unreachable))
         (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const 0) (i32.const 200)))
         (drop (call $log (i32.const 0) (i32.const 2)))",
    );
    let sup = format!(
        r#"(module
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "swap" (func $swap (param i32 i32 i32 i32) (result i32)))
        (import "atoll" "control" (func $control (param i32 i32 i32) (result i32)))
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (memory (export "memory") 4)
        (data (i32.const 0) "svc")
        (data (i32.const 4096) "{module}")
        (func (export "_start")
            (drop (call $sleep (i64.const 1000)))
            (if (i32.ne (call $swap (i32.const 0) (i32.const 3) (i32.const 4096) (i32.const {len})) (i32.const 0))
                (then unreachable))
            (drop (call $receive (i32.const 1) (i32.const 1000) (i32.const 1024) (i64.const -1) (i32.const 200)))
            (drop (call $sleep (i64.const 6000000)))
            (if (i32.ne (call $control (i32.const {CONTROL_START}) (i32.const 0) (i32.const 3)) (i32.const 0))
                (then unreachable))))"#,
        module = escaped(&v2),
        len = v2.len()
    );
    let (system, summary) = TestSystem::new()
        .service("sup", sup)
        .provides("sup")
        .supervisor()
        .service("svc", svc)
        .provides("svc")
        .run();
    // The fresh start is version 1 (it logs "v1"), not the swapped-in v2.
    assert_eq!(system.lines_of("svc"), ["v1"], "{}", system.console());
    assert_eq!(system.kernel.restarts("svc"), Some(1));
    assert_eq!(system.kernel.swaps("svc"), Some(0));
    assert_eq!(system.state_of("sup"), Some(ServiceState::Exited));
    assert_eq!(summary.faulted, 1);
}

#[test]
fn a_call_the_old_version_had_taken_is_answered_at_the_swap() {
    // `svc` v1 takes every call and never answers (a reader waiting for
    // input, a request in flight). Before: its caller waited for ever.
    let waiting = probe(
        "",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))",
    );
    let swapping = probe(
        "",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 400) (i32.const 8)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
         (call $report (i32.load8_u (i32.const 300)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sup", swapper(&[counter_module(2, false)]))
        .provides("sup")
        .supervisor()
        .service("svc", holder())
        .provides("svc")
        .service("waiting", waiting)
        .uses("svc")
        .service("swapping", swapping)
        .uses("svc")
        .uses("sup")
        .run();
    assert_eq!(system.lines_of("waiting"), [code(Error::PeerGone)]);
    // The supervisor answered (4 bytes), and v2 answers (1 byte: 201).
    assert_eq!(system.lines_of("swapping"), ["4", "1", "201"]);
    assert_eq!(system.kernel.swaps("svc"), Some(1));
    assert_eq!(system.kernel.pending_calls(), 0);
    assert_eq!(summary.faulted, 0);
}

#[test]
fn a_host_swap_refused_tells_the_host_why() {
    // Before: the host heard only "error: swap of svc: invalid module"; the
    // reason went to the serial console.
    let mut system = TestSystem::new().service("svc", hello("v1")).boot();
    let broken = service_with(r#"(data (i32.const 65535) "ab")"#);
    let reason = crate::loader::validate(&broken, &LIMITS).unwrap_err();
    assert!(matches!(reason, LoadError::DataOutOfBounds { .. }));
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap("svc", &broken));
    system.kernel.poll_control();
    // The control channel's protocol is text: its answer line is the outcome.
    assert_eq!(
        system.platform.control_output(),
        format!("error: swap of svc: invalid module: {reason}\n")
    );
    assert_eq!(system.kernel.swaps("svc"), Some(0));
}

#[test]
fn a_late_reply_after_a_rollback_gets_peer_gone() {
    // `svc` v1 takes `waiting`'s call and keeps the token; a swap answers that
    // call (PeerGone), the new version faults at once and v1 comes back, parked
    // where it was. Its late reply to the answered call gets PeerGone (before:
    // BadHandle, as for a token that never existed); its reply to a live call
    // works; a second reply to that token is the server's own mistake:
    // BadHandle.
    let holder = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (i32.store (i32.const 500) (call $token))
         (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (call $reply (i32.load (i32.const 500)) (i32.const 100) (i32.const 1)))
         (call $report (call $reply (call $token) (i32.const 100) (i32.const 1)))
         (call $report (call $reply (call $token) (i32.const 100) (i32.const 1)))",
    );
    let waiting = probe(
        "",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))",
    );
    let swapping = probe(
        "x",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 400) (i32.const 8)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))",
    );
    let (system, _) = TestSystem::new()
        .service("sup", swapper(&[counter_module(3, true)]))
        .provides("sup")
        .supervisor()
        .service("svc", holder)
        .provides("svc")
        .service("waiting", waiting)
        .uses("svc")
        .service("swapping", swapping)
        .uses("svc")
        .uses("sup")
        .run();
    assert!(system.console().contains("swap of svc rolled back"));
    assert_eq!(system.lines_of("waiting"), [code(Error::PeerGone)]);
    // The supervisor answered (4 bytes), and v1 answers (1 byte).
    assert_eq!(system.lines_of("swapping"), ["4", "1"]);
    assert_eq!(
        system.lines_of("svc"),
        [code(Error::PeerGone), "0".into(), code(Error::BadHandle)]
    );
}

#[test]
fn the_copy_of_a_swapped_module_counts_in_fuel_used() {
    // The kernel charges 1 fuel per 64 bytes for copying the module out of
    // the supervisor; that fuel is burnt, so `fuel_used` shows it (before: it
    // was taken from the store between two slices and counted nowhere).
    let sup = probe(
        "svc",
        "(call $report (call $swap (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 32000)))",
    );
    let (system, _) = TestSystem::new()
        .service("sup", sup)
        .supervisor()
        .service("svc", holder())
        .provides("svc")
        .run();
    assert_eq!(system.lines_of("sup"), [code(Error::InvalidModule)]);
    let fuel = system.kernel.fuel_used("sup").unwrap();
    assert!(
        fuel >= 500,
        "fuel_used {fuel} leaves out the 500 charged for the copy"
    );
}

#[cfg(not(feature = "late-swap-start"))]
#[test]
fn a_version_whose_start_function_traps_is_refused_when_asked_for() {
    // The new version is instantiated when the swap is asked for (outside the
    // pause): one that cannot start is refused at once, not at the quiescent
    // point, and the old version is untouched.
    let mut system = TestSystem::new().service("svc", hello("v1")).boot();
    let trapping = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func $s unreachable) (start $s) (func (export "_start")))"#,
    )
    .unwrap();
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap("svc", &trapping));
    system.kernel.poll_control();
    let answer = system.platform.control_output();
    assert!(
        answer.starts_with("error: swap of svc: invalid module"),
        "{answer}"
    );
    assert_eq!(system.kernel.swaps("svc"), Some(0));
    system.run();
    assert_eq!(system.lines_of("svc"), ["v1"]);
}

#[test]
fn a_host_swap_pending_when_the_service_ends_for_good_is_abandoned_and_the_host_told() {
    // svc sleeps (live, not in `receive`) when the host asks, then exits
    // with no supervisor to start it again. Before: the pending swap (and,
    // since swaps start the new version when asked, its whole instance)
    // stayed in the slot for ever, and the host was never answered.
    let svc = probe("", "(drop (call $sleep (i64.const 1000000)))");
    let mut system = TestSystem::new().service("svc", svc).provides("svc").boot();
    let v2 = counter_module(2, false);
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap("svc", &v2));
    system.kernel.poll_control();
    assert_eq!(system.platform.control_output(), "");
    system.run();
    assert_eq!(system.state_of("svc"), Some(ServiceState::Exited));
    assert_eq!(system.kernel.swaps("svc"), Some(0));
    assert_swap_abandoned(&system, "svc");
}

#[test]
fn a_host_swap_pending_when_the_supervisor_stops_the_service_is_abandoned_and_the_host_told() {
    // Before: `halt` dropped the pending swap silently; the host waited.
    let svc = probe("", "(drop (call $sleep (i64.const 5000000)))");
    let sup = probe(
        "svc",
        &format!(
            "(drop (call $sleep (i64.const 1000000)))
             (call $report (call $control (i32.const {stop}) (i32.const 0) (i32.const 3)))",
            stop = atoll_abi::supervision::CONTROL_STOP
        ),
    );
    let mut system = TestSystem::new()
        .service("sup", sup)
        .provides("sup")
        .supervisor()
        .service("svc", svc)
        .provides("svc")
        .boot();
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap(
            "svc",
            &counter_module(2, false),
        ));
    system.kernel.poll_control();
    system.run();
    assert_eq!(system.lines_of("sup"), ["0"]);
    assert_eq!(system.state_of("svc"), Some(ServiceState::Stopped));
    assert_swap_abandoned(&system, "svc");
}

#[test]
fn a_host_swap_superseded_by_a_newer_one_is_answered_and_the_newer_one_applied() {
    // Both requests arrive before svc first runs (to wait in `receive`):
    // the first is pending when the second comes. Before: the second
    // replaced the first silently, and the host heard one answer for two
    // requests.
    let system = two_host_swaps(false, [(2, false), (3, false)]);
    let answers = system.platform.control_output();
    let lines: Vec<&str> = answers.lines().collect();
    assert_eq!(lines.len(), 2, "{answers:?}");
    assert!(
        lines[0].starts_with("error: swap of svc abandoned: a newer version was asked for"),
        "{answers:?}"
    );
    assert!(
        lines[1].starts_with("ok: service svc swapped"),
        "{answers:?}"
    );
    assert_eq!(system.kernel.swaps("svc"), Some(1));
    assert_eq!(system.kernel.swap_pending("svc"), Some(false));
}

#[test]
fn a_version_rolled_back_before_it_served_logs_no_swap_pause() {
    // Found by review: the new version faults at its start, within its
    // probation, and the old one is put back; the pause stayed open and
    // the restored version's next `receive` logged a pause for a version
    // that never served.
    let (system, _) = swap_system(&[counter_module(3, true)], 2, 1).run();
    let console = system.console();
    assert!(console.contains("rolled back"), "{console}");
    assert!(!console.contains("swap pause of svc"), "{console}");
}

#[test]
fn every_swap_logs_its_pause_even_when_the_next_is_asked_for_before_it_serves() {
    // Found by review: v2 is swapped in at once (svc waits in `receive`),
    // and v3 is asked for before v2 first asks for a message; the second
    // request cleared v2's open pause, so two swaps logged one pause.
    let system = two_host_swaps(true, [(2, false), (3, false)]);
    let console = system.console();
    assert_eq!(system.kernel.swaps("svc"), Some(2), "{console}");
    assert_eq!(console.matches("swap pause of svc").count(), 2, "{console}");
}

#[test]
fn a_swap_pending_when_its_predecessor_is_rolled_back_is_abandoned_and_the_host_told() {
    // Found by review: v2 (faulting at start) is swapped in at once, v3 is
    // left pending; v2 is rolled back and v1 parked again, where the kernel
    // never sees it reach `receive`: v3 stayed pending for ever, its
    // instance held, and the host never heard of it.
    let system = two_host_swaps(true, [(2, true), (3, false)]);
    let answers = system.platform.control_output();
    assert!(answers.contains("rolled back"), "{answers}");
    assert!(
        answers.contains(
            "error: swap of svc abandoned: the version it was to replace was rolled back"
        ),
        "{answers}"
    );
    assert_eq!(system.kernel.swap_pending("svc"), Some(false));
}

#[test]
fn a_drivers_new_version_touches_its_device_only_at_the_quiescent_point() {
    // The driver sleeps (live, not in `receive`) when the host asks for a
    // swap whose start function writes its port, then exits: the swap is
    // abandoned. Before: a driver's new version was instantiated when the
    // swap was asked for, so its start function wrote the device's port
    // while the old version was still driving it, for a version that never
    // took over.
    let driver = probe("", "(drop (call $sleep (i64.const 1000000)))");
    let mut system = TestSystem::new()
        .service("driver", driver)
        .provides("dev")
        .grants(atoll_abi::driver::Grants {
            ports: vec![atoll_abi::driver::PortRange {
                first: 0x300,
                last: 0x30f,
            }],
            ..atoll_abi::driver::Grants::default()
        })
        .boot();
    let v2 = wat::parse_str(
        r#"(module
            (import "atoll" "port_out" (func $port_out (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func $reset (drop (call $port_out (i32.const 0x300) (i32.const 1) (i32.const 0))))
            (start $reset)
            (func (export "_start")))"#,
    )
    .unwrap();
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap("driver", &v2));
    system.kernel.poll_control();
    assert_eq!(system.platform.ports(), Vec::<u16>::new());
    system.run();
    assert_eq!(system.platform.ports(), Vec::<u16>::new());
    assert!(
        system
            .platform
            .control_output()
            .starts_with("error: swap of driver abandoned"),
        "{}",
        system.platform.control_output()
    );
}

/// Boots `svc` (the counter, version 1), lets it first wait in `receive` if
/// `waiting`, has the host ask for a swap to each of `versions` (version,
/// poison) in one poll of the control channel, and runs the system.
fn two_host_swaps(waiting: bool, versions: [(u32, bool); 2]) -> super::system::System {
    let mut system = TestSystem::new()
        .service("svc", counter(1, false))
        .provides("svc")
        .boot();
    if waiting {
        system.run();
    }
    for (version, poison) in versions {
        system
            .platform
            .send_control(&atoll_abi::control::encode_swap(
                "svc",
                &counter_module(version, poison),
            ));
    }
    system.kernel.poll_control();
    system.run();
    system
}

/// The host was told that `name`'s pending swap was abandoned, and none is
/// pending any more.
fn assert_swap_abandoned(system: &super::system::System, name: &str) {
    let answer = system.platform.control_output();
    assert!(
        answer.starts_with(&format!("error: swap of {name} abandoned")),
        "the host heard {answer:?}"
    );
    assert_eq!(system.kernel.swap_pending(name), Some(false));
}

/// A new version of `svc` that counts the calls of its state-buffer export
/// and logs `warm` if it was asked twice (once when the swap was asked for,
/// once at the quiescent point), `cold` if once; with `trap`, that export
/// traps.
fn counting_alloc_version(trap: bool) -> Vec<u8> {
    let alloc = if trap { "unreachable" } else { "" };
    wat::parse_str(format!(
        r#"(module
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "warmcold")
        (global $allocs (mut i32) (i32.const 0))
        (func (export "atoll_state_save") (result i64) (i64.const 0))
        (func (export "atoll_state_alloc") (param i32) (result i32)
            {alloc}
            (global.set $allocs (i32.add (global.get $allocs) (i32.const 1)))
            (i32.const 600))
        (func (export "atoll_state_restore") (param i32 i32))
        (func (export "_start")
            (drop (call $log
                (select (i32.const 0) (i32.const 4) (i32.eq (global.get $allocs) (i32.const 2)))
                (i32.const 4)))))"#
    ))
    .unwrap()
}

/// The counter `svc`, waiting in `receive`, and the host's request to swap
/// it to `module`, read.
fn counter_asked_to_swap_to(module: &[u8]) -> super::system::System {
    asked_to_swap(counter_module(1, false), module)
}

/// Service `svc` (`old`), run until it waits, and the host's request to swap
/// it to `module`, read.
fn asked_to_swap(old: Vec<u8>, module: &[u8]) -> super::system::System {
    let mut system = TestSystem::new().module("svc", old).provides("svc").boot();
    system.run();
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap("svc", module));
    system.kernel.poll_control();
    system
}

#[cfg(not(feature = "late-swap-start"))]
#[test]
fn a_new_version_gives_a_state_buffer_before_the_pause_and_one_in_it() {
    // The first allocation of a fresh instance grows its memory (most of
    // the pause before): it is asked for when the swap is, outside the
    // pause; the buffer the state goes into is asked for in the pause.
    let mut system = counter_asked_to_swap_to(&counting_alloc_version(false));
    system.run();
    assert_eq!(system.kernel.swaps("svc"), Some(1));
    let expected = if cfg!(feature = "cold-state-buffer") {
        "cold"
    } else {
        "warm"
    };
    assert_eq!(system.lines_of("svc"), [expected]);
}

#[cfg(not(any(feature = "late-swap-start", feature = "cold-state-buffer")))]
#[test]
fn a_version_whose_state_buffer_export_traps_is_refused_when_asked_for() {
    let mut system = counter_asked_to_swap_to(&counting_alloc_version(true));
    let answer = system.platform.control_output();
    assert!(
        answer.starts_with("error: swap of svc: invalid module: its atoll_state_alloc failed"),
        "{answer}"
    );
    system.run();
    assert_eq!(system.kernel.swaps("svc"), Some(0));
    assert!(matches!(
        system.state_of("svc"),
        Some(ServiceState::Blocked(Wait::Receive { .. }))
    ));
}

#[test]
fn a_version_replacing_one_that_saves_no_state_is_not_asked_for_a_buffer() {
    // The old version exports no `atoll_state_save`: no state is handed
    // over, so the new version's buffer export is never called, not even to
    // warm it, and a trapping one refuses nothing.
    let old = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))",
    );
    let old = wat::parse_str(old).unwrap();
    let mut system = asked_to_swap(old, &counting_alloc_version(true));
    system.run();
    let answer = system.platform.control_output();
    assert!(answer.starts_with("ok: service svc swapped"), "{answer}");
    assert_eq!(system.kernel.swaps("svc"), Some(1));
    // Its `_start` ran with no buffer asked for.
    assert_eq!(system.lines_of("svc"), ["cold"]);
}

#[cfg(not(feature = "late-swap-start"))]
#[test]
fn the_new_versions_first_allocation_is_made_before_the_quiescent_point() {
    // The old version sleeps when the swap is asked for: the swap waits for
    // its `receive`, and the new version has already made its first
    // allocation (which grows its memory by a page, as an allocator's first
    // does), outside the pause to come. (The old version saves a state,
    // so the new one will be asked for a buffer.)
    let old = r#"(module
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "atoll_state_save") (result i64) (i64.const 0))
        (func (export "_start")
            (drop (call $sleep (i64.const 1000000)))
            (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))))"#;
    let mut system = TestSystem::new().service("svc", old).provides("svc").boot();
    let new = wat::parse_str(
        r#"(module
        (memory (export "memory") 1)
        (global $grown (mut i32) (i32.const 0))
        (func (export "atoll_state_save") (result i64) (i64.const 0))
        (func (export "atoll_state_alloc") (param i32) (result i32)
            (if (i32.eqz (global.get $grown)) (then
                (drop (memory.grow (i32.const 1)))
                (global.set $grown (i32.const 1))))
            (i32.const 600))
        (func (export "atoll_state_restore") (param i32 i32))
        (func (export "_start")))"#,
    )
    .unwrap();
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap("svc", &new));
    system.kernel.poll_control();
    assert_eq!(system.kernel.swap_pending("svc"), Some(true));
    let pages = if cfg!(feature = "cold-state-buffer") {
        1
    } else {
        2
    };
    assert_eq!(
        system.kernel.pending_version_memory("svc"),
        Some(pages * 65_536)
    );
    system.run();
    assert_eq!(system.kernel.swaps("svc"), Some(1));
}
