//! supervisor: the policy half of supervision. The kernel reports each service
//! that exits or faults; this service decides, per the service's restart
//! policy from `system.toml`:
//!
//! - `permanent`: restart whenever it ends; `transient`: restart when it
//!   faults; `temporary`: never restart.
//! - Intensity: more than `max-restarts` restarts within `restart-window-ms`
//!   escalates: the service is stopped for good and the escalation logged.
//! - A service not restarted is stopped, so that its endpoints close and its
//!   callers get `PeerGone` instead of waiting.
//!
//! It also serves the `admin` protocol (`atoll_protocols::admin`) on the same
//! endpoint, for the services granted `uses = ["supervisor"]` (the shell):
//! `Stop`, `Start` and `Restart` a service by name, and `SwapFromFile`, which
//! reads a module from the `fs` endpoint (if the supervisor is granted one)
//! and hot-swaps it in. Requests sent without `call` are carried out but get
//! no answer.
//!
//! What it is not: a service manager. It keeps no list of services of its
//! own (the kernel knows them), starts nothing at boot, and administration
//! requests bypass the restart policy: a service stopped on request stays
//! stopped until someone starts it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use atoll_protocols::{admin, fs};
use atoll_sdk::supervision::{self, Event, KERNEL_SENDER, Outcome, Strategy};
use atoll_sdk::{CallError, Endpoint, Error, Received, Timeout, println};

/// The largest module `swap` takes (docs/abi.md).
const MAX_MODULE_LEN: u64 = atoll_sdk::MAX_MODULE_LEN as u64;

atoll_sdk::entry!(main);

fn main() {
    let reports = Endpoint::from_handle(1);
    // Restart times per service, oldest first, within the service's window.
    let mut history: BTreeMap<String, VecDeque<u64>> = BTreeMap::new();
    let mut buffer = alloc::vec![0u8; atoll_sdk::MAX_MESSAGE_LEN];
    println!("supervising");
    loop {
        let Ok(received) = reports.receive(&mut buffer, Timeout::Forever) else {
            continue;
        };
        if received.sender != KERNEL_SENDER {
            administer(received);
            continue;
        }
        match postcard::from_bytes::<Event>(received.message) {
            Ok(event) => handle(&mut history, &event),
            Err(_) => println!("malformed report from the kernel"),
        }
    }
}

fn handle(history: &mut BTreeMap<String, VecDeque<u64>>, event: &Event) {
    let name = event.service.as_str();
    let restart = match (&event.policy.strategy, &event.outcome) {
        (Strategy::Permanent, _)
        | (Strategy::Transient, Outcome::Faulted(_) | Outcome::Failed(_)) => true,
        (Strategy::Transient, Outcome::Exited) | (Strategy::Temporary, _) => false,
    };
    let what = &event.outcome;
    if !restart {
        println!("{name} {what}; not restarted ({:?})", event.policy.strategy);
        let _ = supervision::stop(name);
        return;
    }
    let window_ns = event.policy.window_ms.saturating_mul(1_000_000);
    let times = history.entry(String::from(name)).or_default();
    while times
        .front()
        .is_some_and(|&at| event.at_ns.saturating_sub(at) > window_ns)
    {
        times.pop_front();
    }
    if times.len() >= event.policy.max_restarts as usize {
        println!(
            "escalation: {name} {what} after {} restarts within {} ms; stopping it",
            times.len(),
            event.policy.window_ms
        );
        let _ = supervision::stop(name);
        return;
    }
    times.push_back(event.at_ns);
    match supervision::restart(name) {
        Ok(()) => println!("{name} {what}; restarted"),
        Err(error) => println!("{name} {what}; restart failed: {error}"),
    }
}

/// Carries out an `admin` request from another service and answers it (if it
/// was a call). A request that does not decode gets an empty answer. A caller
/// gone by the time of the answer (stopped or restarted, maybe by this very
/// request) is counted by the SDK, not logged.
fn administer(received: Received<'_>) {
    let Ok(request) = received.decode::<admin::Request>() else {
        return;
    };
    let response = match carry_out(&request.message) {
        Ok(()) => admin::Response::Done,
        Err(message) => admin::Response::Error(message),
    };
    request.reply(&response).report();
}

