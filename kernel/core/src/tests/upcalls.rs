//! Handlers: a call switched to a server waiting in `receive` is handed to
//! its `atoll_handle` export instead of resuming the `receive`, and the
//! server is back in that `receive` when the handler returns.

use super::probes::{code, probe};
use super::system::{LIMITS, TestSystem};
use crate::{ServiceState, Wait};
use atoll_abi::Error;
use atoll_abi::bundle::ServiceLimits;

/// `module` (a [`probe`]) with the handler export `body`, which sees the
/// probe's functions and returns an i64 (locals `$t` i32 and `$u` i64 free).
fn with_handler(module: &str, body: &str) -> String {
    let end = module.rfind(')').unwrap_or(module.len());
    let handler = format!(
        r#"(func (export "atoll_handle") (param $r i32) (param $cap i32) (result i64) (local $t i32) (local $u i64)
            {body})"#
    );
    format!("{}{handler}{}", &module[..end], &module[end..])
}

/// A loop that receives into 100 (64 bytes, info at 200), logs `loop` and the
/// length for each message, and answers calls with the request.
fn looping_server() -> String {
    probe(
        "loop",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (drop (call $log (i32.const 0) (i32.const 4)))
            (call $report (local.get $r))
            (if (i32.and (i32.ge_s (local.get $r) (i32.const 0)) (i32.ne (call $token) (i32.const 0)))
                (then (drop (call $reply (call $token) (i32.const 100) (local.get $r)))))
            (br $serve))",
    )
}

/// Handler code that counts `$t` up to `turns` (about 3 fuel a turn).
fn burn(turns: u32) -> String {
    format!(
        "(loop $burn
            (local.set $t (i32.add (local.get $t) (i32.const 1)))
            (br_if $burn (i32.lt_u (local.get $t) (i32.const {turns}))))"
    )
}

/// The reply `(ptr << 32) | len` of the request received into 100, `$r` long.
const ECHO: &str = "(i64.or (i64.const 0x6400000000) (i64.extend_i32_u (local.get $r)))";

/// A client that sleeps 1 ms (the server waits in `receive` by then), then
/// makes `calls` (each `(ptr, len)` of its data), reporting each result and
/// logging each reply (written at 300).
fn caller(data: &str, calls: &[(i32, i32)]) -> String {
    let mut body = String::from("(drop (call $sleep (i64.const 1000000)))");
    for (ptr, len) in calls {
        body.push_str(&format!(
            "(local.set $r (call $call (i32.const 1) (i32.const {ptr}) (i32.const {len}) (i32.const 300) (i32.const 8)))
             (call $report (local.get $r))
             (if (i32.gt_s (local.get $r) (i32.const 0)) (then (drop (call $log (i32.const 300) (local.get $r)))))"
        ));
    }
    probe(data, &body)
}

/// The server, then the client; the client's slice is large enough for
/// several direct switches in one turn (each counts the server's fuel and
/// the kernel's share against it).
fn system(server: String, client: String) -> TestSystem {
    TestSystem::new()
        .service("server", server)
        .provides("svc")
        .service("client", client)
        .uses("svc")
        .limits(ServiceLimits {
            fuel_slice: 1_000_000,
            ..LIMITS
        })
}

#[test]
fn a_handler_answers_the_calls_switched_to_it_and_its_loop_never_sees_them() {
    // Each call reaches the handler, which answers it with its request but
    // the first byte (the loop would echo it whole); the loop's `receive`
    // never returns for them, yet the server waits in it at the end. A send
    // is not switched: the loop takes it.
    let server = with_handler(
        &looping_server(),
        "(i64.or (i64.const 0x6500000000) (i64.extend_i32_u (i32.sub (local.get $r) (i32.const 1))))",
    );
    let client = probe(
        "hiyou",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 300) (i32.const 8)))
         (drop (call $log (i32.const 300) (i32.const 1)))
         (call $report (call $call (i32.const 1) (i32.const 2) (i32.const 3) (i32.const 300) (i32.const 8)))
         (drop (call $log (i32.const 300) (i32.const 2)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 1)))",
    );
    let (system, summary) = system(server, client).run();
    assert_eq!(system.lines_of("client"), ["1", "i", "2", "ou", "0"]);
    assert_eq!(system.lines_of("server"), ["loop", "1"]);
    assert_eq!(summary.exited, 1);
    assert!(matches!(
        system.state_of("server"),
        Some(ServiceState::Blocked(Wait::Receive { .. }))
    ));
}

