//! The console protocol: what the console service serves, and what the WASI
//! shim sends for `fd_read` on stdin (a WASI program that `uses` [`ENDPOINT`]
//! reads its stdin from it). One definition for the console service and its
//! clients.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

pub const ENDPOINT: &str = "console";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Writes text as is (no name prefix, no added newline).
    Write(String),
    /// Waits until input is available, then answers up to `max` bytes.
    Read { max: u32 },
    /// Answers at once with up to `max` bytes of buffered input, perhaps none
    /// (`top` asks between redraws whether a key was pressed).
    Poll { max: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Done,
    Input(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Another `Read` is already waiting.
    Busy,
}
