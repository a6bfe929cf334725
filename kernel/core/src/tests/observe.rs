//! Seeing inside: the per-service and per-endpoint counters `info` reports,
//! and the trace ring (what it records, turned on from the control channel and
//! by the supervisor, and its dump). The ring's own wrap-around and repeat
//! counting are tested beside it (`crate::trace`).

use super::probes::{code, echo_server, holder, probe};
use super::system::TestSystem;
use atoll_abi::Error;
use atoll_abi::info::{EndpointInfo, ServiceInfo};
use atoll_abi::supervision::CONTROL_TRACE_ON;
use atoll_abi::trace::{Line, Record, parse_line};

fn service<'a>(infos: &'a [ServiceInfo], name: &str) -> &'a ServiceInfo {
    infos.iter().find(|info| info.name == name).unwrap()
}

fn endpoint<'a>(infos: &'a [EndpointInfo], name: &str) -> &'a EndpointInfo {
    infos.iter().find(|info| info.name == name).unwrap()
}

/// A client that calls handle 1 three times and sends to it twice.
fn caller() -> String {
    probe(
        "ping",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 8)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 2)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 8)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 2)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 8)))",
    )
}

/// The records of the trace dump, parsed back from its lines.
fn dumped_records(lines: &[String]) -> Vec<Record> {
    lines
        .iter()
        .filter_map(|line| match parse_line(line) {
            Some(Line::Record(record)) => Some(record),
            _ => None,
        })
        .collect()
}

#[test]
fn reply_receive_counts_as_the_reply_and_the_receive_it_makes() {
    // The server takes the first message with `receive`, then answers
    // each with `reply_receive`: five messages (three calls, two sends).
    // Counted: 1 receive, then per `reply_receive` its receive, and its
    // reply when it answered a call (not a send: token 0), the last one
    // waiting for ever: 1 + 5 + 3 = 9 (also with `trapped-ipc`, where every
    // call takes the slow path: `make test` runs both).
    let server = probe(
        "",
        "(local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (loop $serve
            (local.set $r (call $reply_receive (call $token) (i32.const 100) (local.get $r) (i32.const 240)
                (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (br $serve))",
    );
    let mut system = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", caller())
        .uses("echo")
        .boot();
    system.run();
    assert_eq!(system.lines_of("client"), ["4", "0", "4", "0", "4"]);
    let services = system.kernel.service_info();
    let server = service(&services, "server");
    assert_eq!((server.received, server.syscalls), (5, 9));
}

#[test]
fn messages_and_kernel_calls_are_each_counted_once() {
    let mut system = TestSystem::new()
        .service("server", echo_server())
        .provides("echo")
        .service("client", caller())
        .uses("echo")
        .boot();
    system.run();
    // The echo server answers sends with a reply that fails (no call): it
    // still counts as the kernel call it is.
    assert_eq!(system.lines_of("client"), ["4", "0", "4", "0", "4"]);
    let services = system.kernel.service_info();
    let (client, server) = (service(&services, "client"), service(&services, "server"));
    assert_eq!((client.sent, client.received), (5, 0));
    assert_eq!((server.sent, server.received), (0, 5));
    // Three calls and two sends; the server's five receives that took a
    // message, five replies, and the receive it waits in now.
    assert_eq!(client.syscalls, 5);
    assert_eq!(server.syscalls, 11);
    assert_eq!((client.faults, server.faults), (0, 0));
    assert!(client.slices >= 1 && server.slices >= 1);
    assert!(client.fuel_used > 0 && client.memory_bytes == 65_536);
    // The client waited for its replies, the server for messages.
    assert!(client.blocked_reply_ns > 0, "{client:?}");
    assert_eq!(client.blocked_receive_ns, 0);
    assert!(server.blocked_receive_ns > 0, "{server:?}");
    assert_eq!(server.blocked_reply_ns, 0);
    // The wait in progress counts: the server still waits, so its time
    // blocked in `receive` grows while it does.
    let before = server.blocked_receive_ns;
    std::thread::sleep(std::time::Duration::from_millis(2));
    let later = system.kernel.service_info();
    assert!(
        service(&later, "server").blocked_receive_ns > before,
        "{:?}",
        service(&later, "server")
    );
    let endpoints = system.kernel.endpoint_info();
    let echo = endpoint(&endpoints, "echo");
    assert_eq!(echo.queued, 5);
    assert_eq!((echo.queue_full, echo.peer_gone), (0, 0));
    assert_eq!(echo.queue_len, 0);
    assert_eq!(echo.provider, Some(0));
    assert!(echo.deepest >= 1);
}

#[test]
fn blocked_time_spans_each_wait_across_the_kernels_idle_time() {
    // A wait is stamped by the kernel entries that begin and end it (the
    // clock is read at most once per entry): one that lasts across the
    // kernel's idle time counts all of it. The test clock jumps to each
    // deadline when the kernel idles, and moves 1 us per reading.
    let client = probe(
        "ping",
        "(drop (call $sleep (i64.const 3000000000)))
         (call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 8)))
         (drop (call $sleep (i64.const 1000000000)))",
    );
    let mut system = TestSystem::new()
        .service("server", echo_server())
        .provides("echo")
        .service("client", client)
        .uses("echo")
        .boot();
    system.run();
    assert_eq!(system.lines_of("client"), ["4"]);
    let services = system.kernel.service_info();
    let (client, server) = (service(&services, "client"), service(&services, "server"));
    // Two sleeps, each from its entry to the turn that woke it: a few
    // readings of the test clock (1 us each) over the four seconds.
    assert!(
        (4_000_000_000..4_001_000_000).contains(&client.blocked_sleep_ns),
        "{client:?}"
    );
    // The server waited in `receive` through both sleeps (the wait in
    // progress counts).
    assert!(server.blocked_receive_ns >= 4_000_000_000, "{server:?}");
    assert_eq!(server.blocked_sleep_ns, 0);
}

