//! test-quitter: takes one call on its endpoint and exits without answering.
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::{Endpoint, Timeout};

atoll_sdk::entry!(main);

fn main() {
    let mut buffer = [0u8; 64];
    match Endpoint::from_handle(1).receive(&mut buffer, Timeout::Forever) {
        Ok(received) => atoll_sdk::println!(
            "took a call (reply expected: {}) and quits",
            received.reply.is_some()
        ),
        Err(error) => atoll_sdk::println!("receive failed: {error}"),
    }
}
