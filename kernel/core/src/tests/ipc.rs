//! Kernel calls between services: capabilities, queues, calls and replies,
//! timeouts, the message budget, and `log`.

use super::probes::{code, counting_client, echo_server, probe};
use super::system::{LIMITS, TestSystem};
use crate::{ServiceState, Wait};
use atoll_abi::Error;
use atoll_abi::bundle::ServiceLimits;

/// A service that calls `log(ptr, len)` and then logs `got -N` for the result
/// code -N (single digit).
fn log_probe(ptr: i32, len: i32) -> String {
    format!(
        r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "got -0")
            (data (i32.const 32) "\ff\fe")
            (func (export "_start")
                (i32.store8 (i32.const 5)
                    (i32.sub (i32.const 48) (call $log (i32.const {ptr}) (i32.const {len}))))
                (drop (call $log (i32.const 0) (i32.const 6)))))"#
    )
}

#[test]
fn log_rejects_bad_buffers_with_error_codes() {
    let cases = [
        (65_530, 10, Error::OutOfBounds),
        (-4, 8, Error::OutOfBounds),
        (0, -1, Error::TooLarge),
        (0, atoll_abi::MAX_LOG_LEN as i32 + 1, Error::TooLarge),
        (32, 2, Error::InvalidUtf8),
    ];
    for (ptr, len, error) in cases {
        let (system, summary) = TestSystem::new()
            .service("probe", log_probe(ptr, len))
            .run();
        assert_eq!(
            system.lines_of("probe"),
            [format!("got {}", error.code())],
            "{ptr},{len}"
        );
        assert_eq!(summary.exited, 1);
    }
}

#[test]
fn control_characters_in_logs_are_shown_not_obeyed() {
    // ESC [2K (erase line), CR, BS, BEL, NUL and a C1 CSI: before, passed to
    // the terminal as they were, so a service could erase its own prefix.
    let (system, _) = TestSystem::new()
        .service(
            "sly",
            r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "a\1b[2Kb\0dc\08d\07\00e\c2\9bf\tg\n")
            (func (export "_start") (drop (call $log (i32.const 0) (i32.const 19)))))"#,
        )
        .run();
    assert_eq!(
        system.lines_of("sly"),
        ["a\\x1b[2Kb\\x0dc\\x08d\\x07\\x00e\\u{9b}f\tg"],
        "{:?}",
        system.console()
    );
}

#[test]
fn capabilities_are_checked_and_bad_arguments_get_error_codes() {
    let client = probe(
        "echosecret",
        "(call $report (call $lookup (i32.const 0) (i32.const 4)))     ;; echo: handle 1
         (call $report (call $lookup (i32.const 4) (i32.const 6)))     ;; secret: not granted
         (call $report (call $lookup (i32.const 65535) (i32.const 9))) ;; out of bounds
         (call $report (call $send (i32.const 99) (i32.const 0) (i32.const 4)))   ;; forged
         (call $report (call $send (i32.const 0) (i32.const 0) (i32.const 4)))    ;; forged
         (call $report (call $send (i32.const -1) (i32.const 0) (i32.const 4)))   ;; forged
         (call $report (call $receive (i32.const 1) (i32.const 100) (i32.const 8) (i64.const 0) (i32.const 200))) ;; not ours
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 5000)))   ;; too large
         (call $report (call $send (i32.const 1) (i32.const 65530) (i32.const 100))) ;; out of bounds
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 65530) (i32.const 100))) ;; reply buffer out of bounds
         (call $report (call $reply (i32.const 12345) (i32.const 0) (i32.const 1))) ;; forged token
         (call $report (call $receive (i32.const 1) (i32.const 65535) (i32.const 8) (i64.const 0) (i32.const 200))) ;; checked before the handle
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 16)))    ;; works
         (drop (call $log (i32.const 300) (i32.const 4)))",
    );
    let (system, summary) = TestSystem::new()
        .service("server", echo_server())
        .provides("echo")
        .service("vault", probe("", ""))
        .provides("secret")
        .service("client", client)
        .uses("echo")
        .run();
    let mut expected = vec!["1".to_string()];
    expected.extend(
        [
            Error::NotFound,
            Error::OutOfBounds,
            Error::BadHandle,
            Error::BadHandle,
            Error::BadHandle,
            Error::NotPermitted,
            Error::TooLarge,
            Error::OutOfBounds,
            Error::OutOfBounds,
            Error::BadHandle,
            Error::OutOfBounds,
        ]
        .map(code),
    );
    expected.push("4".into());
    expected.push("echo".into());
    let console = system.console();
    assert_eq!(system.lines_of("client"), expected, "{console}");
    // The server waits forever; everyone else exited.
    assert!(matches!(
        system.state_of("server"),
        Some(ServiceState::Blocked(Wait::Receive { .. }))
    ));
    assert_eq!(summary.blocked, 1, "{console}");
    assert_eq!(summary.exited, 2, "{console}");
}

