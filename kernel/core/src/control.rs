//! The host control channel: requests a developer's machine sends to a running
//! kernel (over a second serial port), parsed here, acted on by the kernel.
//!
//! A request frame is the 4 bytes `ASWP`, the service name (little-endian
//! `u16` length, then UTF-8), then the module (little-endian `u32` length, then
//! the bytes). A trace request is the 4 bytes `ATRC` and one byte: 0 turns
//! tracing off, 1 on, 2 asks for the ring (answered with the dump lines of
//! [`atoll_abi::trace`]). Bytes that do not start a frame are skipped, so a
//! channel that starts mid-stream resynchronises at the next frame. Replies
//! are text lines.

use alloc::string::String;
use alloc::vec::Vec;

/// The first bytes of a swap request.
pub const SWAP_MAGIC: [u8; 4] = *b"ASWP";
/// The first bytes of a trace request.
pub const TRACE_MAGIC: [u8; 4] = *b"ATRC";
/// The largest module a request may carry.
pub use atoll_abi::MAX_MODULE_LEN;
const MAX_NAME_LEN: usize = 64;

/// A request from the host.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Replace the running service `service` with `module`.
    Swap { service: String, module: Vec<u8> },
    /// Turn tracing on or off.
    Tracing(bool),
    /// Send the trace ring.
    TraceDump,
}

/// Encodes a trace request: `Some(on)` turns tracing on or off, `None` asks
/// for the ring.
#[must_use]
pub fn encode_trace(request: Option<bool>) -> Vec<u8> {
    let op = match request {
        Some(false) => 0,
        Some(true) => 1,
        None => 2,
    };
    let mut frame = TRACE_MAGIC.to_vec();
    frame.push(op);
    frame
}

/// Why a swap was refused: the error code a supervisor's `swap` returns, and
/// the reason, which the host's answer line carries too
/// (`error: swap of NAME: invalid module: ...`).
#[derive(Debug, PartialEq, Eq)]
pub struct SwapRefusal {
    pub error: atoll_abi::Error,
    /// What the module failed (for [`atoll_abi::Error::InvalidModule`]).
    pub reason: Option<String>,
}

impl From<atoll_abi::Error> for SwapRefusal {
    fn from(error: atoll_abi::Error) -> Self {
        SwapRefusal {
            error,
            reason: None,
        }
    }
}

impl From<SwapRefusal> for atoll_abi::Error {
    fn from(refusal: SwapRefusal) -> Self {
        refusal.error
    }
}

impl core::fmt::Display for SwapRefusal {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.reason {
            Some(reason) => write!(formatter, "{}: {reason}", self.error),
            None => write!(formatter, "{}", self.error),
        }
    }
}

/// Accumulates bytes and cuts them into requests.
#[derive(Debug, Default)]
pub struct ControlChannel {
    buffer: Vec<u8>,
}

/// Encodes a swap request (what `image-builder push` sends).
#[must_use]
pub fn encode_swap(service: &str, module: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(module.len() + service.len() + 10);
    frame.extend_from_slice(&SWAP_MAGIC);
    frame.extend_from_slice(&(service.len() as u16).to_le_bytes());
    frame.extend_from_slice(service.as_bytes());
    frame.extend_from_slice(&(module.len() as u32).to_le_bytes());
    frame.extend_from_slice(module);
    frame
}