#[cfg(not(any(feature = "no-switch", feature = "trapped-ipc")))]
#[test]
fn a_caller_answered_in_place_waited_for_the_reply_only_until_it_came() {
    // The server replies in place, then reads the clock fifty times (the
    // test clock moves 1 us per reading) before its next receive. The
    // caller takes the CPU back only when the switch ends, but its wait for
    // the reply ended with the reply: that time is not `blocked_reply_ns`.
    let server = probe(
        "",
        "(drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (drop (call $reply (call $token) (i32.const 100) (i32.const 3)))
         (local.set $i (i32.const 50))
         (loop $work
            (drop (call $time))
            (local.set $i (i32.sub (local.get $i) (i32.const 1)))
            (br_if $work (local.get $i)))
         (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))",
    );
    let client = probe(
        "ping",
        "(call $report (call $call (i32.const 1) (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 64)))",
    );
    let mut system = TestSystem::new()
        .service("server", server)
        .provides("echo")
        .service("client", client)
        .uses("echo")
        .boot();
    system.run();
    assert_eq!(system.lines_of("client"), ["3"]);
    // Answered in place: the client's one slice made the call (on the slow
    // path it would have waited for a second).
    let slices = system
        .kernel
        .service_states()
        .into_iter()
        .find(|(name, ..)| name == "client")
        .map(|(_, _, stats)| stats.slices);
    assert_eq!(slices, Some(1));
    let services = system.kernel.service_info();
    let client = service(&services, "client");
    assert!(client.blocked_reply_ns < 10_000, "{client:?}");
}