#[test]
fn a_handler_preempted_or_waiting_answers_when_it_returns() {
    // The handler burns more than its slice (a loop of 20,000 turns with a
    // slice of 1,000 fuel), then sleeps, then answers: the caller waits
    // through both and gets its reply; the next call is handled the same.
    let server = with_handler(
        &looping_server(),
        &format!(
            "{} (drop (call $sleep (i64.const 1000))) {ECHO}",
            burn(20_000)
        ),
    );
    let client = caller("abc", &[(0, 3), (1, 2)]);
    let (system, _) = system(server, client).run();
    assert_eq!(system.lines_of("client"), ["3", "abc", "2", "bc"]);
    assert!(system.lines_of("server").is_empty());
}

#[test]
fn a_declined_call_goes_to_the_loop_and_the_handler_is_not_asked_again() {
    // The handler declines (and counts its calls at 400): the loop answers
    // the first call, and the second too, without asking the handler.
    let server = with_handler(
        &looping_server(),
        "(i32.store (i32.const 400) (i32.add (i32.load (i32.const 400)) (i32.const 1)))
         (call $report (i32.load (i32.const 400)))
         (i64.const -1)",
    );
    let client = caller("one", &[(0, 3), (1, 2)]);
    let (system, _) = system(server, client).run();
    assert_eq!(system.lines_of("client"), ["3", "one", "2", "ne"]);
    assert_eq!(system.lines_of("server"), ["1", "loop", "3", "loop", "2"]);
}

#[test]
fn a_deferred_call_stays_open_and_is_answered_with_reply() {
    // The handler defers the first call, keeping its token at 404; handling
    // the second (another client's), it answers the first with `reply`,
    // then the second itself.
    let server = with_handler(
        &looping_server(),
        &format!(
            "(local.set $t (i32.load (i32.const 400)))
             (i32.store (i32.const 400) (i32.add (local.get $t) (i32.const 1)))
             (if (i32.eqz (local.get $t)) (then
                (i32.store (i32.const 404) (call $token))
                (return (i64.const -2))))
             (call $report (call $reply (i32.load (i32.const 404)) (i32.const 0) (i32.const 4)))
             {ECHO}"
        ),
    );
    let first = caller("one", &[(0, 3)]);
    let second = probe(
        "six",
        "(drop (call $sleep (i64.const 3000000)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 3) (i32.const 300) (i32.const 8)))
         (drop (call $log (i32.const 300) (i32.const 3)))",
    );
    let (system, _) = system(server, first)
        .service("second", second)
        .uses("svc")
        .run();
    // The first caller's answer is the server's "loop" (4 bytes at 0).
    assert_eq!(system.lines_of("client"), ["4", "loop"]);
    assert_eq!(system.lines_of("second"), ["3", "six"]);
    // The handler's `reply` status; the loop took nothing.
    assert_eq!(system.lines_of("server"), ["0"]);
}

#[test]
fn a_reply_too_long_for_its_caller_answers_buffer_too_small_and_the_server_goes_on() {
    // 9 bytes for a buffer of 8: the caller gets BufferTooSmall (the handler
    // cannot try again), and the next call is answered.
    let server = with_handler(
        &looping_server(),
        "(if (i32.eq (local.get $r) (i32.const 9)) (then (return (i64.const 9))))
         (i64.or (i64.const 0x6400000000) (i64.extend_i32_u (local.get $r)))",
    );
    let client = caller("123456789", &[(0, 9), (0, 2)]);
    let (system, _) = system(server, client).run();
    assert_eq!(
        system.lines_of("client"),
        [code(Error::BufferTooSmall), "2".into(), "12".into()]
    );
}

