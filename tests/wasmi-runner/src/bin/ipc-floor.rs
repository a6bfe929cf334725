//! ipc-floor: the least a call/reply round trip between two services costs
//! under plain wasmi, with no kernel around it, for Atoll's server shape (a
//! loop over `receive` and `reply`) and for an upcall.
//!
//! `ipc-floor [--fuel] [--upcall] [--round-trips N]` runs two instances, each
//! in its own `Store` of one `Engine`: a client whose loop calls the host
//! function `call` N times, and a server parked in `receive`. The client's
//! `call` resumes the server's suspended invocation with the request (one
//! value); the server passes it to `reply` (a host call that returns at once)
//! and calls `receive` again, which suspends it (a host error: the only way a
//! host function can suspend a running wasmi invocation). `call` then returns
//! the reply to the client. That is the direct switch of Atoll's message path
//! with nothing else: no queue, no scheduler, no copy of the message, no
//! clock. `--upcall` instead calls the server's exported handler as a fresh
//! invocation that returns the reply (so it also has no `reply` host call).
//! The replies are checked. Prints `wall_ns_per_round_trip=` and
//! `cpu_ns_per_round_trip=` (the thread's time on the CPU, from
//! `/proc/thread-self/schedstat`, which moves in scheduler ticks: use a
//! large N) for the round trips alone, set-up left out. Run it under
//! `valgrind --tool=callgrind` with two values of N for instructions per
//! round trip (docs/benchmarks.md).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;
use wasmi::{
    Caller, Config, Engine, Error, Linker, Module, Store, TypedResumableCall,
    TypedResumableCallHostTrap, Val,
};

/// What [`run`] measured: the replies' sum, wall and on-CPU ns.
struct Measured {
    sum: i32,
    wall_ns: f64,
    cpu_ns: Option<f64>,
}

const CLIENT: &str = r#"(module
    (import "h" "call" (func $call (param i32) (result i32)))
    (func (export "run") (param $n i32) (result i32) (local $sum i32)
        (loop $again
            (local.set $sum (i32.add (local.get $sum) (call $call (local.get $n))))
            (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
            (br_if $again))
        (local.get $sum)))"#;

const SERVER: &str = r#"(module
    (import "h" "receive" (func $receive (result i32)))
    (import "h" "reply" (func $reply (param i32)))
    (func (export "serve")
        (loop $serve
            (call $reply (i32.add (call $receive) (i32.const 1)))
            (br $serve)))
    (func (export "handle") (param i32) (result i32)
        (i32.add (local.get 0) (i32.const 1))))"#;

/// The server's suspension: `receive` has nothing to give.
#[derive(Debug)]
struct Parked;

impl core::fmt::Display for Parked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("parked in receive")
    }
}

impl wasmi::errors::HostError for Parked {}

struct Server {
    store: Store<i32>,
    parked: Option<TypedResumableCallHostTrap<()>>,
    handle: wasmi::TypedFunc<i32, i32>,
    upcall: bool,
}

/// Any error as text.
fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn run(fuel: bool, upcall: bool, round_trips: i32) -> Result<Measured, String> {
    let mut config = Config::default();
    config.consume_fuel(fuel);
    let engine = Engine::new(&config);
    let client = Module::new(&engine, CLIENT).map_err(text)?;
    let server = Module::new(&engine, SERVER).map_err(text)?;

    let mut server_store = Store::new(&engine, 0i32);
    if fuel {
        server_store.set_fuel(u64::MAX).map_err(text)?;
    }
    let mut server_linker = Linker::<i32>::new(&engine);
    server_linker
        .func_wrap("h", "receive", || -> Result<i32, Error> {
            Err(Error::host(Parked))
        })
        .map_err(text)?;
    server_linker
        .func_wrap("h", "reply", |mut caller: Caller<'_, i32>, value: i32| {
            *caller.data_mut() = value;
        })
        .map_err(text)?;
    let instance = server_linker
        .instantiate_and_start(&mut server_store, &server)
        .map_err(text)?;
    let serve = instance
        .get_typed_func::<(), ()>(&server_store, "serve")
        .map_err(text)?;
    let handle = instance
        .get_typed_func::<i32, i32>(&server_store, "handle")
        .map_err(text)?;
    let parked = match serve.call_resumable(&mut server_store, ()).map_err(text)? {
        TypedResumableCall::HostTrap(parked) => parked,
        _ => return Err("the server did not park in receive".into()),
    };

    let mut store = Store::new(
        &engine,
        Server {
            store: server_store,
            parked: Some(parked),
            handle,
            upcall,
        },
    );
    if fuel {
        store.set_fuel(u64::MAX).map_err(text)?;
    }
    let mut linker = Linker::<Server>::new(&engine);
    linker
        .func_wrap(
            "h",
            "call",
            |mut caller: Caller<'_, Server>, request: i32| -> Result<i32, Error> {
                let server = caller.data_mut();
                if server.upcall {
                    return match server.handle.call_resumable(&mut server.store, request)? {
                        TypedResumableCall::Finished(reply) => Ok(reply),
                        _ => Err(Error::new("the handler did not finish")),
                    };
                }
                let parked = server
                    .parked
                    .take()
                    .ok_or_else(|| Error::new("no server"))?;
                match parked.resume(&mut server.store, &[Val::I32(request)])? {
                    TypedResumableCall::HostTrap(parked) => server.parked = Some(parked),
                    _ => return Err(Error::new("the server left its loop")),
                }
                Ok(*server.store.data())
            },
        )
        .map_err(text)?;
    let instance = linker
        .instantiate_and_start(&mut store, &client)
        .map_err(text)?;
    let run = instance
        .get_typed_func::<i32, i32>(&store, "run")
        .map_err(text)?;
    let (wall, cpu) = (Instant::now(), cpu_ns());
    let sum = run.call(&mut store, round_trips).map_err(text)?;
    let wall_ns = wall.elapsed().as_nanos() as f64;
    let cpu_ns = cpu
        .zip(cpu_ns())
        .map(|(before, after)| after.saturating_sub(before) as f64);
    Ok(Measured {
        sum,
        wall_ns,
        cpu_ns,
    })
}

fn main() -> ExitCode {
    let mut fuel = false;
    let mut upcall = false;
    let mut round_trips = 1_000_000i32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fuel" => fuel = true,
            "--upcall" => upcall = true,
            "--round-trips" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => round_trips = n,
                _ => {
                    eprintln!("--round-trips takes a positive number");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("usage: ipc-floor [--fuel] [--upcall] [--round-trips N]");
                return ExitCode::from(2);
            }
        }
    }
    let measured = match run(fuel, upcall, round_trips) {
        Ok(measured) => measured,
        Err(error) => {
            eprintln!("ipc-floor: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Each round trip returns its request plus one: N..1 plus N.
    let n = i64::from(round_trips);
    let expected = (n * (n + 1) / 2 + n) as i32;
    if measured.sum != expected {
        eprintln!(
            "ipc-floor: replies summed to {}, expected {expected}",
            measured.sum
        );
        return ExitCode::FAILURE;
    }
    let per = |ns: f64| ns / f64::from(round_trips);
    println!("wall_ns_per_round_trip={:.1}", per(measured.wall_ns));
    if let Some(cpu) = measured.cpu_ns {
        println!("cpu_ns_per_round_trip={:.1}", per(cpu));
    }
    ExitCode::SUCCESS
}
