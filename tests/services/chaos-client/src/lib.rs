//! test-chaos-client: a numbered request stream for the fault campaign
//! (`image-builder chaos`, docs/reliability.md).
//!
//! Granted `steady`, it is the campaign's uninvolved client: it calls the
//! server that no fault is injected into, and every answer must be its own
//! request (number and all), so a lost, duplicated, reordered or foreign
//! answer shows as a wrong one. Granted `victim-a`..`victim-c` instead, it is
//! an involved caller: it calls the victims in turn and counts answers,
//! errors (a faulted or killed victim: `PeerGone`) and garbage answers.
//! Either way it reports its counts to the supervisor (`chaos`) every
//! [`REPORT_EVERY`] requests, with a call whose answer says whether to go on;
//! the supervisor's campaign notices a client that stops reporting (a hang).
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::{Endpoint, println};
use targets::Targets;

atoll_sdk::entry!(main);

/// Requests between two progress reports.
const REPORT_EVERY: u64 = 32;
/// The roles in a progress report.
const ROLE_CALLER: u8 = 1;
const ROLE_STREAM: u8 = 2;
/// Wrong answers of the stream logged in full (all are counted).
const LOGGED: u64 = 5;

#[derive(Default)]
struct Counts {
    served: u64,
    failed: u64,
    wrong: u64,
}

fn main() {
    let Ok(chaos) = Endpoint::lookup("chaos") else {
        println!("no `chaos` endpoint");
        return;
    };
    let mut granted = [None; 3];
    let role = if let Ok(steady) = Endpoint::lookup("steady") {
        granted[0] = Some(steady);
        ROLE_STREAM
    } else {
        for (target, name) in granted.iter_mut().zip(["victim-a", "victim-b", "victim-c"]) {
            *target = Endpoint::lookup(name).ok();
        }
        ROLE_CALLER
    };
    let targets = Targets::new(granted);
    if targets.is_empty() {
        println!("no endpoint to call");
        return;
    }
    let mut counts = Counts::default();
    let mut number: u64 = 0;
    loop {
        number += 1;
        let target = targets.pick(number);
        let mut request = [0u8; 16];
        request[1..9].copy_from_slice(&number.to_le_bytes());
        request[9] = role;
        let mut reply = [0u8; 64];
        match target.call(&request, &mut reply) {
            Ok(answer) if answer == request => counts.served += 1,
            Ok(answer) => {
                counts.wrong += 1;
                if role == ROLE_STREAM && counts.wrong <= LOGGED {
                    println!("stream: request {number} got a wrong answer {answer:?}");
                }
            }
            Err(error) => {
                counts.failed += 1;
                if role == ROLE_STREAM && counts.failed <= LOGGED {
                    println!("stream: request {number} failed: {error}");
                }
            }
        }
        if number.is_multiple_of(REPORT_EVERY) && !report(chaos, role, &counts, false) {
            break;
        }
    }
    report(chaos, role, &counts, true);
    println!(
        "{} requests: {} answered, {} failed, {} wrong",
        number, counts.served, counts.failed, counts.wrong
    );
}

/// Tells the supervisor the counts; returns whether to go on.
fn report(chaos: Endpoint, role: u8, counts: &Counts, last: bool) -> bool {
    let mut message = [0u8; 28];
    message[0] = 4;
    message[1] = role;
    message[2] = u8::from(last);
    message[4..12].copy_from_slice(&counts.served.to_le_bytes());
    message[12..20].copy_from_slice(&counts.failed.to_le_bytes());
    message[20..28].copy_from_slice(&counts.wrong.to_le_bytes());
    let mut answer = [0u8; 8];
    matches!(chaos.call(&message, &mut answer), Ok([0]))
}

/// The endpoints this client calls, in turn.
mod targets {
    use atoll_sdk::Endpoint;

    pub struct Targets {
        endpoints: [Endpoint; 3],
        count: usize,
    }

    impl Targets {
        pub fn new(granted: [Option<Endpoint>; 3]) -> Targets {
            let mut endpoints = [Endpoint::from_handle(0); 3];
            let mut count = 0;
            for endpoint in granted.into_iter().flatten() {
                endpoints[count] = endpoint;
                count += 1;
            }
            Targets { endpoints, count }
        }

        pub fn is_empty(&self) -> bool {
            self.count == 0
        }

        /// The endpoint for request `number`.
        pub fn pick(&self, number: u64) -> Endpoint {
            self.endpoints[(number % self.count as u64) as usize]
        }
    }
}
