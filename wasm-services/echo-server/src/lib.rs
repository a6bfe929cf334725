//! echo-server: serves the echo protocol on the `echo` endpoint.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{ENDPOINT, Request, Response};
use atoll_sdk::Endpoint;

atoll_sdk::entry!(main);

fn main() {
    let endpoint = match Endpoint::lookup(ENDPOINT) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            atoll_sdk::println!("no `{ENDPOINT}` endpoint: {error}");
            return;
        }
    };
    atoll_sdk::serve(&endpoint, |request: Request| match request {
        Request::Echo(text) => Response::Echo(text),
        Request::Ping(number) => Response::Pong(number),
    })
}
