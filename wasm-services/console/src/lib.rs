//! console: the serial console driver. It owns the input side of COM1 (the
//! 16550 UART at port 0x3f8, IRQ 4) and serves the `console` protocol
//! (`atoll_protocols::console`) on its endpoint:
//!
//! - `Write(text)` writes the text to the UART as is, turning each `\n` into
//!   `\r\n`, and answers `Done`.
//! - `Read { max }` answers up to `max` bytes of typed input at once if any is
//!   buffered; otherwise the reply waits until input arrives. One reader may
//!   wait at a time; another gets `Busy` (the same service asking again
//!   replaces its own earlier wait, which can only be stale: a caller blocked
//!   in `call` cannot ask twice, so it was restarted meanwhile).
//! - `Poll { max }` answers at once with up to `max` buffered bytes, perhaps
//!   none.
//!
//! Input is interrupt driven: the driver turns on the UART's received-data
//! interrupt and receives each IRQ 4 as a notification from the kernel on its
//! first provided endpoint (so `console` must be the first, or only, entry of
//! its `provides`). It keeps up to [`input::CAPACITY`] unread bytes, dropping
//! the oldest beyond that.
//!
//! What it is not: a terminal. It does no echo, line editing or translation of
//! input (the shell does that), and it does not own COM1's output: the kernel
//! keeps writing its own log lines there, so the two interleave.
//!
//! Grants it needs: `provides = ["console"]`, `io-ports = ["0x3f8-0x3ff"]`,
//! `irqs = [4]`.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(target_family = "wasm"),
    allow(
        dead_code,
        reason = "the driver runs on wasm32 only; host builds run the unit tests"
    )
)]

extern crate alloc;

mod input;

#[cfg(target_family = "wasm")]
mod driver;

#[cfg(target_family = "wasm")]
atoll_sdk::entry!(driver::main);
