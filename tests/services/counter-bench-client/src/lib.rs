//! test-counter-bench-client: a finite numbered request stream for the hosted
//! swap benchmark: 2,000 pings, one every 100 us, then a line with how many
//! were answered with the right count.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

const REQUESTS: u64 = 2000;

fn main() {
    let counter = Endpoint::from_handle(1);
    let mut wrong = 0u64;
    for number in 1..=REQUESTS {
        match counter.request::<_, Response>(&Request::Ping(number)) {
            Ok(Response::Pong(answer)) if answer % 1_000_000 == number => {}
            _ => wrong += 1,
        }
        atoll_sdk::sleep(100_000);
    }
    println!("bench: swap_requests_failed={wrong}");
}
