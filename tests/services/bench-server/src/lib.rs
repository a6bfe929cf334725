//! test-bench-server: the far end of the IPC benchmark, on handle 1 (`bench`).
//! Calls are answered with their request; messages from `send` are taken and
//! dropped. One queue serves both, so a call made after a stream of sends is
//! answered only once every send before it has been taken (FIFO). Served by
//! `serve_raw`: a call switched to it directly runs the handler by upcall,
//! any other message comes through its loop (`reply_receive`).
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::{Endpoint, serve_raw};

atoll_sdk::entry!(main);

fn main() {
    serve_raw(&Endpoint::from_handle(1), |received, answer| {
        received.reply?;
        let echo = answer.get_mut(..received.message.len())?;
        echo.copy_from_slice(received.message);
        Some(echo.len())
    });
}
