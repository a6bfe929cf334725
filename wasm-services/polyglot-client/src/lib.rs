//! polyglot-client: a Rust client of echo servers written in other languages.
//!
//! Calls each echo server it was granted (`echo-c`, `echo-zig`, `echo-as`,
//! `echo-wat`) over the typed echo protocol and checks every reply: a text
//! with multi-byte UTF-8, numbers whose varints take one to ten bytes, and a
//! malformed request (an unknown variant), which a server must answer rather
//! than leave the caller waiting.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use atoll_protocols::echo::{Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

/// The servers, by endpoint name, in the order they are tried.
const SERVERS: [&str; 4] = ["echo-c", "echo-zig", "echo-as", "echo-wat"];

fn main() {
    let mut correct = 0;
    let mut granted = 0;
    for name in SERVERS {
        let Ok(endpoint) = Endpoint::lookup(name) else {
            continue;
        };
        granted += 1;
        match check(endpoint) {
            Ok(calls) => {
                correct += 1;
                println!("{name}: {calls} typed replies correct");
            }
            Err(problem) => println!("{name}: WRONG: {problem}"),
        }
    }
    println!("{correct} of {granted} servers answered correctly");
}

/// Makes every call of the check against one server; returns how many.
fn check(endpoint: Endpoint) -> Result<usize, String> {
    let mut calls = 0;
    for text in ["hello", "", "grüße, 世界 ✓"] {
        let request = Request::Echo(text.to_string());
        match endpoint.request::<_, Response>(&request) {
            Ok(Response::Echo(answer)) if answer == text => calls += 1,
            other => return Err(alloc::format!("Echo({text:?}) answered {other:?}")),
        }
    }
    for number in [0, 1, 127, 128, 300, 1 << 35, u64::MAX] {
        match endpoint.request::<_, Response>(&Request::Ping(number)) {
            Ok(Response::Pong(answer)) if answer == number => calls += 1,
            other => return Err(alloc::format!("Ping({number}) answered {other:?}")),
        }
    }
    // Variant 7 does not exist: any well-formed answer will do.
    let mut reply: Vec<u8> = alloc::vec![0; 256];
    match endpoint.call(&[7, 1, 2, 3], &mut reply) {
        Ok(_) => calls += 1,
        Err(error) => return Err(alloc::format!("malformed request: {error}")),
    }
    Ok(calls)
}
