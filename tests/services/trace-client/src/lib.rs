//! test-trace-client: pings `echo` for ever, one ping every 20 ms, and says
//! so every 25 pings. Against test-crasher (which dies on every fourth ping)
//! under a supervisor, it keeps a call/reply exchange and a fault and restart
//! going for `image-builder trace` to record.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, println, sleep};

atoll_sdk::entry!(main);

fn main() {
    let echo = Endpoint::from_handle(1);
    let (mut answered, mut failed) = (0u64, 0u64);
    let mut number = 0u64;
    loop {
        number += 1;
        match echo.request::<_, Response>(&Request::Ping(number)) {
            Ok(Response::Pong(pong)) if pong == number => answered += 1,
            _ => failed += 1,
        }
        if number % 25 == 1 {
            println!("pinging: {answered} answered, {failed} failed");
        }
        sleep(20_000_000);
    }
}