#[test]
fn a_handler_that_returns_no_reply_in_its_memory_or_traps_faults_its_server() {
    for body in [
        // Past its one page.
        "(i64.const 0x1000000000010)",
        // A negative value that means nothing.
        "(i64.const -3)",
        // A message longer than the longest.
        "(i64.const 0x1001)",
        "(unreachable)",
    ] {
        let server = with_handler(&looping_server(), body);
        let client = caller("x", &[(0, 1)]);
        let (system, summary) = system(server, client).run();
        assert_eq!(summary.faulted, 1, "{body}");
        assert!(
            matches!(system.state_of("server"), Some(ServiceState::Faulted(_))),
            "{body}"
        );
        assert_eq!(system.lines_of("client"), [code(Error::PeerGone)], "{body}");
    }
}

#[test]
fn a_receive_with_a_timeout_is_not_stood_in_for() {
    // The handler would answer "h"; the loop's receive has a deadline, so
    // the loop takes the call and echoes it.
    let server = with_handler(
        &probe(
            "h",
            "(local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const 1000000000) (i32.const 200)))
             (drop (call $reply (call $token) (i32.const 100) (local.get $r)))",
        ),
        "(i64.const 1)",
    );
    let client = caller("ab", &[(0, 2)]);
    let (system, _) = system(server, client).run();
    assert_eq!(system.lines_of("client"), ["2", "ab"]);
}

#[test]
fn handler_fuel_counts_as_the_servers() {
    // A handler that burns 20,000 turns of a loop uses that fuel, as the
    // loop would have.
    let fuel = |turns: u32| {
        let server = with_handler(&looping_server(), &format!("{} {ECHO}", burn(turns)));
        let (system, _) = system(server, caller("abc", &[(0, 3)])).run();
        assert_eq!(system.lines_of("client"), ["3", "abc"]);
        system.kernel.fuel_used("server").unwrap_or(0)
    };
    let (idle, busy) = (fuel(1), fuel(20_000));
    assert!(busy > idle + 40_000, "{idle} {busy}");
}

#[test]
fn sends_queued_while_a_handler_is_preempted_go_to_the_loop() {
    // The handler burns past its slice; two sends queued meanwhile are
    // taken by the loop once it has answered, and nothing is left open.
    let server = with_handler(&looping_server(), &format!("{} {ECHO}", burn(20_000)));
    let sender = probe(
        "s1s2",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 2)))
         (call $report (call $send (i32.const 1) (i32.const 2) (i32.const 2)))",
    );
    let (system, summary) = TestSystem::new()
        .service("server", server)
        .provides("svc")
        .service("client", caller("abc", &[(0, 3)]))
        .uses("svc")
        .limits(ServiceLimits {
            fuel_slice: 1_000_000,
            ..LIMITS
        })
        .service("sender", sender)
        .uses("svc")
        .run();
    assert_eq!(summary.faulted, 0);
    assert_eq!(system.lines_of("client"), ["3", "abc"]);
    assert_eq!(system.lines_of("sender"), ["0", "0"]);
    assert_eq!(system.lines_of("server"), ["loop", "2", "loop", "2"]);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn a_call_too_big_for_the_receive_is_not_handed_to_the_handler() {
    // The loop offers 4 bytes; on BufferTooSmall it receives again with 64
    // and echoes. The handler would answer "h": it is not asked, as the
    // `receive` did not take the 8-byte call.
    let too_small = Error::BufferTooSmall.code();
    let server = with_handler(
        &probe(
            "h",
            &format!(
                "(local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 4) (i64.const -1) (i32.const 200)))
                 (call $report (local.get $r))
                 (if (i32.eq (local.get $r) (i32.const {too_small})) (then
                    (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const 0) (i32.const 200)))))
                 (drop (call $reply (call $token) (i32.const 100) (local.get $r)))"
            ),
        ),
        "(i64.const 1)",
    );
    let (system, _) = system(server, caller("12345678", &[(0, 8)])).run();
    assert_eq!(system.lines_of("server"), [code(Error::BufferTooSmall)]);
    assert_eq!(system.lines_of("client"), ["8", "12345678"]);
}

