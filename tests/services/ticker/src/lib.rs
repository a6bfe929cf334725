//! test-ticker: pings the echo service every 20 ms, for ever, and logs each
//! answer, so that a swap of the server shows in its log.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

fn main() {
    let echo = Endpoint::from_handle(1);
    let mut number = 0u64;
    loop {
        number += 1;
        match echo.request::<_, Response>(&Request::Ping(number)) {
            Ok(Response::Pong(pong)) => println!("ping {number}: pong {pong}"),
            other => println!("ping {number}: {other:?}"),
        }
        atoll_sdk::sleep(20_000_000);
    }
}