fn carry_out(request: &admin::Request) -> Result<(), String> {
    match request {
        admin::Request::Stop(name) => {
            supervision::stop(name).map_err(|error| control_error(name, error, "stop"))?;
            println!("{name} stopped on request");
        }
        admin::Request::Start(name) => {
            supervision::start(name).map_err(|error| control_error(name, error, "start"))?;
            println!("{name} started on request");
        }
        admin::Request::Restart(name) => {
            supervision::restart(name).map_err(|error| control_error(name, error, "restart"))?;
            println!("{name} restarted on request");
        }
        admin::Request::Trace(on) => {
            supervision::trace(*on)
                .map_err(|error| alloc::format!("cannot turn tracing on or off: {error}"))?;
            println!("tracing {} on request", if *on { "on" } else { "off" });
        }
        admin::Request::SwapFromFile { name, path } => {
            let module = read_file(path)?;
            supervision::swap(name, &module).map_err(|error| swap_error(name, error))?;
            println!(
                "{name} swapping to {path} ({} bytes) on request",
                module.len()
            );
        }
    }
    Ok(())
}

fn control_error(name: &str, error: Error, operation: &str) -> String {
    match (error, operation) {
        (Error::NotFound, _) => alloc::format!("no service called `{name}`"),
        (Error::NotPermitted, _) => String::from("the supervisor cannot control itself"),
        (Error::InvalidArgument, "start") => {
            alloc::format!("`{name}` is running already, or failed to load")
        }
        (Error::InvalidArgument, _) => alloc::format!("`{name}` failed to load again"),
        (error, _) => alloc::format!("cannot {operation} `{name}`: {error}"),
    }
}

fn swap_error(name: &str, error: Error) -> String {
    match error {
        Error::NotFound => alloc::format!("no service called `{name}`"),
        Error::NotPermitted => String::from("the supervisor cannot swap itself"),
        Error::InvalidModule => String::from(
            "not a valid service module (invalid Wasm, unknown imports, or no `_start`/`memory`)",
        ),
        Error::InvalidArgument => alloc::format!("`{name}` is not running"),
        Error::TooLarge => String::from("not enough kernel memory for the new module"),
        error => alloc::format!("cannot swap `{name}`: {error}"),
    }
}

/// The whole file at `path`, read from the `fs` endpoint.
fn read_file(path: &str) -> Result<Vec<u8>, String> {
    let fs = Endpoint::lookup(fs::ENDPOINT).map_err(|_| String::from("no file system"))?;
    let call = |request: &fs::Request| -> Result<fs::Response, String> {
        match fs.request(request) {
            Ok(fs::Response::Error(error)) => Err(alloc::format!("{path}: {}", fs_error(&error))),
            Ok(response) => Ok(response),
            Err(CallError::Kernel(Error::PeerGone)) => {
                Err(String::from("the file system has stopped"))
            }
            Err(error) => Err(alloc::format!("file system: {error}")),
        }
    };
    let size = match call(&fs::Request::Open {
        path: String::from(path),
    })? {
        fs::Response::Entry(entry) if entry.directory => {
            return Err(alloc::format!("{path}: is a directory"));
        }
        fs::Response::Entry(entry) => entry.size,
        _ => return Err(String::from("unexpected answer from the file system")),
    };
    if size > MAX_MODULE_LEN {
        return Err(alloc::format!(
            "{path}: {size} bytes is more than a module may have (16 MiB)"
        ));
    }
    let mut module = Vec::new();
    module
        .try_reserve_exact(usize::try_from(size).unwrap_or(usize::MAX))
        .map_err(|_| alloc::format!("{path}: not enough memory for {size} bytes"))?;
    loop {
        let request = fs::Request::Read {
            path: String::from(path),
            offset: module.len() as u64,
            len: fs::MAX_DATA,
        };
        let fs::Response::Data(data) = call(&request)? else {
            return Err(String::from("unexpected answer from the file system"));
        };
        if module.len() as u64 + data.len() as u64 > MAX_MODULE_LEN {
            return Err(alloc::format!(
                "{path}: more than a module may have (16 MiB)"
            ));
        }
        module.extend_from_slice(&data);
        if data.len() < fs::MAX_DATA as usize {
            return Ok(module);
        }
    }
}

fn fs_error(error: &fs::Error) -> &str {
    match error {
        fs::Error::NotFound => "not found",
        fs::Error::IsADirectory => "is a directory",
        fs::Error::NotADirectory => "a part of the path is not a directory",
        fs::Error::Device => "disk error",
        fs::Error::NoVolume => "no FAT volume mounted",
        fs::Error::Exists => "already exists",
        fs::Error::InvalidName => "invalid name",
        fs::Error::NoSpace => "no space left",
        fs::Error::NotEmpty => "directory not empty",
        fs::Error::NameTooLong => "name too long",
        fs::Error::NotStaged => "the pieces of a staged write were dropped",
        fs::Error::Other(text) => text,
    }
}
