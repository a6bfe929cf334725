//! test-counter-client: a continuous numbered request stream: ping n, log the
//! answer as `n: version v, count c`, every 5 ms, for ever.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

fn main() {
    let counter = Endpoint::from_handle(1);
    let mut number = 0u64;
    loop {
        number += 1;
        match counter.request::<_, Response>(&Request::Ping(number)) {
            Ok(Response::Pong(answer)) => println!(
                "{number}: version {}, count {}",
                answer / 1_000_000,
                answer % 1_000_000
            ),
            other => println!("{number}: {other:?}"),
        }
        atoll_sdk::sleep(5_000_000);
    }
}