#[test]
fn refusals_are_counted_on_their_endpoint_once() {
    // `slow` (queue depth 1) never receives; `gone` ends at once. The client
    // fills slow's queue, is refused, then calls the ended service.
    let client = probe(
        "xy",
        "(drop (call $sleep (i64.const 1000000)))
         (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 1)))
         (call $report (call $send (i32.const 1) (i32.const 1) (i32.const 1)))
         (call $report (call $send (i32.const 1) (i32.const 1) (i32.const 1)))
         (call $report (call $send (i32.const 2) (i32.const 0) (i32.const 1)))
         (call $report (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))",
    );
    let limits = atoll_abi::bundle::ServiceLimits {
        queue_depth: 1,
        ..Default::default()
    };
    let mut system = TestSystem::new()
        .service(
            "slow",
            probe("", "(drop (call $sleep (i64.const 1000000000)))"),
        )
        .provides("slow")
        .limits(limits)
        .service("gone", super::probes::ENDS_AT_ONCE)
        .provides("gone")
        .service("client", client)
        .uses("slow")
        .uses("gone")
        .boot();
    system.run();
    let full = code(Error::QueueFull);
    let gone = code(Error::PeerGone);
    assert_eq!(
        system.lines_of("client"),
        [
            "0",
            full.as_str(),
            full.as_str(),
            gone.as_str(),
            gone.as_str()
        ]
    );
    let endpoints = system.kernel.endpoint_info();
    let slow = endpoint(&endpoints, "slow");
    assert_eq!((slow.queued, slow.queue_full, slow.peer_gone), (1, 2, 0));
    assert_eq!((slow.deepest, slow.queue_depth), (1, 1));
    let gone = endpoint(&endpoints, "gone");
    assert_eq!((gone.queued, gone.queue_full, gone.peer_gone), (0, 0, 2));
    let services = system.kernel.service_info();
    // Refused messages were not sent.
    assert_eq!(service(&services, "client").sent, 1);
}

#[test]
fn only_the_supervisor_may_turn_tracing_on() {
    let nosy = probe(
        "",
        &format!(
            "(call $report (call $control (i32.const {CONTROL_TRACE_ON}) (i32.const 0) (i32.const 0)))"
        ),
    );
    let (system, _) = TestSystem::new()
        .service("sup", holder())
        .provides("events")
        .supervisor()
        .service("nosy", nosy)
        .run();
    assert_eq!(system.lines_of("nosy"), [code(Error::NotPermitted)]);
    assert_eq!(dumped_records(&system.kernel.trace_dump()), []);
}

/// What the ring records (not in the build without tracing).
#[cfg(not(feature = "no-trace"))]
mod traced {
    use super::*;
    use atoll_abi::supervision::CONTROL_RESTART;
    use atoll_abi::trace::{BLOCK_RECEIVE, BLOCK_REPLY, Kind};

    /// A supervisor that turns tracing on when it starts, then restarts `svc`
    /// after every report.
    fn tracing_supervisor() -> String {
        probe(
            "svc",
            &format!(
                "(call $report (call $control (i32.const {CONTROL_TRACE_ON}) (i32.const 0) (i32.const 0)))
                 (loop $events
                    (local.set $r (call $receive (i32.const 1) (i32.const 400) (i32.const 512) (i64.const -1) (i32.const 200)))
                    (drop (call $control (i32.const {CONTROL_RESTART}) (i32.const 0) (i32.const 3)))
                    (br $events))"
            ),
        )
    }

