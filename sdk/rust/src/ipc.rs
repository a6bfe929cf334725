//! Endpoints and messages: the safe face of `lookup`, `send`, `call`,
//! `receive` and `reply`, with typed messages in postcard.
//!
//! A protocol is a pair of serde types, a request and a response, in a crate both
//! sides depend on. A client does `endpoint.request(&Request::...)`; a server
//! does `serve(&endpoint, |request| response)`.

use crate::check_value;
use atoll_abi::{Error, MAX_MESSAGE_LEN, RECEIVE_INFO_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A handle to an endpoint this service provides or uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    handle: i32,
}

/// How long `receive` waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Wait until a message arrives.
    Forever,
    /// Do not wait: [`Error::WouldBlock`] if nothing is queued.
    Poll,
    /// Wait at most this many nanoseconds ([`Error::TimedOut`] after); 0 polls.
    Nanos(u64),
}

impl Timeout {
    fn raw(self) -> i64 {
        match self {
            Timeout::Forever => -1,
            Timeout::Poll => 0,
            Timeout::Nanos(ns) => i64::try_from(ns).unwrap_or(i64::MAX),
        }
    }
}

/// A message taken from an endpoint's queue.
#[derive(Debug)]
pub struct Received<'a> {
    /// The message, in the caller's buffer.
    pub message: &'a [u8],
    /// The sending service's id.
    pub sender: u32,
    /// Present when the sender is waiting in `call` for an answer.
    pub reply: Option<ReplyToken>,
}

/// The right to answer one call, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyToken(u32);

/// Why a typed call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The kernel refused or the peer failed.
    Kernel(Error),
    /// The request does not fit in a message.
    Encode,
    /// The answer is not a valid response (the server could not decode the
    /// request, or speaks another protocol).
    Decode,
}

impl From<Error> for CallError {
    fn from(error: Error) -> Self {
        CallError::Kernel(error)
    }
}

impl core::fmt::Display for CallError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::Kernel(error) => write!(formatter, "{error}"),
            CallError::Encode => formatter.write_str("request too large to encode"),
            CallError::Decode => formatter.write_str("malformed response"),
        }
    }
}

impl Endpoint {
    /// The endpoint called `name` that this service provides or uses (per
    /// `system.toml`); [`Error::NotFound`] if it has no right to it.
    #[cfg(target_family = "wasm")]
    pub fn lookup(name: &str) -> Result<Endpoint, Error> {
        // SAFETY: `name` is a live buffer in this module's memory; the kernel
        // only reads it during the call.
        let handle = check_value(unsafe { crate::raw::lookup(name.as_ptr(), name.len()) })?;
        Ok(Endpoint {
            handle: handle.cast_signed(),
        })
    }

    /// The endpoint with raw handle `handle` (handles number the service's
    /// `provides`, then its `uses`, from 1). The kernel checks every use.
    #[must_use]
    pub const fn from_handle(handle: i32) -> Endpoint {
        Endpoint { handle }
    }

    /// The raw handle.
    #[must_use]
    pub const fn handle(self) -> i32 {
        self.handle
    }

    /// Queues a copy of `message`; never blocks ([`Error::QueueFull`] when the
    /// endpoint's queue is full).
    #[cfg(target_family = "wasm")]
    pub fn send(self, message: &[u8]) -> Result<(), Error> {
        // SAFETY: `message` is a live buffer the kernel only reads.
        check_value(unsafe { crate::raw::send(self.handle, message.as_ptr(), message.len()) })
            .map(|_| ())
    }