#[test]
fn the_first_upcall_claims_the_handlers_stack_and_without_room_the_loop_answers() {
    // The handler answers its request but the first byte (the loop echoes
    // it whole). On the smallest heap the system runs on at all (found in
    // steps of 16 KiB above the reserve and every service's interpreter
    // stack), there is no room for a second stack: the loop answers. With
    // room for one more, the handler does.
    let handler = "(i64.or (i64.const 0x6500000000) (i64.extend_i32_u (i32.sub (local.get $r) (i32.const 1))))";
    let answered = |slack: usize| {
        let heap =
            crate::heap::KERNEL_HEAP_RESERVE + 2 * crate::heap::INTERPRETER_STACK_BYTES + slack;
        let server = with_handler(&looping_server(), handler);
        let (console, _) = system(server, caller("xyz", &[(0, 3)])).run_within_heap(heap);
        super::system::lines_of(&console, "client")
    };
    let (smallest, lines) = (0..256)
        .map(|step| step * (16 << 10))
        .map(|slack| (slack, answered(slack)))
        .find(|(_, lines)| !lines.is_empty())
        .unwrap_or_default();
    assert_eq!(lines, ["3", "xyz"], "on {smallest} bytes of slack");
    let roomy = smallest + crate::heap::INTERPRETER_STACK_BYTES + (64 << 10);
    assert_eq!(answered(roomy), ["2", "yz"]);
}

// A service outside any kernel: its first slice parks it in `receive`;
// an upcall it declines gives back the heap room claimed for it.
#[test]
fn a_declined_upcall_gives_back_its_stack_claim() {
    use crate::guest::GuestSlice;
    use crate::service::{SliceOutcome, Upcall};
    use alloc::sync::Arc;
    let server = with_handler(&looping_server(), "(i64.const -1)");
    let bytes = wat::parse_str(&server).unwrap();
    let platform: Arc<dyn crate::Platform> = Arc::new(super::platform::TestPlatform::new());
    let heap = crate::heap::Heap::new(Arc::clone(&platform));
    let program = crate::loader::Program::compile_with_shim(
        &bytes,
        &LIMITS,
        &heap,
        crate::loader::Translation::Eager,
        None,
    )
    .unwrap();
    let image = crate::service::Image {
        name: "server".into(),
        program: Arc::new(program),
        limits: LIMITS,
        endpoint_names: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        preopens: Vec::new(),
        listeners: Vec::new(),
        grants: Default::default(),
    };
    let mut service = crate::service::Service::start(&image, platform, &heap).unwrap();
    let outcome = service.run_slice(0, true);
    assert!(matches!(outcome, SliceOutcome::Syscall(_)), "{outcome:?}");
    let before = heap.kept_free();
    assert!(service.begin_upcall(Upcall {
        token: 1,
        endpoint: 0,
        buffer: GuestSlice::new(100, 64),
        info: GuestSlice::new(200, 8),
        received: 0,
        reply_cap: 8,
    }));
    assert!(heap.kept_free() > before);
    // Declined: the loop's `receive` returns the message, and the claim goes.
    let outcome = service.run_slice(0, true);
    assert!(matches!(outcome, SliceOutcome::Syscall(_)), "{outcome:?}");
    assert_eq!(
        heap.kept_free(),
        before,
        "a declined handler still holds its stack claim"
    );
}

#[test]
fn a_handler_is_told_the_callers_reply_capacity() {
    // The handler answers with as many bytes of the request as the
    // caller's reply buffer holds (8 of 10).
    let server = with_handler(
        &looping_server(),
        "(i64.or (i64.const 0x6400000000) (i64.extend_i32_u (local.get $cap)))",
    );
    let (system, _) = system(server, caller("abcdefghij", &[(0, 10)])).run();
    assert_eq!(system.lines_of("client"), ["8", "abcdefgh"]);
}
