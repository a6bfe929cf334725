//! test-crasher: an echo server that panics on every ping divisible by 4.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};

atoll_sdk::entry!(main);

fn main() {
    atoll_sdk::serve_named("echo", |request: Request| match request {
        Request::Ping(number) if number % 4 == 0 => panic!("ping {number} is poison"),
        Request::Ping(number) => Response::Pong(number),
        Request::Echo(text) => Response::Echo(text),
    });
}