#[test]
fn queues_are_fifo_bounded_and_refuse_when_full() {
    // Queue depth is 4 (LIMITS). The server sleeps until the client has sent
    // six messages, then drains its queue without waiting.
    let client = probe(
        "m?",
        "(loop $next
            (i32.store8 (i32.const 1) (i32.add (i32.const 48) (local.get $i)))
            (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 2)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $next (i32.lt_u (local.get $i) (i32.const 6))))",
    );
    let server = probe(
        "",
        "(drop (call $sleep (i64.const 1000000)))
         (loop $drain
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const 0) (i32.const 200)))
            (if (i32.ge_s (local.get $r) (i32.const 0))
                (then (drop (call $log (i32.const 100) (local.get $r))) (br $drain))
                (else (call $report (local.get $r)))))
         ;; a message from send carries token 0
         (call $report (call $token))",
    );
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("inbox")
        .service("client", client)
        .uses("inbox")
        .run();
    let full = code(Error::QueueFull);
    assert_eq!(
        system.lines_of("client"),
        ["0", "0", "0", "0", &full, &full]
    );
    let would_block = code(Error::WouldBlock);
    assert_eq!(
        system.lines_of("server"),
        ["m0", "m1", "m2", "m3", &would_block, "0"]
    );
}

#[test]
fn small_and_large_messages_in_turn_arrive_whole_through_reused_buffers() {
    // The kernel reuses the buffers of taken messages (spare buffers): a
    // large message after small ones needs a bigger buffer, a small one
    // after a large one must not carry the large one's bytes. Each message
    // is reported as its length, first and last byte; with the server
    // waiting (messages delivered into it) and asleep (messages queued).
    let client = probe(
        "abcd",
        "(i32.store8 (i32.const 4096) (i32.const 88))
         (i32.store8 (i32.const 7095) (i32.const 89))
         (loop $twice
            (drop (call $send (i32.const 1) (i32.const 0) (i32.const 2)))
            (drop (call $send (i32.const 1) (i32.const 4096) (i32.const 3000)))
            (drop (call $send (i32.const 1) (i32.const 2) (i32.const 2)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $twice (i32.lt_u (local.get $i) (i32.const 2))))",
    );
    let expected = [
        "2", "97", "98", "3000", "88", "89", "2", "99", "100", //
        "2", "97", "98", "3000", "88", "89", "2", "99", "100",
    ];
    for first in ["", "(drop (call $sleep (i64.const 1000000)))"] {
        let server = probe(
            "",
            &format!(
                "{first}
                 (loop $each
                    (local.set $r (call $receive (i32.const 1) (i32.const 10000) (i32.const 4096) (i64.const 100000000) (i32.const 200)))
                    (if (i32.ge_s (local.get $r) (i32.const 0)) (then
                        (call $report (local.get $r))
                        (call $report (i32.load8_u (i32.const 10000)))
                        (call $report (i32.load8_u (i32.add (i32.const 9999) (local.get $r))))
                        (br $each))))"
            ),
        );
        let (system, _) = TestSystem::new()
            .service("server", server)
            .provides("inbox")
            .limits(ServiceLimits {
                queue_depth: 8,
                ..LIMITS
            })
            .service("client", client.clone())
            .uses("inbox")
            .run();
        assert_eq!(system.lines_of("server"), expected, "{first:?}");
    }
}

#[test]
fn calls_park_the_caller_until_the_reply() {
    // Three clients call one echo server; each gets its own reply.
    let client = |text: &str| {
        probe(
            text,
            "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 5) (i32.const 300) (i32.const 64)))
             (drop (call $log (i32.const 300) (i32.const 5)))",
        )
    };
    let (system, summary) = TestSystem::new()
        .service("a", client("alpha"))
        .uses("echo")
        .service("b", client("bravo"))
        .uses("echo")
        .service("server", echo_server())
        .provides("echo")
        .service("c", client("charl"))
        .uses("echo")
        .run();
    assert_eq!(system.lines_of("a"), ["5", "alpha"]);
    assert_eq!(system.lines_of("b"), ["5", "bravo"]);
    assert_eq!(system.lines_of("c"), ["5", "charl"]);
    assert_eq!(summary.exited, 3);
    assert_eq!(summary.blocked, 1);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn small_buffers_lose_nothing() {
    // The server first offers a 2-byte buffer (the message stays queued), then a
    // big one; it first replies too long for the caller's 3-byte reply buffer
    // (the token stays valid), then short.
    let server = probe(
        "okay",
        "(call $report (call $receive (i32.const 1) (i32.const 100) (i32.const 2) (i64.const -1) (i32.const 200)))
         (call $report (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (call $reply (call $token) (i32.const 0) (i32.const 4)))
         (call $report (call $reply (call $token) (i32.const 0) (i32.const 2)))
         (call $report (call $reply (call $token) (i32.const 0) (i32.const 2)))",
    );
    let client = probe(
        "ping",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 3)))
         (drop (call $log (i32.const 300) (i32.const 2)))",
    );
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", client)
        .uses("echo")
        .run();
    let too_small = code(Error::BufferTooSmall);
    assert_eq!(
        system.lines_of("server"),
        [
            too_small.as_str(),
            "4",
            too_small.as_str(),
            "0",
            &code(Error::BadHandle)
        ]
    );
    assert_eq!(system.lines_of("client"), ["2", "ok"]);
}