impl ControlChannel {
    /// Takes received bytes; returns the requests they complete, or a
    /// description of each malformed one (which is dropped).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Request, String>> {
        self.buffer.extend_from_slice(bytes);
        let mut requests = Vec::new();
        loop {
            // Skip to the next frame start.
            match self
                .buffer
                .windows(SWAP_MAGIC.len())
                .position(|window| window == SWAP_MAGIC || window == TRACE_MAGIC)
            {
                Some(start) => {
                    self.buffer.drain(..start);
                }
                None => {
                    // Keep a tail that could be the start of the magic.
                    let keep = self.buffer.len().min(SWAP_MAGIC.len() - 1);
                    let cut = self.buffer.len() - keep;
                    self.buffer.drain(..cut);
                    return requests;
                }
            }
            match self.parse() {
                Parsed::Incomplete => return requests,
                Parsed::Done(length, request) => {
                    self.buffer.drain(..length);
                    requests.push(request);
                }
            }
        }
    }

    fn parse(&self) -> Parsed {
        let header = SWAP_MAGIC.len();
        if self.buffer.get(..header) == Some(&TRACE_MAGIC[..]) {
            return match self.buffer.get(header).copied() {
                None => Parsed::Incomplete,
                Some(0) => Parsed::Done(header + 1, Ok(Request::Tracing(false))),
                Some(1) => Parsed::Done(header + 1, Ok(Request::Tracing(true))),
                Some(2) => Parsed::Done(header + 1, Ok(Request::TraceDump)),
                // Only the magic is dropped: the byte after it may start the
                // next request.
                Some(_) => Parsed::Done(header, Err(String::from("error: unknown trace request"))),
            };
        }
        let Some(&[a, b]) = self.buffer.get(header..header + 2) else {
            return Parsed::Incomplete;
        };
        let name_len = usize::from(u16::from_le_bytes([a, b]));
        if name_len > MAX_NAME_LEN {
            return Parsed::Done(header, Err(String::from("error: service name too long")));
        }
        let name_end = header + 2 + name_len;
        let Some(&[c, d, e, f]) = self.buffer.get(name_end..name_end + 4) else {
            return Parsed::Incomplete;
        };
        let module_len = u32::from_le_bytes([c, d, e, f]) as usize;
        if module_len > MAX_MODULE_LEN {
            return Parsed::Done(header, Err(String::from("error: module too large")));
        }
        let module_start = name_end + 4;
        let Some(module) = self.buffer.get(module_start..module_start + module_len) else {
            return Parsed::Incomplete;
        };
        let length = module_start + module_len;
        let name = self.buffer.get(header + 2..name_end).unwrap_or(&[]);
        match core::str::from_utf8(name) {
            Ok(service) => Parsed::Done(
                length,
                Ok(Request::Swap {
                    service: String::from(service),
                    module: module.to_vec(),
                }),
            ),
            Err(_) => Parsed::Done(
                length,
                Err(String::from("error: service name is not UTF-8")),
            ),
        }
    }
}

enum Parsed {
    Incomplete,
    /// Bytes consumed, and the request (or why it is malformed).
    Done(usize, Result<Request, String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let frame = encode_swap("echo", b"\0asm module bytes");
        for split in 0..frame.len() {
            let mut channel = ControlChannel::default();
            let mut requests = channel.feed(&frame[..split]);
            requests.extend(channel.feed(&frame[split..]));
            assert_eq!(
                requests,
                vec![Ok(Request::Swap {
                    service: "echo".into(),
                    module: b"\0asm module bytes".to_vec()
                })],
                "split at {split}"
            );
        }
    }

    #[test]
    fn trace_requests_parse_between_swaps() {
        let mut bytes = encode_trace(Some(true));
        bytes.extend(b"xx");
        bytes.extend(encode_swap("a", b"x"));
        bytes.extend(encode_trace(None));
        bytes.extend(encode_trace(Some(false)));
        bytes.extend(b"ATRC\x09");
        // A bad op byte costs only its magic: the request right after it
        // still counts.
        bytes.extend(b"ATRC");
        bytes.extend(encode_trace(Some(true)));
        for split in 0..bytes.len() {
            let mut channel = ControlChannel::default();
            let mut requests = channel.feed(&bytes[..split]);
            requests.extend(channel.feed(&bytes[split..]));
            assert_eq!(requests.len(), 7, "split at {split}: {requests:?}");
            assert_eq!(requests[5], Err("error: unknown trace request".into()));
            assert_eq!(requests[6], Ok(Request::Tracing(true)));
            assert_eq!(requests[0], Ok(Request::Tracing(true)));
            assert!(matches!(&requests[1], Ok(Request::Swap { service, .. }) if service == "a"));
            assert_eq!(requests[2], Ok(Request::TraceDump));
            assert_eq!(requests[3], Ok(Request::Tracing(false)));
            assert_eq!(requests[4], Err("error: unknown trace request".into()));
        }
    }

    #[test]
    fn garbage_is_skipped_and_bad_frames_reported() {
        let mut channel = ControlChannel::default();
        let mut bytes = b"noise AS".to_vec();
        bytes.extend(encode_swap("a", b"x"));
        let mut oversized = SWAP_MAGIC.to_vec();
        oversized.extend(200u16.to_le_bytes());
        bytes.extend(oversized);
        bytes.extend(encode_swap("b", b"yy"));
        let requests = channel.feed(&bytes);
        assert_eq!(requests.len(), 3, "{requests:?}");
        assert!(matches!(&requests[0], Ok(Request::Swap { service, .. }) if service == "a"));
        assert_eq!(requests[1], Err("error: service name too long".into()));
        assert!(matches!(&requests[2], Ok(Request::Swap { service, .. }) if service == "b"));
    }
}
