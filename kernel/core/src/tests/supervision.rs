//! Supervision: reports to the supervisor, restart and stop through
//! `control`, and calls left waiting when services or the supervisor end.

use super::probes::{ENDS_AT_ONCE, code, holder, probe};
use super::system::TestSystem;
use crate::{ServiceState, Wait};
use atoll_abi::Error;
use atoll_abi::supervision::{CONTROL_RESTART, CONTROL_STOP};

/// A server on handle 1 that logs each message and traps on one starting with
/// `!`; calls are answered with the message.
fn fragile_server() -> String {
    probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (if (i32.eq (i32.load8_u (i32.const 100)) (i32.const 33)) (then unreachable))
            (drop (call $log (i32.const 100) (local.get $r)))
            (if (call $token) (then (drop (call $reply (call $token) (i32.const 100) (local.get $r)))))
            (br $serve))",
    )
}

/// A supervisor (handle 1: its event endpoint) that answers every report with
/// `control(op, "svc")` and logs the sender and the result.
fn supervisor(op: i32) -> String {
    probe(
        "svc",
        &format!(
            "(loop $events
                (local.set $r (call $receive (i32.const 1) (i32.const 400) (i32.const 512) (i64.const -1) (i32.const 200)))
                (call $report (i32.load (i32.const 204)))  ;; sender: the kernel
                (call $report (call $control (i32.const {op}) (i32.const 0) (i32.const 3)))
                (br $events))"
        ),
    )
}

#[test]
fn a_restarted_service_keeps_its_queue_and_only_the_taken_call_fails() {
    // The client queues a poison message, then two good ones, then calls: the
    // server dies on the poison, is restarted, and serves the rest in order.
    let client = probe(
        "!ab?",
        "(call $report (call $send (i32.const 1) (i32.const 0) (i32.const 1)))
         (call $report (call $send (i32.const 1) (i32.const 1) (i32.const 1)))
         (call $report (call $send (i32.const 1) (i32.const 2) (i32.const 1)))
         (call $report (call $call (i32.const 1) (i32.const 3) (i32.const 1) (i32.const 300) (i32.const 8)))
         (drop (call $log (i32.const 300) (i32.const 1)))
         ;; a call the server dies on: only this one fails
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
         (call $report (call $call (i32.const 1) (i32.const 2) (i32.const 1) (i32.const 300) (i32.const 8)))",
    );
    let (system, _) = TestSystem::new()
        .service("sup", supervisor(CONTROL_RESTART))
        .provides("events")
        .supervisor()
        .service("svc", fragile_server())
        .provides("svc")
        .service("client", client)
        .uses("svc")
        .run();
    assert_eq!(system.lines_of("svc"), ["a", "b", "?", "b"]);
    assert_eq!(
        system.lines_of("client"),
        ["0", "0", "0", "1", "?", &code(Error::PeerGone), "1"]
    );
    // Three reports from the kernel (sender u32::MAX): two faults of svc and
    // the client's exit; this test supervisor answers each by restarting svc.
    assert_eq!(system.lines_of("sup"), ["-1", "0", "-1", "0", "-1", "0"]);
    // Two restarts after the faults, and the one after the client's exit.
    assert_eq!(system.kernel.restarts("svc"), Some(3));
    assert!(matches!(
        system.state_of("svc"),
        Some(ServiceState::Blocked(Wait::Receive { .. }))
    ));
}

