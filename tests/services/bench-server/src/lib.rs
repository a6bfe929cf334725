//! test-bench-server: the far end of the IPC benchmark, on handle 1 (`bench`).
//! Calls are answered with their request; messages from `send` are taken and
//! dropped. One queue serves both, so a call made after a stream of sends is
//! answered only once every send before it has been taken (FIFO).
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::{Endpoint, ReplyToken, Timeout};

atoll_sdk::entry!(main);

fn main() {
    let bench = Endpoint::from_handle(1);
    let mut buffer = [0u8; 256];
    // The last call's request, answered (echoed) with the next receive, in
    // one kernel call (`reply_receive`); after a send, plain `receive`.
    let mut answer = [0u8; 256];
    let mut pending: Option<(ReplyToken, usize)> = None;
    loop {
        let received = match pending.take() {
            Some((token, length)) => {
                let echo = answer.get(..length).unwrap_or_default();
                bench
                    .reply_receive(token, echo, &mut buffer, Timeout::Forever)
                    .1
            }
            None => bench.receive(&mut buffer, Timeout::Forever),
        };
        let Ok(received) = received else {
            continue;
        };
        let length = received.message.len();
        if let (Some(token), Some(echo)) = (received.reply, answer.get_mut(..length)) {
            echo.copy_from_slice(received.message);
            pending = Some((token, length));
        }
    }
}
