//! The host control channel: requests a developer's machine sends to a running
//! kernel (over a second serial port), cut from the byte stream here, acted on
//! by the kernel. The frame and the requests are [`atoll_abi::control`]'s;
//! replies are text lines.

use alloc::string::String;
use alloc::vec::Vec;
use atoll_abi::control::{MAGIC, MAX_BODY_LEN, MAX_NAME_LEN};

/// A request from the host, as the kernel keeps it.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Replace the running service `service` with `module`.
    Swap { service: String, module: Vec<u8> },
    /// Turn tracing on or off.
    Tracing(bool),
    /// Send the trace ring.
    TraceDump,
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

/// A partial frame is dropped when more bytes arrive this long after its
/// last ones: its sender went away mid-frame (an interrupted push), and the
/// bytes now arriving start a new frame, which it would otherwise swallow.
/// The kernel polls the channel between turns (at most every 1 ms,
/// `CONTROL_POLL_NS`) and on idle wake-ups, so a live sender never pauses
/// this long within one.
pub const STALE_FRAME_NS: u64 = 5_000_000_000;

/// Accumulates bytes and cuts them into requests.
#[derive(Debug, Default)]
pub struct ControlChannel {
    buffer: Vec<u8>,
    /// When bytes last arrived.
    last_bytes_ns: u64,
}

impl ControlChannel {
    /// Notes that bytes arrive at `now_ns`, before they are fed: drops what
    /// is held of a frame whose last bytes came more than
    /// [`STALE_FRAME_NS`] earlier. Returns how many bytes it dropped.
    pub fn arriving(&mut self, now_ns: u64) -> usize {
        let stale = now_ns.saturating_sub(self.last_bytes_ns) > STALE_FRAME_NS;
        self.last_bytes_ns = now_ns;
        if !stale {
            return 0;
        }
        let dropped = self.buffer.len();
        self.buffer.clear();
        dropped
    }

    /// Takes received bytes; returns the requests they complete, or a
    /// description of each malformed one (which is dropped).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Request, String>> {
        self.buffer.extend_from_slice(bytes);
        let mut requests = Vec::new();
        loop {
            // Skip to the next frame start, keeping a tail that could be the
            // start of the magic.
            let start = self
                .buffer
                .windows(MAGIC.len())
                .position(|window| window == MAGIC)
                .unwrap_or(self.buffer.len().saturating_sub(MAGIC.len() - 1));
            self.buffer.drain(..start);
            let header = MAGIC.len() + 4;
            let Some(&[a, b, c, d]) = self.buffer.get(MAGIC.len()..header) else {
                return requests;
            };
            let length = u32::from_le_bytes([a, b, c, d]) as usize;
            if length > MAX_BODY_LEN {
                // Only the magic is dropped: what follows may be a frame.
                self.buffer.drain(..MAGIC.len());
                requests.push(Err(String::from("error: request too large")));
                continue;
            }
            let Some(body) = self.buffer.get(header..header + length) else {
                return requests;
            };
            requests.push(decode(body));
            self.buffer.drain(..header + length);
        }
    }
}

/// One frame's body as a request: the whole body, and nothing after the
/// request in it.
fn decode(body: &[u8]) -> Result<Request, String> {
    use atoll_abi::control::Request as Wire;
    match postcard::take_from_bytes(body) {
        Ok((_, rest)) if !rest.is_empty() => Err(String::from("error: malformed request")),
        Ok((Wire::Swap { service, .. }, _)) if service.len() > MAX_NAME_LEN => {
            Err(String::from("error: service name too long"))
        }
        Ok((Wire::Swap { module, .. }, _)) if module.len() > atoll_abi::MAX_MODULE_LEN => {
            Err(String::from("error: module too large"))
        }
        Ok((Wire::Swap { service, module }, _)) => Ok(Request::Swap {
            service: String::from(service),
            module: module.to_vec(),
        }),
        Ok((Wire::Tracing(on), _)) => Ok(Request::Tracing(on)),
        Ok((Wire::TraceDump, _)) => Ok(Request::TraceDump),
        Err(_) => Err(String::from("error: malformed request")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_abi::control::{Request as Wire, encode};

    fn frame(request: &Wire<'_>) -> Vec<u8> {
        encode(request)
    }

    #[test]
    fn a_frame_left_unfinished_is_dropped_when_bytes_come_much_later() {
        let first = frame(&Wire::Swap {
            service: "echo",
            module: b"\0asm interrupted",
        });
        let second = frame(&Wire::TraceDump);
        let mut channel = ControlChannel::default();
        assert_eq!(channel.arriving(1_000), 0);
        assert!(channel.feed(&first[..first.len() / 2]).is_empty());
        // More of the same frame soon after: kept.
        assert_eq!(channel.arriving(1_000 + STALE_FRAME_NS), 0);
        assert!(
            channel
                .feed(&first[first.len() / 2..first.len() - 1])
                .is_empty()
        );
        // The sender went away; a new one's frame comes later: the old part
        // goes, the new frame is read whole.
        assert_eq!(
            channel.arriving(2_001 + 2 * STALE_FRAME_NS),
            first.len() - 1
        );
        assert_eq!(channel.feed(&second), vec![Ok(Request::TraceDump)]);
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let frame = frame(&Wire::Swap {
            service: "echo",
            module: b"\0asm module bytes",
        });
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
    fn requests_parse_between_noise_and_bad_frames() {
        let mut bytes = frame(&Wire::Tracing(true));
        bytes.extend(b"xxAC");
        bytes.extend(frame(&Wire::Swap {
            service: "a",
            module: b"x",
        }));
        bytes.extend(frame(&Wire::TraceDump));
        // A body that does not decode (an unknown request) is dropped whole.
        bytes.extend(MAGIC);
        bytes.extend(1u32.to_le_bytes());
        bytes.push(9);
        // A length past the largest module costs only its magic.
        bytes.extend(MAGIC);
        bytes.extend(u32::MAX.to_le_bytes());
        let long = "n".repeat(MAX_NAME_LEN + 1);
        bytes.extend(frame(&Wire::Swap {
            service: &long,
            module: b"x",
        }));
        bytes.extend(frame(&Wire::Tracing(false)));
        for split in 0..bytes.len() {
            let mut channel = ControlChannel::default();
            let mut requests = channel.feed(&bytes[..split]);
            requests.extend(channel.feed(&bytes[split..]));
            assert_eq!(
                requests,
                vec![
                    Ok(Request::Tracing(true)),
                    Ok(Request::Swap {
                        service: "a".into(),
                        module: b"x".to_vec()
                    }),
                    Ok(Request::TraceDump),
                    Err("error: malformed request".into()),
                    Err("error: request too large".into()),
                    Err("error: service name too long".into()),
                    Ok(Request::Tracing(false)),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_module_past_the_limit_and_bytes_after_a_request_are_refused() {
        let module = vec![0u8; atoll_abi::MAX_MODULE_LEN + 1];
        let mut bytes = frame(&Wire::Swap {
            service: "a",
            module: &module,
        });
        // `Tracing(true)`, then a byte the request does not hold.
        bytes.extend(MAGIC);
        bytes.extend(3u32.to_le_bytes());
        bytes.extend([1, 1, 0xff]);
        bytes.extend(frame(&Wire::TraceDump));
        let requests = ControlChannel::default().feed(&bytes);
        assert_eq!(
            requests,
            vec![
                Err("error: module too large".into()),
                Err("error: malformed request".into()),
                Ok(Request::TraceDump),
            ]
        );
    }
}
