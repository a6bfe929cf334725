//! shell: the interactive shell on the serial console. It reads keystrokes
//! from the console driver (`console` protocol), edits a line (echo,
//! Backspace/DEL, Ctrl-U, Ctrl-C, Up/Down history; other escape sequences are
//! ignored) and runs it:
//!
//! - `ps`, `stats`: the kernel's `info` records, as tables; `top`: CPU share,
//!   messages per second and memory, redrawn every second until a key;
//! - `trace on|off`: the kernel's trace ring, through the supervisor;
//! - `restart`, `stop`, `start`, `swap`: `admin` requests to the supervisor;
//! - `ls`, `cat`, `write`: the `fs` protocol (`write` replaces the whole file:
//!   it removes it, then writes the text and a newline);
//! - `lspci`: the `pci` protocol;
//! - `help`, `echo`.
//!
//! Grants: `uses = ["console", "supervisor", "fs", "pci"]`; only `console` is
//! required: the commands of a missing service answer with an error line.
//!
//! What it is not: a programming language. There are no pipes, variables,
//! quoting or scripts; one line runs one command, and a command runs to its
//! end (Ctrl-C only abandons the line being typed).
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(target_family = "wasm"),
    allow(
        dead_code,
        reason = "the service runs on wasm32 only; host builds run the unit tests"
    )
)]

extern crate alloc;

mod command;
mod editor;
mod format;
mod top;

#[cfg(target_family = "wasm")]
mod service;

#[cfg(target_family = "wasm")]
atoll_sdk::entry!(service::main);