    /// Sends `request` and waits for the answer, which is written to `reply`.
    /// Returns the answer's part of `reply`.
    #[cfg(target_family = "wasm")]
    pub fn call<'a>(self, request: &[u8], reply: &'a mut [u8]) -> Result<&'a [u8], Error> {
        // SAFETY: `request` is only read and `reply` only written by the kernel,
        // within their lengths, during the call.
        let length = check_value(unsafe {
            crate::raw::call(
                self.handle,
                request.as_ptr(),
                request.len(),
                reply.as_mut_ptr(),
                reply.len(),
            )
        })?;
        reply.get(..length as usize).ok_or(Error::TooLarge)
    }

    /// Takes the oldest message of an endpoint this service provides.
    #[cfg(target_family = "wasm")]
    pub fn receive<'a>(
        self,
        buffer: &'a mut [u8],
        timeout: Timeout,
    ) -> Result<Received<'a>, Error> {
        let mut info = [0u8; RECEIVE_INFO_LEN];
        // SAFETY: the kernel writes at most `buffer.len()` bytes to `buffer` and
        // `RECEIVE_INFO_LEN` bytes to `info`, both live for the call.
        let length = check_value(unsafe {
            crate::raw::receive(
                self.handle,
                buffer.as_mut_ptr(),
                buffer.len(),
                timeout.raw(),
                info.as_mut_ptr(),
            )
        })?;
        let [t0, t1, t2, t3, s0, s1, s2, s3] = info;
        let token = u32::from_le_bytes([t0, t1, t2, t3]);
        Ok(Received {
            message: buffer.get(..length as usize).ok_or(Error::TooLarge)?,
            sender: u32::from_le_bytes([s0, s1, s2, s3]),
            reply: (token != 0).then_some(ReplyToken(token)),
        })
    }

    /// Encodes `request`, calls, and decodes the answer.
    #[cfg(target_family = "wasm")]
    pub fn request<Request: Serialize, Response: DeserializeOwned>(
        self,
        request: &Request,
    ) -> Result<Response, CallError> {
        let mut message = [0u8; MAX_MESSAGE_LEN];
        let encoded = postcard::to_slice(request, &mut message).map_err(|_| CallError::Encode)?;
        let mut reply = [0u8; MAX_MESSAGE_LEN];
        let answer = self.call(encoded, &mut reply)?;
        postcard::from_bytes(answer).map_err(|_| CallError::Decode)
    }

    /// Encodes and sends `message` without waiting.
    #[cfg(target_family = "wasm")]
    pub fn post<Message: Serialize>(self, message: &Message) -> Result<(), CallError> {
        let mut buffer = [0u8; MAX_MESSAGE_LEN];
        let encoded = postcard::to_slice(message, &mut buffer).map_err(|_| CallError::Encode)?;
        Ok(self.send(encoded)?)
    }
}

impl ReplyToken {
    /// Answers the call. On [`Error::BufferTooSmall`] the caller's buffer cannot
    /// hold `message` and the token is still good for a shorter answer.
    #[cfg(target_family = "wasm")]
    pub fn reply(self, message: &[u8]) -> Result<(), Error> {
        // SAFETY: `message` is a live buffer the kernel only reads.
        check_value(unsafe { crate::raw::reply(self.0, message.as_ptr(), message.len()) })
            .map(|_| ())
    }
}

/// Serves a typed protocol on `endpoint` forever: every call's request is
/// decoded and handed to `handler`, whose response is the reply. A request that
/// does not decode is logged and answered with an empty reply (which the
/// caller's `request` reports as [`CallError::Decode`]); messages from `send`
/// get no reply.
#[cfg(target_family = "wasm")]
pub fn serve<Request, Response>(
    endpoint: &Endpoint,
    mut handler: impl FnMut(Request) -> Response,
) -> !
where
    Request: DeserializeOwned,
    Response: Serialize,
{
    let mut buffer = alloc::vec![0u8; MAX_MESSAGE_LEN];
    let mut answer = alloc::vec![0u8; MAX_MESSAGE_LEN];
    loop {
        let received = match endpoint.receive(&mut buffer, Timeout::Forever) {
            Ok(received) => received,
            Err(error) => {
                crate::println!("receive failed: {error}");
                continue;
            }
        };
        let (reply, sender) = (received.reply, received.sender);
        let response = match postcard::from_bytes::<Request>(received.message) {
            Ok(request) => Some(handler(request)),
            Err(_) => {
                crate::println!("malformed request from service {}", received.sender);
                None
            }
        };
        let Some(token) = reply else { continue };
        let encoded = match response
            .as_ref()
            .map(|r| postcard::to_slice(r, &mut answer))
        {
            Some(Ok(encoded)) => &encoded[..],
            Some(Err(_)) | None => &[],
        };
        match token.reply(encoded) {
            Ok(()) | Err(Error::PeerGone) => {}
            // The caller's buffer cannot hold the answer: answer empty (the
            // caller sees a decode error) rather than leave it waiting.
            Err(Error::BufferTooSmall) => {
                crate::println!("response too long for service {sender}");
                let _ = token.reply(&[]);
            }
            Err(error) => crate::println!("reply failed: {error}"),
        }
    }
}

/// [`serve`] on the endpoint called `name`; logs and returns if the service has
/// no right to such an endpoint.
#[cfg(target_family = "wasm")]
pub fn serve_named<Request, Response>(name: &str, handler: impl FnMut(Request) -> Response)
where
    Request: DeserializeOwned,
    Response: Serialize,
{
    match Endpoint::lookup(name) {
        Ok(endpoint) => serve(&endpoint, handler),
        Err(error) => crate::println!("no `{name}` endpoint to serve: {error}"),
    }
}
