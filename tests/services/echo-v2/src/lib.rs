//! test-echo-v2: a second version of the echo server, told apart by its
//! answers: pings come back multiplied by 1,000.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{ENDPOINT, Request, Response};

atoll_sdk::entry!(main);

fn main() {
    atoll_sdk::log("echo v2 starting");
    atoll_sdk::serve_named(ENDPOINT, |request: Request| match request {
        Request::Echo(text) => Response::Echo(text),
        Request::Ping(number) => Response::Pong(number * 1000),
    });
}
