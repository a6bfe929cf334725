//! test-ponger: answers echo-protocol pings on its first provided endpoint
//! (handle 1), whatever that endpoint is called.
#![no_std]
#![forbid(unsafe_code)]

use atoll_protocols::echo::{Request, Response};
use atoll_sdk::Endpoint;

atoll_sdk::entry!(main);

fn main() {
    atoll_sdk::serve(
        &Endpoint::from_handle(1),
        |request: Request| match request {
            Request::Ping(number) => Response::Pong(number),
            Request::Echo(text) => Response::Echo(text),
        },
    )
}