#[test]
fn callers_of_a_service_that_stops_get_an_error() {
    // The server receives one call and exits without replying. The caller it
    // received from, the caller still queued, and later callers all get PeerGone.
    let server = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))",
    );
    let client = probe(
        "ping",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 64)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 64)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 4)))",
    );
    let (system, summary) = TestSystem::new()
        .service("one", &client)
        .uses("svc")
        .service("two", &client)
        .uses("svc")
        .service("server", server)
        .provides("svc")
        .run();
    let gone = code(Error::PeerGone);
    for name in ["one", "two"] {
        assert_eq!(
            system.lines_of(name),
            [gone.as_str(), &gone, &gone],
            "{name}"
        );
    }
    assert_eq!(summary.exited, 3);
    assert_eq!(summary.blocked, 0);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn endpoints_of_a_service_that_failed_to_load_are_gone() {
    let client = probe(
        "hi",
        "(call $report (call $send (i32.const 1) (i32.const 0) (i32.const 2)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 300) (i32.const 8)))",
    );
    let (system, summary) = TestSystem::new()
        .service("client", client)
        .uses("svc")
        .service("broken", "(module)")
        .provides("svc")
        .run();
    let gone = code(Error::PeerGone);
    assert_eq!(system.lines_of("client"), [gone.as_str(), &gone]);
    assert_eq!(summary.failed_to_load, 1);
}

#[test]
fn receive_times_out_and_sleep_waits() {
    let service = probe(
        "",
        "(call $report (call $receive (i32.const 1) (i32.const 100) (i32.const 8) (i64.const 0) (i32.const 200)))
         (local.set $t (call $time))
         (call $report (call $receive (i32.const 1) (i32.const 100) (i32.const 8) (i64.const 5000000) (i32.const 200)))
         (call $report (i64.ge_u (i64.sub (call $time) (local.get $t)) (i64.const 5000000)))
         (local.set $t (call $time))
         (call $report (call $sleep (i64.const 7000000)))
         (call $report (i64.ge_u (i64.sub (call $time) (local.get $t)) (i64.const 7000000)))
         (call $report (call $sleep (i64.const -5)))",
    );
    let (system, summary) = TestSystem::new()
        .service("sleeper", service)
        .provides("quiet")
        .run();
    let would_block = code(Error::WouldBlock);
    let timed_out = code(Error::TimedOut);
    assert_eq!(
        system.lines_of("sleeper"),
        [would_block.as_str(), timed_out.as_str(), "1", "0", "1", "0"]
    );
    assert_eq!(summary.exited, 1);
}

#[test]
fn calling_your_own_endpoint_is_refused() {
    let service = probe(
        "x",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100) (i32.const 8)))",
    );
    let (system, summary) = TestSystem::new()
        .service("narcissus", service)
        .provides("me")
        .run();
    assert_eq!(system.lines_of("narcissus"), [code(Error::NotPermitted)]);
    assert_eq!(summary.exited, 1);
}

