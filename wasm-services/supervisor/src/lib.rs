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
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use atoll_sdk::supervision::{self, Event, KERNEL_SENDER, Outcome, Strategy};
use atoll_sdk::{Endpoint, Timeout, println};

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
            println!("ignoring a message from service {}", received.sender);
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
    let what = match &event.outcome {
        Outcome::Exited => String::from("exited"),
        Outcome::Faulted(reason) => alloc::format!("faulted ({reason})"),
        Outcome::Failed(status) => alloc::format!("exited with status {status}"),
    };
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
