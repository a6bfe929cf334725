//! test-caller: pings its first used endpoint twice and reports the outcomes.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

fn main() {
    let endpoint = Endpoint::from_handle(1);
    for attempt in 1..=2u64 {
        match endpoint.request::<_, Response>(&Request::Ping(attempt)) {
            Ok(response) => println!("call {attempt}: {response:?}"),
            Err(error) => println!("call {attempt} failed: {error}"),
        }
    }
}