#[test]
fn all_queues_together_hold_a_bounded_number_of_bytes() {
    // Two endpoints of depth 4 could hold 8 messages of 4 KiB; a 10 KB budget
    // admits two, then refuses with QueueFull, whichever endpoint is used.
    let client = probe(
        "",
        "(call $report (call $send (i32.const 1) (i32.const 0) (i32.const 4096)))
         (call $report (call $send (i32.const 2) (i32.const 0) (i32.const 4096)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 4096)))
         (call $report (call $send (i32.const 2) (i32.const 0) (i32.const 10)))",
    );
    let sleeper = probe("", "(drop (call $sleep (i64.const 10000000000)))");
    let (system, _) = TestSystem::new()
        .service("a", &sleeper)
        .provides("a")
        .service("b", &sleeper)
        .provides("b")
        .service("client", client)
        .uses("a")
        .uses("b")
        .message_budget(10_000)
        .run();
    let full = code(Error::QueueFull);
    assert_eq!(system.lines_of("client"), ["0", "0", &full, "0"]);
}

#[test]
fn reply_receive_answers_each_call_and_takes_the_next_message_in_one_kernel_call() {
    // The server takes the first message with `receive`, then answers each
    // with `reply_receive` (its status at 240), which also takes the next:
    // four calls from two clients, each answered with its own request, and
    // a send among them (token 0: nothing to answer, status 0).
    let server = probe(
        "",
        "(local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (loop $serve
            (i32.store (i32.const 240) (i32.const -1))
            (local.set $r (call $reply_receive (call $token) (i32.const 100) (local.get $r) (i32.const 240)
                (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (call $report (i32.load (i32.const 240)))
            (br $serve))",
    );
    let client = |first: &str, second: &str| {
        probe(
            &format!("{first}{second}"),
            "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
             (drop (call $log (i32.const 300) (i32.const 1)))
             (call $report (call $send (i32.const 1) (i32.const 1) (i32.const 1)))
             (call $report (call $call (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 300) (i32.const 8)))
             (drop (call $log (i32.const 300) (i32.const 1)))",
        )
    };
    let (system, summary) = TestSystem::new()
        .service("server", server)
        .provides("svc")
        .service("a", client("a", "b"))
        .uses("svc")
        .service("c", client("c", "d"))
        .uses("svc")
        .run();
    assert_eq!(system.lines_of("a"), ["1", "a", "0", "1", "b"]);
    assert_eq!(system.lines_of("c"), ["1", "c", "0", "1", "d"]);
    // Six messages: five answered with status 0 as the next was taken (the
    // last waits for ever in the server's last `reply_receive`).
    assert_eq!(system.lines_of("server"), ["0"; 5]);
    assert_eq!(summary.exited, 2);
}

#[test]
fn reply_receive_reports_the_reply_apart_and_does_nothing_on_a_bad_status_address() {
    // A status outside memory: OutOfBounds, and neither half happens (the
    // caller still waits). A reply longer than the caller's buffer: status
    // BufferTooSmall, the token stays good, and the receive does not wait
    // although asked to wait for ever (WouldBlock: the only caller waits
    // for this server's answer, so waiting would never end). Then a plain
    // reply answers the call.
    let server = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (call $reply_receive (call $token) (i32.const 100) (i32.const 2) (i32.const 65534)
             (i32.const 1) (i32.const 100) (i32.const 64) (i64.const 0) (i32.const 200)))
         (call $report (call $reply_receive (call $token) (i32.const 100) (i32.const 9) (i32.const 240)
             (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (i32.load (i32.const 240)))
         (call $report (call $reply (call $token) (i32.const 100) (i32.const 2)))",
    );
    let client = probe(
        "hi",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 300) (i32.const 8)))",
    );
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("svc")
        .service("client", client)
        .uses("svc")
        .run();
    assert_eq!(
        system.lines_of("server"),
        [
            code(Error::OutOfBounds),
            code(Error::WouldBlock),
            code(Error::BufferTooSmall),
            "0".into()
        ]
    );
    assert_eq!(system.lines_of("client"), ["2"]);
}

#[test]
fn a_message_handed_to_a_waiting_receiver_holds_nothing_of_the_budget() {
    // The server waits in `receive` when the first 4 KiB send comes: it is
    // copied straight into the server's buffer, held by no queue, so a
    // 100-byte budget does not refuse it. The second finds the server
    // asleep, must be queued, and is refused.
    let server = probe(
        "",
        "(call $report (call $receive (i32.const 1) (i32.const 0) (i32.const 4096) (i64.const -1) (i32.const 8192)))
         (drop (call $sleep (i64.const 10000000000)))",
    );
    let client = probe(
        "",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 4096)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 4096)))",
    );
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("svc")
        .service("client", client)
        .uses("svc")
        .message_budget(100)
        .run();
    assert_eq!(system.lines_of("server"), ["4096"]);
    assert_eq!(system.lines_of("client"), ["0", &code(Error::QueueFull)]);
}

