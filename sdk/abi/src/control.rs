//! The host control channel's requests: what a developer's machine sends to
//! a running kernel (`image-builder push` and `trace`, over the guest's second
//! serial port) and the kernel acts on. Replies are text lines
//! (docs/abi.md, "Host control channel").
//!
//! A frame is [`MAGIC`], the length of the rest (little-endian `u32`, at most
//! [`MAX_BODY_LEN`]), then a postcard-encoded [`Request`]. Bytes that do not
//! start a frame are skipped, so a channel that starts mid-stream
//! resynchronises at the next frame.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The first bytes of a frame.
pub const MAGIC: [u8; 4] = *b"ACTL";

/// The longest service name a swap request may carry.
pub const MAX_NAME_LEN: usize = 64;

/// The longest body of a frame: a swap of the largest module
/// ([`crate::MAX_MODULE_LEN`]) with the longest name, and their lengths.
pub const MAX_BODY_LEN: usize = crate::MAX_MODULE_LEN + MAX_NAME_LEN + 16;

/// The I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4`), where the
/// kernel writes an [`ExitCode`] to end a run.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// How a kernel run ended, as the kernel tells QEMU (image-builder maps it
/// to its own exit statuses 0, 3 and 1, docs/design.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Every service ended or waits for ever; none faulted or failed to load.
    Success = 0x10,
    /// The kernel itself failed: a panic, a CPU exception, no bootable bundle.
    Failure = 0x11,
    /// The kernel ran to its end, but a service faulted or failed to load.
    ServicesFailed = 0x12,
}

impl ExitCode {
    /// QEMU's exit status for this code: `(code << 1) | 1`.
    #[must_use]
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

/// A request from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Replace the running service `service` with `module`.
    Swap {
        service: &'a str,
        #[serde(borrow, with = "serde_bytes")]
        module: &'a [u8],
    },
    /// Turn the trace ring on or off.
    Tracing(bool),
    /// Send the trace ring (as the dump lines of [`crate::trace`]).
    TraceDump,
}

/// Encodes `request` as a frame. A body past 4 GiB gets the length
/// `u32::MAX`, which the kernel refuses as too large.
#[must_use]
pub fn encode(request: &Request<'_>) -> Vec<u8> {
    // Serializing into a Vec fails only if memory does.
    let body = postcard::to_allocvec(request).unwrap_or_default();
    let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(body.len() + 8);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The frame of a swap request (what `image-builder push` sends).
#[must_use]
pub fn encode_swap(service: &str, module: &[u8]) -> Vec<u8> {
    encode(&Request::Swap { service, module })
}

/// The frame of a trace request: `Some(on)` turns tracing on or off, `None`
/// asks for the ring.
#[must_use]
pub fn encode_trace(request: Option<bool>) -> Vec<u8> {
    encode(&match request {
        Some(on) => Request::Tracing(on),
        None => Request::TraceDump,
    })
}
