//! kv-client: counts visits in the key-value store and reads them back.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::{String, ToString};
use atoll_protocols::kv::{ENDPOINT, Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

fn main() {
    let kv = match Endpoint::lookup(ENDPOINT) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            println!("no `{ENDPOINT}` endpoint: {error}");
            return;
        }
    };
    let key = || "visits".to_string();
    let mut last = None;
    for _ in 0..3 {
        match kv.request::<_, Response>(&Request::Add {
            key: key(),
            delta: 1,
        }) {
            Ok(Response::Value(value)) => last = value,
            other => println!("add failed: {other:?}"),
        }
    }
    let _ = kv.request::<_, Response>(&Request::Put {
        key: "answer".to_string(),
        value: 42,
    });
    let answer = kv.request::<_, Response>(&Request::Get {
        key: "answer".to_string(),
    });
    let too_long: String = "k".repeat(100);
    let refused = kv.request::<_, Response>(&Request::Put {
        key: too_long,
        value: 1,
    });
    let keys = kv.request::<_, Response>(&Request::Len);
    println!("visits = {last:?}, answer = {answer:?}, long key: {refused:?}, keys: {keys:?}");
}
