//! echo-server: serves the echo protocol on the `echo` endpoint.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{ENDPOINT, Request, Response};

atoll_sdk::entry!(main);

fn main() {
    atoll_sdk::serve_named(ENDPOINT, |request: Request| match request {
        Request::Echo(text) => Response::Echo(text),
        Request::Ping(number) => Response::Pong(number),
    });
}