#[test]
fn one_large_message_cannot_wedge_a_server_with_a_small_buffer() {
    // The server receives into 16 bytes. A 100-byte send and a 100-byte call
    // reach it first. Before: the send stayed at the head of the queue for
    // ever and nobody else was served.
    let server = probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 16) (i64.const -1) (i32.const 200)))
            (call $report (local.get $r))
            (if (i32.ge_s (local.get $r) (i32.const 0)) (then
                (drop (call $reply (call $token) (i32.const 100) (i32.const 1)))))
            (br $serve))",
    );
    let big = probe(
        "",
        "(call $report (call $send (i32.const 1) (i32.const 0) (i32.const 100)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 100) (i32.const 300) (i32.const 8)))",
    );
    let small = probe(
        "",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 8)))",
    );
    let (system, summary) = TestSystem::new()
        .service("server", server)
        .provides("svc")
        .service("big", big)
        .uses("svc")
        .service("small", small)
        .uses("svc")
        .run();
    let too_small = code(Error::BufferTooSmall);
    // Each large message is refused once, then handed back.
    assert_eq!(
        system.lines_of("server"),
        [too_small.as_str(), &too_small, "4"]
    );
    assert_eq!(system.lines_of("big"), ["0", &code(Error::TooLarge)]);
    assert_eq!(system.lines_of("small"), ["1"]);
    // The dropped send is seen only in the kernel's report.
    let console = system.console();
    assert!(
        console.contains(
            "atoll: message dropped: 100 bytes from big are more than server receives (16 bytes)"
        ),
        "{console}"
    );
    assert_eq!(summary.faulted, 0, "{console}");
}

#[test]
fn info_reports_service_states_as_their_abi_numbers() {
    // `a` asks about itself, about `b` (parked in receive) and past the last
    // service; the record starts with the one-letter name (2 bytes), then
    // the state's number.
    let asker = probe(
        "",
        "(drop (call $sleep (i64.const 1000000)))
         (local.set $i (i32.const 0))
         (loop $services
            (local.set $r (call $info (i32.const 1) (local.get $i) (i32.const 1000) (i32.const 256)))
            (if (i32.lt_s (local.get $r) (i32.const 0))
                (then (call $report (local.get $r)))
                (else (call $report (i32.load8_u (i32.const 1002)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $services (i32.lt_u (local.get $i) (i32.const 3))))",
    )
    .replacen(
        "(module",
        "(module (import \"atoll\" \"info\" (func $info (param i32 i32 i32 i32) (result i32)))",
        1,
    );
    let parked = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))",
    );
    let (system, _) = TestSystem::new()
        .service("a", asker)
        .service("b", parked)
        .provides("b")
        .run();
    use atoll_abi::info::ServiceState;
    assert_eq!(
        system.lines_of("a"),
        [
            ServiceState::Running.code().to_string(),
            ServiceState::Receiving.code().to_string(),
            code(Error::NotFound),
        ]
    );
}

/// An echo server on handle 1 that counts to `iterations` (about four fuel
/// each) before it answers each call.
fn busy_echo_server(iterations: u32) -> String {
    probe(
        "",
        &format!(
            "(loop $serve
                (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
                (local.set $i (i32.const 0))
                (loop $busy
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $busy (i32.lt_u (local.get $i) (i32.const {iterations}))))
                (drop (call $reply (call $token) (i32.const 100) (local.get $r)))
                (br $serve))"
        ),
    )
}

/// A witness service (`[witness] 7`), ready since boot, logged before the
/// client's last line `client_done`: a caller's calls in place did not keep
/// it from the CPU until they were all done.
fn assert_witness_ran_first(system: &super::system::System, client_done: &str) {
    let console = system.console();
    let witness = console.find("[witness] 7").expect("the witness ran");
    let client = console.find(client_done).expect("the client finished");
    assert!(witness < client, "the witness waited: {console}");
}

/// Turns on the CPU of each service, by name (used by the direct switch's
/// tests, which the slow-path builds leave out).
#[cfg(not(any(feature = "no-switch", feature = "trapped-ipc")))]
fn slices(system: &super::system::System, name: &str) -> Option<u64> {
    system
        .kernel
        .service_states()
        .into_iter()
        .find(|(service, ..)| service == name)
        .map(|(_, _, stats)| stats.slices)
}

