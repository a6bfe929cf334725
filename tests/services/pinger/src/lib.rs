//! test-pinger: pings every endpoint it uses (handles 1, 2, ... until the kernel
//! says the handle is bad) and reports how many answered correctly.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{CallError, Endpoint, Error, println};

atoll_sdk::entry!(main);

fn main() {
    let started = atoll_sdk::time();
    let (mut pinged, mut answered) = (0u32, 0u32);
    for handle in 1.. {
        let endpoint = Endpoint::from_handle(handle);
        match endpoint.request::<_, Response>(&Request::Ping(handle as u64)) {
            Err(CallError::Kernel(Error::BadHandle)) => break,
            Ok(Response::Pong(number)) if number == handle as u64 => answered += 1,
            other => println!("handle {handle}: {other:?}"),
        }
        pinged += 1;
    }
    let millis = (atoll_sdk::time() - started) / 1_000_000;
    println!("{answered} of {pinged} services answered a ping ({millis} ms)");
}
