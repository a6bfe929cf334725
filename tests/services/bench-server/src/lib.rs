//! test-bench-server: the far end of the IPC benchmark, on handle 1 (`bench`).
//! Calls are answered with their request; messages from `send` are taken and
//! dropped. One queue serves both, so a call made after a stream of sends is
//! answered only once every send before it has been taken (FIFO).
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::{Endpoint, Timeout};

atoll_sdk::entry!(main);

fn main() {
    let bench = Endpoint::from_handle(1);
    let mut buffer = [0u8; 256];
    loop {
        let Ok(received) = bench.receive(&mut buffer, Timeout::Forever) else {
            continue;
        };
        let length = received.message.len();
        if let (Some(token), Some(message)) = (received.reply, buffer.get(..length)) {
            let _ = token.reply(message);
        }
    }
}