    #[test]
    fn faults_and_restarts_are_counted_and_traced() {
        // svc traps on a message starting with `!`; the client sends one poison
        // message, then calls once. The supervisor turned tracing on first.
        let fragile = probe(
            "",
            "(loop $serve
                (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
                (if (i32.eq (i32.load8_u (i32.const 100)) (i32.const 33)) (then unreachable))
                (if (call $token) (then (drop (call $reply (call $token) (i32.const 100) (local.get $r)))))
                (br $serve))",
        );
        let client = probe(
            "!ok",
            "(drop (call $sleep (i64.const 1000000)))
             (call $report (call $send (i32.const 1) (i32.const 0) (i32.const 1)))
             (call $report (call $call (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 300) (i32.const 8)))
             (drop (call $sleep (i64.const 1000000000)))",
        );
        let mut system = TestSystem::new()
            .service("sup", tracing_supervisor())
            .provides("events")
            .supervisor()
            .service("svc", fragile)
            .provides("svc")
            .service("client", client)
            .uses("svc")
            .boot();
        system.run();
        assert_eq!(system.lines_of("sup"), ["0"]);
        assert_eq!(system.lines_of("client"), ["0", "2"]);
        let services = system.kernel.service_info();
        let svc = service(&services, "svc");
        // One trap; restarted after it and after the client's exit.
        assert_eq!((svc.faults, svc.restarts), (1, 2));
        let records = dumped_records(&system.kernel.trace_dump());
        let of = |kind: Kind| records.iter().filter(move |record| record.kind == kind);
        assert_eq!(of(Kind::Fault).count(), 1);
        assert_eq!(of(Kind::Restart).count(), 2);
        assert!(of(Kind::Fault).all(|record| record.service == 1));
        // The fault comes before the first restart.
        let position = |kind: Kind| records.iter().position(|record| record.kind == kind);
        assert!(position(Kind::Fault) < position(Kind::Restart));
    }

    /// A call answered in place wakes its caller when the switch ends:
    /// after the server's reply and its block in its next receive, never
    /// between them (the caller takes the CPU straight back, not through
    /// the run queue, so nothing runs in between).
    #[cfg(not(any(feature = "no-switch", feature = "trapped-ipc")))]
    #[test]
    fn a_caller_answered_in_place_wakes_when_the_switch_ends() {
        let mut system = TestSystem::new()
            .service("server", echo_server())
            .provides("echo")
            .service("client", crate::tests::probes::counting_client(3))
            .uses("echo")
            // A slice long enough for the three switches in one turn.
            .limits(atoll_abi::bundle::ServiceLimits {
                fuel_slice: 1_000_000,
                ..crate::tests::system::LIMITS
            })
            .boot();
        system
            .platform
            .send_control(&atoll_abi::control::encode_trace(Some(true)));
        system.kernel.poll_control();
        system.run();
        assert_eq!(system.lines_of("client"), ["3"]);
        let records = dumped_records(&system.kernel.trace_dump());
        let wakes: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, record)| record.kind == Kind::Wake && record.service == 1)
            .map(|(at, _)| at)
            .collect();
        assert_eq!(wakes.len(), 3, "{records:?}");
        for at in wakes {
            let before: Vec<(Kind, u16)> = records[at - 2..at]
                .iter()
                .map(|record| (record.kind, record.service))
                .collect();
            assert_eq!(before, [(Kind::Reply, 0), (Kind::Block, 0)], "{records:?}");
        }
    }

    #[test]
    fn the_trace_links_each_call_to_its_receive_and_reply_in_time_order() {
        let mut system = TestSystem::new()
            .service("server", echo_server())
            .provides("echo")
            .service("client", caller())
            .uses("echo")
            .boot();
        // Turned on from the host control channel before anything runs.
        system
            .platform
            .send_control(&atoll_abi::control::encode_trace(Some(true)));
        system.kernel.poll_control();
        assert_eq!(system.platform.control_output(), "ok: tracing on\n");
        system.run();
        let lines = system.kernel.trace_dump();
        assert_eq!(
            parse_line(&lines[0]),
            Some(Line::Begin {
                records: lines.len() as u64 - 5,
                overwritten: 0,
                services: 2,
                endpoints: 1
            })
        );
        assert_eq!(lines[1], "trace-service 0 server\n");
        assert_eq!(lines[3], "trace-endpoint 0 0 echo\n");
        let records = dumped_records(&lines);
        let times: Vec<u64> = records.iter().map(|record| record.time_ns).collect();
        // Stamped with their kernel entry's time: records of one entry share
        // it, and the times never go back.
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
        assert!(times.first() < times.last(), "{times:?}");
        let of = |kind: Kind| -> Vec<&Record> {
            records
                .iter()
                .filter(|record| record.kind == kind)
                .collect()
        };
        assert_eq!(of(Kind::Call).len(), 3);
        assert_eq!(of(Kind::Send).len(), 2);
        assert_eq!(of(Kind::Receive).len(), 5);
        assert_eq!(of(Kind::Reply).len(), 3);
        for call in of(Kind::Call) {
            assert_eq!((call.service, call.peer, call.detail), (1, 0, 4));
            let receive = of(Kind::Receive)
                .into_iter()
                .find(|record| record.token == call.token)
                .unwrap();
            let reply = of(Kind::Reply)
                .into_iter()
                .find(|record| record.token == call.token)
                .unwrap();
            assert_eq!((receive.service, receive.peer), (0, 1));
            assert_eq!((reply.service, reply.peer), (0, 1));
            // A call delivered to a waiting server is taken in the caller's
            // own kernel entry (the same time); the reply comes in a later
            // one.
            assert!(call.time_ns <= receive.time_ns && receive.time_ns < reply.time_ns);
        }
        // The client blocked for each reply and woke with its length.
        let blocks: Vec<_> = of(Kind::Block)
            .into_iter()
            .filter(|record| record.service == 1)
            .collect();
        assert_eq!(blocks.len(), 3);
        assert!(blocks.iter().all(|record| record.detail == BLOCK_REPLY));
        assert!(
            of(Kind::Block)
                .iter()
                .any(|record| record.service == 0 && record.detail == BLOCK_RECEIVE)
        );
        let client_wakes = of(Kind::Wake)
            .into_iter()
            .filter(|record| record.service == 1 && record.detail == 4)
            .count();
        assert_eq!(client_wakes, 3);
        // Off from the channel: nothing more is recorded.
        system
            .platform
            .send_control(&atoll_abi::control::encode_trace(Some(false)));
        system
            .platform
            .send_control(&atoll_abi::control::encode_trace(None));
        system.kernel.poll_control();
        let output = system.platform.control_output();
        assert!(output.contains("ok: tracing off\n"), "{output}");
        assert!(output.ends_with(&format!("trace: end {}\n", records.len())));
    }
}

