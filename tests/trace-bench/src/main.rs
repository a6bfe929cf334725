//! atoll-trace-bench: the IPC call/reply round trip in the hosted kernel core,
//! long enough to measure a difference of a few percent on a shared machine.
//!
//! `atoll-trace-bench [--trace] [--sends] [--no-handler | --reply-then-receive] [--server FILE] [--idle N] [--round-trips N]`
//! boots a system of two services written in WAT, a client that calls a
//! server N times (default 200,000) with 16 bytes (with `--sends`: sends it N
//! messages of 16 bytes, yielding when the queue is full) and an echo server:
//! a loop of one `reply_receive` per message, and a handler export, which
//! answers the calls switched to it by upcall (docs/abi.md, "Handlers").
//! With `--no-handler` the loop alone answers, as servers did before
//! handlers; with `--reply-then-receive` the loop has a `receive` and a
//! `reply`, as before `reply_receive`; `--server FILE` serves with that
//! module instead (any echo server of handle 1, e.g. the bench system's,
//! written in Rust on the SDK's `serve_raw`); `--idle N` adds N services
//! that wait in `receive` the whole run (the round trip's cost does not
//! depend on how many services there are). It runs the system
//! to its end and prints
//! `wall_ns_per_round_trip=` and `cpu_ns_per_round_trip=` (the thread's own
//! time on the CPU, from `/proc/thread-self/schedstat`: time the machine
//! gave to other processes does not count). `--trace` turns the trace ring
//! on before the first service runs. `image-builder bench --trace-overhead`
//! runs it built three ways (with and without atoll-core's `no-trace`
//! feature, and with default code units), and with the Rust server.
//! A platform of its own (clock, console), so that it needs nothing of
//! image-builder.
#![forbid(unsafe_code)]

use atoll_abi::bundle::{self, Bundle, KernelSettings, ServiceImage, ServiceLimits};
use atoll_core::{Kernel, Platform};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The host's clock, shared with image-builder's hosted platform.
#[path = "../../../image-builder/src/host_clock.rs"]
mod host_clock;
use host_clock::HostClock;

struct Hosted {
    clock: HostClock,
    console: Mutex<String>,
}

impl Platform for Hosted {
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    fn console_write(&self, text: &str) {
        if let Ok(mut console) = self.console.lock() {
            console.push_str(text);
        }
    }

    fn wait_until(&self, deadline_ns: u64) {
        let now = self.now_ns();
        if deadline_ns > now {
            std::thread::sleep(Duration::from_nanos(deadline_ns - now));
        }
    }
}

/// Calls handle 1 `$n` times with 16 bytes, then returns.
fn client(round_trips: u64) -> String {
    format!(
        r#"(module
        (import "atoll" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "0123456789abcdef")
        (data (i32.const 64) "round trips done")
        (func (export "_start") (local $i i64)
            (loop $again
                (drop (call $call (i32.const 1) (i32.const 0) (i32.const 16) (i32.const 100) (i32.const 64)))
                (local.set $i (i64.add (local.get $i) (i64.const 1)))
                (br_if $again (i64.lt_u (local.get $i) (i64.const {round_trips}))))
            (drop (call $log (i32.const 64) (i32.const 16)))))"#
    )
}

/// Sends `$n` messages of 16 bytes on handle 1 (on a full queue it sleeps
/// 0 ns, which lets the server run, and sends again), then returns.
fn sender(sends: u64) -> String {
    format!(
        r#"(module
        (import "atoll" "send" (func $send (param i32 i32 i32) (result i32)))
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "0123456789abcdef")
        (data (i32.const 64) "round trips done")
        (func (export "_start") (local $i i64)
            (loop $again
                (if (i32.lt_s (call $send (i32.const 1) (i32.const 0) (i32.const 16)) (i32.const 0))
                    (then (drop (call $sleep (i64.const 0))))
                    (else (local.set $i (i64.add (local.get $i) (i64.const 1)))))
                (br_if $again (i64.lt_u (local.get $i) (i64.const {sends}))))
            (drop (call $log (i32.const 64) (i32.const 16)))))"#
    )
}

/// Answers every call on handle 1 with its request, for ever: each turn of
/// its loop one kernel call, `reply_receive` after a call (the reply and the
/// next message) or `receive` after a send; with `separate` a `receive` and
/// a `reply` (the server's shape before `reply_receive`, for comparison).
fn server(separate: bool, handler: bool) -> String {
    if separate {
        return r#"(module
    (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
    (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start") (local $r i32)
        (loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            ;; A call (token not 0) is answered; a send is not.
            (if (i32.and (i32.ge_s (local.get $r) (i32.const 0)) (i32.ne (i32.load (i32.const 200)) (i32.const 0)))
                (then (drop (call $reply (i32.load (i32.const 200)) (i32.const 100) (local.get $r)))))
            (br $serve))))"#
            .into();
    }
    // The handler export answers a call switched to the server by upcall
    // with its request, as the loop would (docs/abi.md, "Handlers").
    let handler = if handler {
        r#"(func (export "atoll_handle") (param $r i32) (param $cap i32) (result i64)
        (i64.or (i64.const 0x6400000000) (i64.extend_i32_u (local.get $r))))"#
    } else {
        ""
    };
    format!(
        r#"(module
    (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
    (import "atoll" "reply_receive" (func $reply_receive (param i32 i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start") (local $r i32) (local $token i32)
        (loop $serve
            ;; Answers the last call, if it was one, and takes the next message.
            (if (local.get $token)
                (then (local.set $r (call $reply_receive (local.get $token) (i32.const 100) (local.get $r) (i32.const 240)
                    (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200))))
                (else (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))))
            (local.set $token (i32.const 0))
            (if (i32.ge_s (local.get $r) (i32.const 0))
                (then (local.set $token (i32.load (i32.const 200)))))
            (br $serve)))
    {handler})"#
    )
}