#[test]
fn stopping_a_service_answers_everyone_waiting_on_it() {
    let client = probe(
        "!x",
        "(call $report (call $send (i32.const 1) (i32.const 0) (i32.const 1)))
         (call $report (call $call (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 300) (i32.const 8)))
         (call $report (call $send (i32.const 1) (i32.const 1) (i32.const 1)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sup", supervisor(CONTROL_STOP))
        .provides("events")
        .supervisor()
        .service("svc", fragile_server())
        .provides("svc")
        .service("client", client)
        .uses("svc")
        .run();
    let gone = code(Error::PeerGone);
    assert_eq!(system.lines_of("client"), ["0", &gone, &gone]);
    // Each report (svc's fault, the client's exit) is answered with a stop,
    // and each stop is accepted; svc stays as it ended.
    assert_eq!(system.lines_of("sup"), ["-1", "0", "-1", "0"]);
    assert!(matches!(
        system.state_of("svc"),
        Some(ServiceState::Faulted(_))
    ));
    assert_eq!(system.kernel.restarts("svc"), Some(0));
    assert_eq!(system.kernel.pending_calls(), 0);
    assert_eq!(summary.faulted, 1);
}

#[test]
fn only_the_supervisor_may_control_and_only_known_services() {
    let meddler = probe(
        "svcnobody",
        "(call $report (call $control (i32.const 3) (i32.const 0) (i32.const 3)))",
    );
    let boss = probe(
        "svcnobodysup",
        "(call $report (call $control (i32.const 3) (i32.const 3) (i32.const 6)))  ;; unknown
         (call $report (call $control (i32.const 3) (i32.const 9) (i32.const 3)))  ;; itself
         (call $report (call $control (i32.const 9) (i32.const 0) (i32.const 3)))  ;; bad op
         (call $report (call $control (i32.const 2) (i32.const 0) (i32.const 3)))  ;; already running
         (call $report (call $control (i32.const 3) (i32.const 70000) (i32.const 3)))",
    );
    let (system, _) = TestSystem::new()
        .service("sup", boss)
        .provides("events")
        .supervisor()
        .service("svc", fragile_server())
        .provides("svc")
        .service("meddler", meddler)
        .run();
    assert_eq!(system.lines_of("meddler"), [code(Error::NotPermitted)]);
    assert_eq!(
        system.lines_of("sup"),
        [
            code(Error::NotFound),
            code(Error::NotPermitted),
            code(Error::InvalidArgument),
            code(Error::InvalidArgument),
            code(Error::OutOfBounds),
        ]
    );
    // Nobody restarted svc.
    assert_eq!(system.kernel.restarts("svc"), Some(0));
}

#[test]
fn a_spinning_service_can_be_killed_by_the_supervisor() {
    // svc spins for ever; a client asks the supervisor (by any message) to act,
    // and this supervisor stops svc. Without the stop, run() would never end.
    let spinner = probe("", "(loop $forever (br $forever))");
    let client = probe(
        "kill",
        "(call $report (call $send (i32.const 1) (i32.const 0) (i32.const 4)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sup", supervisor(CONTROL_STOP))
        .provides("events")
        .supervisor()
        .service("svc", spinner)
        .provides("svc")
        .service("client", client)
        .uses("events")
        .run();
    assert_eq!(system.state_of("svc"), Some(ServiceState::Stopped));
    assert_eq!(system.lines_of("client"), ["0"]);
    assert_eq!(summary.faulted, 0);
}

#[test]
fn a_reply_to_a_restarted_caller_gets_peer_gone_and_wakes_nobody() {
    // slow takes svc's call, sleeps; meanwhile trigger exits, the supervisor
    // restarts svc, and the new svc calls again. slow's late reply to the old
    // call must get PeerGone, and the new call its own answer.
    let slow = probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (drop (call $sleep (i64.const 1000000)))
            (call $report (call $reply (call $token) (i32.const 100) (local.get $r)))
            (br $serve))",
    );
    let svc = probe(
        "x",
        "(call $report (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
         (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sup", supervisor(CONTROL_RESTART))
        .provides("events")
        .supervisor()
        .service("slow", slow)
        .provides("slow")
        .service("svc", svc)
        .provides("svc")
        .uses("slow")
        .service("trigger", probe("", ""))
        .run();
    assert_eq!(system.lines_of("slow"), [code(Error::PeerGone), "0".into()]);
    assert_eq!(system.lines_of("svc"), ["1"]);
    assert_eq!(system.kernel.restarts("svc"), Some(1));
    assert_eq!(summary.faulted, 0, "{}", system.console());
}

#[test]
fn the_supervisor_calling_an_ended_service_is_answered_not_stranded() {
    // Before: the supervisor's call sat in the ended service's queue, so it
    // never read the report of the end and nothing was ever restarted.
    let supervisor = probe(
        "",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
         (call $report (call $receive (i32.const 1) (i32.const 1000) (i32.const 1024) (i64.const 0) (i32.const 200)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sup", supervisor)
        .provides("sup")
        .uses("svc")
        .supervisor()
        .service("svc", ENDS_AT_ONCE)
        .provides("svc")
        .run();
    assert_eq!(summary.blocked, 0, "{}", system.console());
    let lines = system.lines_of("sup");
    assert_eq!(lines.first(), Some(&code(Error::PeerGone)));
    // ... and then reads the report (a message of some length).
    assert!(
        lines
            .get(1)
            .is_some_and(|len| len.parse::<i32>().unwrap() > 0),
        "{lines:?}"
    );
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn a_chain_from_the_supervisor_to_an_ended_service_unwinds() {
    // The supervisor calls `mid`, which calls the ended `svc`: `mid`'s call
    // is answered, `mid` replies with the result it got, the supervisor goes on.
    let supervisor = probe(
        "",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
         (call $report (i32.load (i32.const 300)))",
    );
    let mid = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (i32.store (i32.const 300) (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 400) (i32.const 8)))
         (drop (call $reply (call $token) (i32.const 300) (i32.const 4)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sup", supervisor)
        .provides("sup")
        .uses("mid")
        .supervisor()
        .service("mid", mid)
        .provides("mid")
        .uses("svc")
        .service("svc", ENDS_AT_ONCE)
        .provides("svc")
        .run();
    assert_eq!(summary.blocked, 0, "{}", system.console());
    // `mid` answered (4 bytes) with the PeerGone it got.
    assert_eq!(system.lines_of("sup"), ["4".into(), code(Error::PeerGone)]);
    assert_eq!(system.state_of("mid"), Some(ServiceState::Exited));
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn services_left_waiting_for_an_ended_supervisor_are_stopped() {
    // svc ends; the supervisor ends too before deciding anything. Before:
    // svc's endpoints stayed open, and its callers waited for ever.
    let supervisor = probe("", "(drop (call $sleep (i64.const 1000000)))");
    let client = probe(
        "",
        "(drop (call $sleep (i64.const 3000000)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sup", supervisor)
        .provides("sup")
        .supervisor()
        .service("svc", ENDS_AT_ONCE)
        .provides("svc")
        .service("client", client)
        .uses("svc")
        .run();
    assert_eq!(summary.blocked, 0, "{}", system.console());
    assert_eq!(system.lines_of("client"), [code(Error::PeerGone)]);
    assert_eq!(system.state_of("client"), Some(ServiceState::Exited));
}

#[test]
fn calls_of_stopped_callers_leave_the_call_table() {
    // The server takes a call and never answers; its caller is stopped by
    // the supervisor. Before: the call stayed in the table for as long as
    // the server lived (the table holds 4,095).
    let caller = probe(
        "",
        "(drop (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))",
    );
    let stopper = probe(
        "caller",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $control (i32.const 1) (i32.const 0) (i32.const 6)))",
    );
    let system = |supervisor: &str| {
        TestSystem::new()
            .service("sup", supervisor)
            .provides("sup")
            .supervisor()
            .service("server", holder())
            .provides("svc")
            .service("caller", &caller)
            .uses("svc")
            .run()
            .0
    };
    let stopped = system(&stopper);
    assert_eq!(stopped.lines_of("sup"), ["0"]);
    assert_eq!(stopped.state_of("caller"), Some(ServiceState::Stopped));
    assert_eq!(stopped.kernel.pending_calls(), 0);
    // Without the stop, the caller waits and its call stays in the table.
    let waiting = system(&probe("", ""));
    assert!(matches!(
        waiting.state_of("caller"),
        Some(ServiceState::Blocked(Wait::Reply { .. }))
    ));
    assert_eq!(waiting.kernel.pending_calls(), 1);
}
