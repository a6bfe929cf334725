//! test-crash-client: pings 1..=13 in turn and reports which were answered.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

fn main() {
    let echo = Endpoint::from_handle(1);
    let (mut answered, mut failed) = (Vec::new(), Vec::new());
    for number in 1..=13u64 {
        match echo.request::<_, Response>(&Request::Ping(number)) {
            Ok(Response::Pong(pong)) if pong == number => answered.push(number),
            _ => failed.push(number),
        }
    }
    println!("answered {answered:?}, failed {failed:?}");
}