/// A service that waits in `receive` on an endpoint no one calls: the whole run.
const IDLE: &str = r#"(module
    (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start")
        (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))))"#;

fn bundle(
    round_trips: u64,
    sends: bool,
    separate: bool,
    handler: bool,
    server_module: Option<Vec<u8>>,
    idle: usize,
) -> Result<Vec<u8>, String> {
    let server = match server_module {
        Some(module) => module,
        None => wat::parse_str(server(separate, handler)).map_err(|error| error.to_string())?,
    };
    let client = if sends {
        sender(round_trips)
    } else {
        client(round_trips)
    };
    let client = wat::parse_str(client).map_err(|error| error.to_string())?;
    let idler = wat::parse_str(IDLE).map_err(|error| error.to_string())?;
    let idle_names: Vec<String> = (0..idle).map(|i| format!("idle-{i}")).collect();
    let image = |name, module, provides, uses| ServiceImage {
        name,
        module,
        limits: ServiceLimits::default(),
        provides,
        uses,
        supervisor: false,
        restart: Default::default(),
        args: Vec::new(),
        env: Vec::new(),
        grants: Default::default(),
        preopens: Vec::new(),
        listen: Vec::new(),
    };
    bundle::encode(&Bundle {
        kernel: KernelSettings {
            system_name: "trace-bench".into(),
            exit_when_idle: true,
            inject_fault: None,
        },
        services: {
            let mut services = vec![
                image("server", &server, vec!["bench"], Vec::new()),
                image("client", &client, Vec::new(), vec!["bench"]),
            ];
            services.extend(
                idle_names
                    .iter()
                    .map(|name| image(name, &idler, vec![name], Vec::new())),
            );
            services
        },
        wasi_shim: None,
    })
    .map_err(|error| error.to_string())
}

/// This thread's time on the CPU so far, in ns (`None` where the kernel does
/// not say).
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn main() -> ExitCode {
    let mut trace = false;
    let mut sends = false;
    let mut separate = false;
    let mut handler = true;
    let mut round_trips = 200_000u64;
    let mut server_module = None;
    let mut idle = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--trace" => trace = true,
            "--sends" => sends = true,
            "--reply-then-receive" => separate = true,
            "--no-handler" => handler = false,
            "--idle" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => idle = n,
                _ => {
                    eprintln!("--idle takes a number");
                    return ExitCode::from(2);
                }
            },
            "--server" => match args.next().map(std::fs::read) {
                Some(Ok(module)) => server_module = Some(module),
                _ => {
                    eprintln!("--server takes a readable .wasm file");
                    return ExitCode::from(2);
                }
            },
            "--round-trips" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => round_trips = n,
                _ => {
                    eprintln!("--round-trips takes a positive number");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!(
                    "usage: atoll-trace-bench [--trace] [--sends] [--no-handler | --reply-then-receive] [--round-trips N]"
                );
                return ExitCode::from(2);
            }
        }
    }
    if server_module.is_some() && (separate || !handler) {
        eprintln!("--server takes neither --no-handler nor --reply-then-receive");
        return ExitCode::from(2);
    }
    let bundle = match bundle(round_trips, sends, separate, handler, server_module, idle) {
        Ok(bundle) => bundle,
        Err(error) => {
            eprintln!("atoll-trace-bench: {error}");
            return ExitCode::from(2);
        }
    };
    let platform = std::sync::Arc::new(Hosted {
        clock: HostClock::new(),
        console: Mutex::new(String::new()),
    });
    let Ok((mut kernel, _)) = Kernel::boot(&bundle, platform.clone()) else {
        eprintln!("atoll-trace-bench: the kernel core cannot boot the system");
        return ExitCode::from(3);
    };
    if trace && kernel.set_tracing(true).is_err() {
        eprintln!("atoll-trace-bench: cannot turn tracing on");
        return ExitCode::from(3);
    }
    let (wall, cpu) = (Instant::now(), cpu_ns());
    let summary = kernel.run();
    let wall = wall.elapsed().as_nanos() as f64;
    let cpu = cpu
        .zip(cpu_ns())
        .map(|(before, after)| after.saturating_sub(before) as f64);
    let console = platform
        .console
        .lock()
        .map(|console| console.clone())
        .unwrap_or_default();
    // A server that faulted (or did not load) answers no call: the client's
    // calls fail at once, and a run that finishes fast measures nothing.
    if summary.faulted > 0
        || summary.failed_to_load > 0
        || !console.contains("[client] round trips done")
    {
        eprintln!("atoll-trace-bench: no round trips were served ({summary}):\n{console}");
        return ExitCode::from(1);
    }
    let records = kernel
        .trace_dump()
        .iter()
        .filter(|line| line.starts_with("trace-record"))
        .count();
    let per = |ns: f64| ns / round_trips as f64;
    println!("wall_ns_per_round_trip={:.1}", per(wall));
    if let Some(cpu) = cpu {
        println!("cpu_ns_per_round_trip={:.1}", per(cpu));
    }
    println!("trace records held: {records}; {summary}");
    ExitCode::SUCCESS
}
