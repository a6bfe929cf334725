//! echo-client: calls the echo service a few times and reports the answers.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::ToString;
use atoll_protocols::echo::{ENDPOINT, Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

fn main() {
    let echo = match Endpoint::lookup(ENDPOINT) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            println!("no `{ENDPOINT}` endpoint: {error}");
            return;
        }
    };
    let request = Request::Echo("hello over IPC".to_string());
    match echo.request::<_, Response>(&request) {
        Ok(Response::Echo(text)) => println!("echo replied: {text}"),
        Ok(other) => println!("echo replied out of protocol: {other:?}"),
        Err(error) => println!("echo failed: {error}"),
    }
    let started = atoll_sdk::time();
    let mut answered = 0;
    for number in 1..=10u64 {
        if echo.request::<_, Response>(&Request::Ping(number)) == Ok(Response::Pong(number)) {
            answered += 1;
        }
    }
    let micros = (atoll_sdk::time() - started) / 1000;
    println!("10 pings, {answered} pongs in {micros} us");
}