/// Reads `info` kinds 2 (endpoint 0) and 3 (the trace ring), and the record
/// length of service 0, reporting each result.
fn info_reader(data: &str) -> String {
    probe(data, "").replace(
        r#"(memory (export "memory") 1)"#,
        r#"(import "atoll" "info" (func $info (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)"#,
    )
    .replace(
        "(local $t i64)\n            ",
        "(local $t i64)
            (if (i32.gt_u (i32.load8_u (i32.const 0)) (i32.const 0))
                (then (drop (call $lookup (i32.const 0) (i32.const 6)))))
            (call $report (call $info (i32.const 2) (i32.const 0) (i32.const 1024) (i32.const 512)))
            (call $report (call $info (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 512)))
            (call $report (i32.gt_s (call $info (i32.const 1) (i32.const 0) (i32.const 1024) (i32.const 512)) (i32.const 0)))",
    )
}

#[test]
fn only_the_supervisor_and_holders_of_its_endpoint_read_the_counters() {
    let (system, _) = TestSystem::new()
        .service("sup", holder())
        .provides("events")
        .supervisor()
        .service("shell", info_reader("events"))
        .uses("events")
        .service("nosy", info_reader(""))
        .run();
    let nosy = system.lines_of("nosy");
    let shell = system.lines_of("shell");
    assert_eq!(
        nosy,
        [
            code(Error::NotPermitted),
            code(Error::NotPermitted),
            "1".to_string()
        ],
        "{}",
        system.console()
    );
    assert!(
        shell
            .first()
            .and_then(|line| line.parse::<i32>().ok())
            .is_some_and(|len| len > 0)
            && shell
                .get(1)
                .and_then(|line| line.parse::<i32>().ok())
                .is_some_and(|len| len > 0),
        "{shell:?}\n{}",
        system.console()
    );
}