#[cfg(not(any(feature = "no-switch", feature = "trapped-ipc")))]
#[test]
fn a_call_to_a_waiting_server_runs_it_in_place_and_the_caller_never_waits() {
    let (system, summary) = TestSystem::new()
        .service("server", echo_server())
        .provides("echo")
        .service("client", counting_client(100))
        .uses("echo")
        .limits(atoll_abi::bundle::ServiceLimits {
            fuel_slice: 1_000_000,
            ..super::system::LIMITS
        })
        .run();
    assert_eq!(system.lines_of("client"), ["100"]);
    assert_eq!(summary.exited, 1);
    // The client's one slice made every call; the server ran once to reach
    // its receive, then once inside each call.
    assert_eq!(slices(&system, "client"), Some(1));
    assert_eq!(slices(&system, "server"), Some(101));
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn a_server_preempted_inside_a_direct_switch_still_answers_its_caller() {
    // Each request costs the server several slices (1,000 fuel each) before
    // it replies: the switch ends with the server preempted, the caller
    // waits as usual, and the reply finds it parked.
    let server = busy_echo_server(3000);
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", counting_client(10))
        .uses("echo")
        .run();
    assert_eq!(system.lines_of("client"), ["10"]);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn a_server_that_faults_inside_a_direct_switch_fails_only_the_call() {
    // The server takes the call and traps; the caller gets PeerGone, and
    // its next call (no server any more) too.
    let server = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         unreachable",
    );
    let client = probe(
        "ping",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 64)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 64)))",
    );
    let (system, summary) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", client)
        .uses("echo")
        .run();
    let gone = code(Error::PeerGone);
    assert_eq!(system.lines_of("client"), [gone.as_str(), gone.as_str()]);
    assert_eq!(summary.faulted, 1);
    assert_eq!(summary.exited, 1);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn a_server_that_replies_in_place_then_faults_still_answers_its_caller() {
    // Answered in place, the caller is woken when the switch ends (not at
    // the reply): a fault after the reply, in the same slice, must not
    // cost the caller its answer, nor leave it waiting.
    let server = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (drop (call $reply (call $token) (i32.const 100) (i32.const 3)))
         unreachable",
    );
    let client = probe(
        "ping",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 64)))
         (call $log (i32.const 300) (i32.const 3)) drop",
    );
    let (system, summary) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", client)
        .uses("echo")
        .run();
    assert_eq!(system.lines_of("client"), ["3", "pin"]);
    assert_eq!(summary.faulted, 1);
    assert_eq!(summary.exited, 1);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn a_server_that_replies_in_place_then_runs_past_its_slice_answers_at_once() {
    // The reply comes early in the switch; the server then works for
    // several slices (1,000 fuel each) before its next receive. The caller
    // has its answer when the switch ends, ahead of the server's next turn.
    let server = probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (drop (call $reply (call $token) (i32.const 100) (local.get $r)))
            (local.set $i (i32.const 3000))
            (loop $work
                (local.set $i (i32.sub (local.get $i) (i32.const 1)))
                (br_if $work (local.get $i)))
            (br $serve))",
    );
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", counting_client(10))
        .uses("echo")
        .run();
    assert_eq!(system.lines_of("client"), ["10"]);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[cfg(not(any(feature = "no-switch", feature = "trapped-ipc")))]
#[test]
fn servers_run_in_place_use_at_most_about_the_callers_slice_per_turn() {
    // Each request costs the server about 20,000 fuel (its slices are large
    // enough that it is never preempted); the caller's slice is 100,000.
    // Run in place without a bound, the fifty calls would all fit in the
    // caller's one turn (a million fuel of server work): bounded, a turn
    // switches about five times and the calls after go the slow way.
    let server = busy_echo_server(5000);
    let limits = |fuel_slice| atoll_abi::bundle::ServiceLimits {
        fuel_slice,
        ..super::system::LIMITS
    };
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .limits(limits(10_000_000))
        .service("client", counting_client(50))
        .uses("echo")
        .limits(limits(100_000))
        .run();
    assert_eq!(system.lines_of("client"), ["50"]);
    let turns = slices(&system, "client").unwrap_or(0);
    assert!((5..=30).contains(&turns), "the client had {turns} turns");
}

#[test]
fn a_caller_that_calls_in_place_still_lets_other_ready_services_run_within_a_slice_or_two() {
    // Each request costs the server about 16,000 fuel (its slice is 100,000,
    // so it answers within one slice); the client's slice is 5,000 fuel,
    // enough for all 50 of its calls. A witness, ready since boot, must get
    // the CPU long before the client's calls (800,000 fuel of server work,
    // eight server slices, 160 client slices) are done: a turn is about one
    // slice, whoever's fuel runs in it.
    let server = busy_echo_server(4000);
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .limits(atoll_abi::bundle::ServiceLimits {
            fuel_slice: 100_000,
            ..super::system::LIMITS
        })
        .service("client", counting_client(50))
        .uses("echo")
        .limits(atoll_abi::bundle::ServiceLimits {
            fuel_slice: 5_000,
            ..super::system::LIMITS
        })
        .service("witness", probe("", "(call $report (i32.const 7))"))
        .run();
    assert_witness_ran_first(&system, "[client] 50");
}

#[test]
fn a_server_inside_a_direct_switch_may_call_another_waiting_server() {
    // front, run in place for the client's call, calls back (also waiting
    // in receive): no switch inside a switch, so front waits, the client
    // waits, and both replies arrive the usual way.
    let front = probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (local.set $h (i32.load (i32.const 200)))
            (local.set $r (call $call (i32.const 2) (i32.const 100) (local.get $r) (i32.const 400) (i32.const 64)))
            (drop (call $reply (local.get $h) (i32.const 400) (local.get $r)))
            (br $serve))",
    );
    let (system, summary) = TestSystem::new()
        .service("back", echo_server())
        .provides("back")
        .service("front", front)
        .provides("front")
        .uses("back")
        .service("client", counting_client(20))
        .uses("front")
        .limits(atoll_abi::bundle::ServiceLimits {
            fuel_slice: 1_000_000,
            ..super::system::LIMITS
        })
        .run();
    assert_eq!(system.lines_of("client"), ["20"]);
    assert_eq!(summary.exited, 1);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn the_supervisor_may_call_in_place_and_hears_of_a_server_that_faults_inside() {
    let server = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         unreachable",
    );
    // The supervisor provides its endpoint (handle 1) and uses the server's (2).
    let supervisor = probe(
        "ping",
        "(call $report (call $call (i32.const 2) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 64)))
         (call $report (call $receive (i32.const 1) (i32.const 400) (i32.const 256) (i64.const 0) (i32.const 200)))",
    );
    let (system, summary) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("supervisor", supervisor)
        .provides("supervision")
        .uses("echo")
        .supervisor()
        .run();
    let lines = system.lines_of("supervisor");
    assert_eq!(
        lines.first().map(String::as_str),
        Some(code(Error::PeerGone).as_str())
    );
    // The report of the fault waits in its queue.
    assert!(
        lines
            .get(1)
            .is_some_and(|length| length.parse::<i32>().is_ok_and(|n| n > 0)),
        "{lines:?}"
    );
    assert_eq!(summary.faulted, 1);
    assert_eq!(system.kernel.pending_calls(), 0);
}

#[test]
fn a_loop_of_cheap_calls_in_place_does_not_hold_the_cpu_for_thousands_of_round_trips() {
    // The echo server's work and the client's are a few dozen fuel a call:
    // by fuel alone, one slice of 100,000 would hold 1,000 round trips of
    // unmetered kernel work. The witness, ready since boot, must run before
    // they are all done.
    let (system, _) = TestSystem::new()
        .service("server", echo_server())
        .provides("echo")
        .service("client", counting_client(1000))
        .uses("echo")
        .limits(atoll_abi::bundle::ServiceLimits {
            fuel_slice: atoll_abi::bundle::DEFAULT_FUEL_SLICE,
            ..super::system::LIMITS
        })
        .service("witness", probe("", "(call $report (i32.const 7))"))
        .run();
    assert_eq!(system.lines_of("client"), ["1000"]);
    assert_witness_ran_first(&system, "[client] 1000");
}

#[cfg(not(any(feature = "no-switch", feature = "trapped-ipc")))]
#[test]
fn a_turn_holds_at_most_about_a_hundred_round_trips_in_place() {
    // Nobody else is ready, the calls are cheap (a few dozen fuel each): by
    // fuel alone one turn would hold all 1,000. Each switch counts 1,000
    // fuel of kernel work against the turn's budget (the client's slice).
    let (system, _) = TestSystem::new()
        .service("server", echo_server())
        .provides("echo")
        .service("client", counting_client(1000))
        .uses("echo")
        .limits(atoll_abi::bundle::ServiceLimits {
            fuel_slice: atoll_abi::bundle::DEFAULT_FUEL_SLICE,
            ..super::system::LIMITS
        })
        .run();
    assert_eq!(system.lines_of("client"), ["1000"]);
    let turns = slices(&system, "client").unwrap_or(0);
    assert!((5..=200).contains(&turns), "the client had {turns} turns");
}

#[cfg(not(any(feature = "no-switch", feature = "trapped-ipc")))]
#[test]
fn no_switch_while_another_service_waits_for_the_cpu() {
    // The client's slice and budget would hold all fifty cheap calls, but
    // the witness is ready (since boot): the client's calls wait their turn
    // as before, so the witness runs before they are done.
    let (system, _) = TestSystem::new()
        .service("server", echo_server())
        .provides("echo")
        .service("client", counting_client(50))
        .uses("echo")
        .limits(atoll_abi::bundle::ServiceLimits {
            fuel_slice: 10_000_000,
            ..super::system::LIMITS
        })
        .service("witness", probe("", "(call $report (i32.const 7))"))
        .run();
    assert_witness_ran_first(&system, "[client] 50");
}

/// The bytes both sides of the in-place reply tests compare.
const PATTERN: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?";

/// Client: for each length, clears its reply buffer (300..364), calls with
/// that many bytes of PATTERN, reports the result and how many reply bytes
/// differ from PATTERN.
fn checking_client(lens: &[i32]) -> String {
    let mut body = String::new();
    for len in lens {
        body.push_str(&format!(
            "(local.set $i (i32.const 0))
             (loop $z (i32.store8 (i32.add (i32.const 300) (local.get $i)) (i32.const 0))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $z (i32.lt_u (local.get $i) (i32.const 64))))
             (local.set $r (call $call (i32.const 1) (i32.const 0) (i32.const {len}) (i32.const 300) (i32.const 64)))
             (call $report (local.get $r))
             (local.set $h (i32.const 0))
             (local.set $i (i32.const 0))
             (block $done (loop $c
                (br_if $done (i32.ge_s (local.get $i) (local.get $r)))
                (if (i32.ne (i32.load8_u (local.get $i)) (i32.load8_u (i32.add (i32.const 300) (local.get $i))))
                    (then (local.set $h (i32.add (local.get $h) (i32.const 1)))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $c)))
             (call $report (local.get $h))\n"
        ));
    }
    probe(PATTERN, &body)
}

#[test]
fn replies_in_place_of_varied_sizes_arrive_whole() {
    // The server answers a request of r bytes with min(2r+1, 64) bytes of
    // PATTERN: replies both larger and smaller than the spare buffers, so
    // that a direct switch holds some in a spare buffer and allocates for
    // others; each must reach the caller's memory whole.
    let server = probe(
        PATTERN,
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (if (i32.ge_s (local.get $r) (i32.const 0))
                (then
                    (local.set $r (i32.add (i32.mul (local.get $r) (i32.const 2)) (i32.const 1)))
                    (if (i32.gt_s (local.get $r) (i32.const 64)) (then (local.set $r (i32.const 64))))
                    (drop (call $reply (call $token) (i32.const 0) (local.get $r)))))
            (br $serve))",
    );
    let lens = [1, 40, 3, 64, 0, 2, 31, 5, 64, 1];
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", checking_client(&lens))
        .uses("echo")
        .run();
    let expected: Vec<String> = lens
        .iter()
        .flat_map(|len| [(len * 2 + 1).min(64).to_string(), "0".to_string()])
        .collect();
    assert_eq!(system.lines_of("client"), expected);
}

#[test]
fn a_receive_timeout_set_right_after_a_direct_switch_is_not_early() {
    // The server answers the client's in-place call, then waits 1 s in
    // receive; the client sleeps 3 s. Its timeout must not fire before 1 s
    // from the server's own reading of the clock.
    let server = probe(
        "",
        "(local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (drop (call $reply (call $token) (i32.const 100) (local.get $r)))
         (local.set $t (call $time))
         (call $report (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const 1000000000) (i32.const 200)))
         (local.set $t (i64.sub (call $time) (local.get $t)))
         (call $report (i64.ge_u (local.get $t) (i64.const 1000000000)))
         (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))",
    );
    let client = probe(
        "ping",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 8)))
         (drop (call $sleep (i64.const 3000000000)))",
    );
    let (system, _) = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", client)
        .uses("echo")
        .run();
    assert_eq!(system.lines_of("client"), ["4"]);
    assert_eq!(
        system.lines_of("server"),
        [code(Error::TimedOut), "1".to_string()]
    );
}
