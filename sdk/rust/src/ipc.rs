//! Endpoints and messages: the safe face of `lookup`, `send`, `call`,
//! `receive` and `reply`, with typed messages in postcard.
//!
//! A protocol is a pair of serde types, a request and a response, in a crate both
//! sides depend on. A client does `endpoint.request(&Request::...)`; a server
//! does `serve(&endpoint, |request| response)`, or, when it needs more than a
//! function of the request, takes messages with [`Endpoint::receive`], turns
//! each into a typed [`Request`] with [`Received::decode`] and answers it with
//! [`Request::reply`] (now, or later through its [`Responder`]).
//!
//! A caller that went away before its answer (stopped, restarted, or answered
//! by the kernel at a hot swap) is not an error: [`Answer::CallerGone`],
//! counted by [`callers_gone`], and nothing is logged (docs/abi.md, "When the
//! caller has gone").

use crate::check_value;
use atoll_abi::{Error, MAX_MESSAGE_LEN, RECEIVE_INFO_LEN, ReceiveInfo};
use core::sync::atomic::{AtomicU32, Ordering};
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
        let length = unsafe {
            crate::raw::receive(
                self.handle,
                buffer.as_mut_ptr(),
                buffer.len(),
                timeout.raw(),
                info.as_mut_ptr(),
            )
        };
        Self::received(length, buffer, &info)
    }

    /// Answers `token` with `reply` and takes the oldest message, in one
    /// kernel call (see [`atoll_abi::REPLY_RECEIVE`]): the answer's outcome,
    /// as [`ReplyToken::reply`] gives it, and the message, as
    /// [`Endpoint::receive`] gives it; if the answer failed with anything
    /// but `PeerGone` or `BadHandle`, the receive does not wait
    /// ([`Error::WouldBlock`] when nothing is queued), so that the caller can
    /// be answered again.
    #[cfg(target_family = "wasm")]
    pub fn reply_receive<'a>(
        self,
        token: ReplyToken,
        reply: &[u8],
        buffer: &'a mut [u8],
        timeout: Timeout,
    ) -> (Result<(), Error>, Result<Received<'a>, Error>) {
        let mut info = [0u8; RECEIVE_INFO_LEN];
        let mut status = 0i32;
        // SAFETY: the kernel only reads `reply`, writes one `i32` to `status`,
        // at most `buffer.len()` bytes to `buffer` and `RECEIVE_INFO_LEN` bytes
        // to `info`, all live for the call.
        let length = unsafe {
            crate::raw::reply_receive(
                token.0,
                reply.as_ptr(),
                reply.len(),
                &mut status,
                self.handle,
                buffer.as_mut_ptr(),
                buffer.len(),
                timeout.raw(),
                info.as_mut_ptr(),
            )
        };
        let received = Self::received(length, buffer, &info);
        match received {
            // Refused before either half (an address outside memory, or no
            // room in the kernel): no answer was given.
            Err(error @ (Error::OutOfBounds | Error::NoMemory | Error::OutOfMemory)) => {
                (Err(error), received)
            }
            _ => (check_value(status).map(|_| ()), received),
        }
    }

    /// The message `receive` or `reply_receive` returned `length` for.
    #[cfg(target_family = "wasm")]
    fn received<'a>(
        length: i32,
        buffer: &'a [u8],
        info: &[u8; RECEIVE_INFO_LEN],
    ) -> Result<Received<'a>, Error> {
        let length = check_value(length)?;
        let info = ReceiveInfo::decode(info);
        Ok(Received {
            message: buffer.get(..length as usize).ok_or(Error::TooLarge)?,
            sender: info.sender,
            reply: info.is_call().then_some(ReplyToken(info.token)),
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
/// get no reply; a caller that has gone is counted ([`callers_gone`]), not
/// logged. Built on [`serve_raw`], so calls reach `handler` by upcall where
/// the kernel can (docs/abi.md, "Handlers").
#[cfg(target_family = "wasm")]
pub fn serve<Request, Response>(
    endpoint: &Endpoint,
    mut handler: impl FnMut(Request) -> Response,
) -> !
where
    Request: DeserializeOwned,
    Response: Serialize,
{
    serve_raw(endpoint, |received, out| {
        let (message, responder) = received.decode::<Request>().ok()?.into_parts();
        let response = handler(message);
        responder.is_call().then_some(())?;
        match postcard::to_slice(&response, out) {
            Ok(encoded) => Some(encoded.len()),
            // Too long for a message: the caller gets an empty answer.
            Err(_) => {
                responder
                    .answer(None, |token, bytes| token.reply(bytes))
                    .report();
                None
            }
        }
    })
}

/// Serves `endpoint` forever with `handler`, which takes each message and
/// writes the answer to a call into its second argument, returning the
/// answer's length (`None`: no answer now, e.g. for a message from `send`,
/// or a call it keeps the [`Responder`] of to answer later). It runs either
/// in this function's loop, which receives each message and gives the last
/// answer with the next receive (`reply_receive`), or, for a call the kernel
/// switches to this server directly, as the service's `atoll_handle` export
/// (exported by [`crate::entry!`]), in place of the loop's receive, which
/// never returns for that call (docs/abi.md, "Handlers"). Either way the
/// same messages get the same answers (an answer too long for its caller
/// is an empty one, logged); only [`callers_gone`] counts the loop's
/// answers alone (a caller can be gone only when the answer comes later).
#[cfg(target_family = "wasm")]
pub fn serve_raw<F>(endpoint: &Endpoint, mut handler: F) -> !
where
    F: FnMut(Received<'_>, &mut [u8]) -> Option<usize>,
{
    // The loop calls it through `handler` (static dispatch), the export
    // through `erased`, both from one pointer.
    let handler: *mut F = &raw mut handler;
    let erased: *mut (dyn FnMut(Received<'_>, &mut [u8]) -> Option<usize> + '_) = handler;
    // SAFETY: only the lifetime is changed. `handler` lives in this frame,
    // which never returns, so it outlives every use through `SERVING`.
    let erased: *mut (dyn FnMut(Received<'_>, &mut [u8]) -> Option<usize> + 'static) =
        unsafe { core::mem::transmute(erased) };
    let serving = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(Serving {
        buffer: [0; MAX_MESSAGE_LEN],
        info: [0; RECEIVE_INFO_LEN],
        answer: [0; MAX_MESSAGE_LEN],
        handler: erased,
    }));
    SERVING.serving.set(serving);
    let handle = endpoint.handle;
    // The last call's answer, in `answer`, not yet given: given with the
    // next receive, in one kernel call.
    let mut pending: Option<(Responder, usize)> = None;
    loop {
        let mut status = 0i32;
        // SAFETY: `serving` is never freed. Only raw pointers into it cross
        // the kernel call, and no reference to it is held meanwhile, so the
        // handler the kernel may run inside the call has it alone. The
        // kernel writes at most the buffer's and the info record's lengths,
        // reads the answer's, and writes one `i32` to `status`.
        SERVING.waiting.set(true);
        let length = unsafe {
            let buffer = (&raw mut (*serving).buffer).cast::<u8>();
            let info = (&raw mut (*serving).info).cast::<u8>();
            match &pending {
                None => crate::raw::receive(handle, buffer, MAX_MESSAGE_LEN, -1, info),
                Some((responder, length)) => crate::raw::reply_receive(
                    responder.token.map_or(0, |token| token.0),
                    (&raw const (*serving).answer).cast::<u8>(),
                    *length,
                    &mut status,
                    handle,
                    buffer,
                    MAX_MESSAGE_LEN,
                    -1,
                    info,
                ),
            }
        };
        // SAFETY: the kernel call is over; nothing else refers to it now.
        SERVING.waiting.set(false);
        let serving = unsafe { &mut *serving };
        if let Some((responder, answered)) = pending.take() {
            // As `Endpoint::reply_receive` tells it: refused before either
            // half, or the answer's own outcome. That was the first
            // attempt; a retry (an empty answer, when this one did not fit)
            // goes through `reply`.
            let mut first = Some(match check_value(length) {
                Err(error @ (Error::OutOfBounds | Error::NoMemory | Error::OutOfMemory)) => {
                    Err(error)
                }
                _ => check_value(status).map(|_| ()),
            });
            let answer = serving.answer.get(..answered).unwrap_or_default();
            responder
                .answer(Some(answer), |token, bytes| {
                    first.take().unwrap_or_else(|| token.reply(bytes))
                })
                .report();
        }
        match Endpoint::received(length, &serving.buffer, &serving.info) {
            Ok(received) => pending = step(handler, &mut serving.answer, received),
            // After an answer that did not go while its token stayed good,
            // the kernel does not wait (`answer` has tried the empty one).
            Err(Error::WouldBlock) => {}
            Err(error) => crate::println!("receive failed: {error}"),
        }
    }
}

/// What [`serve_raw`]'s loop and the service's handler export share: the
/// receive buffer and info record the loop's receive waits on (which the
/// kernel fills before it runs the handler), the answer, and the handler.
struct Serving {
    buffer: [u8; MAX_MESSAGE_LEN],
    info: [u8; RECEIVE_INFO_LEN],
    answer: [u8; MAX_MESSAGE_LEN],
    handler: *mut dyn FnMut(Received<'_>, &mut [u8]) -> Option<usize>,
}

/// Hands `received` to `serving`'s handler, which answers into `answer`;
/// the answer to give, if any.
#[inline(always)]
fn step<H>(handler: *mut H, answer: &mut [u8], received: Received<'_>) -> Option<(Responder, usize)>
where
    H: FnMut(Received<'_>, &mut [u8]) -> Option<usize> + ?Sized,
{
    let responder = received.responder();
    // SAFETY: it points to `serve_raw`'s handler, alive for ever; the
    // handler is run by one of the loop and the export at a time.
    let handler = unsafe { &mut *handler };
    let length = handler(received, answer)?;
    (responder.is_call() && length <= answer.len()).then_some((responder, length))
}

/// The [`Serving`] of this service's [`serve_raw`], once it runs, and
/// whether its loop waits in its own receive (not in one its handler makes):
/// apart from it, so that a decline touches nothing the loop may hold.
struct Shared {
    serving: core::cell::Cell<*mut Serving>,
    waiting: core::cell::Cell<bool>,
}
// SAFETY: a Wasm service has one thread.
unsafe impl Sync for Shared {}
static SERVING: Shared = Shared {
    serving: core::cell::Cell::new(core::ptr::null_mut()),
    waiting: core::cell::Cell::new(false),
};

/// The handler export's body ([`crate::entry!`] exports it as
/// `atoll_handle`): hands the call the kernel received into [`serve_raw`]'s
/// buffers (`received`: what the loop's receive returned) to its handler,
/// and returns the answer's `(ptr << 32) | len` (an empty answer, logged as
/// the loop logs it, if the answer is longer than the caller's `reply_cap`:
/// the loop's answer comes to the same),
/// [`atoll_abi::HANDLER_DEFERRED`] (no answer now), or
/// [`atoll_abi::HANDLER_DECLINED`] when `serve_raw`'s loop does not wait in
/// its receive (no `serve_raw` runs, or the receive is one its handler
/// made): that receive returns the message, and the kernel calls the export
/// of this instance no more.
#[doc(hidden)]
#[must_use]
pub fn upcall(received: i32, reply_cap: i32) -> i64 {
    let serving = SERVING.serving.get();
    if serving.is_null() || !SERVING.waiting.get() {
        // Not this loop's receive: it returns the message.
        return atoll_abi::HANDLER_DECLINED;
    }
    // SAFETY: the kernel calls the export only while the service waits in
    // a receive and is not in the export already; that receive is the
    // loop's (`waiting`), and the loop holds no reference to `serving`
    // across it.
    let serving = unsafe { &mut *serving };
    #[cfg(target_family = "wasm")]
    if let Ok(received) = Endpoint::received(received, &serving.buffer, &serving.info)
        && let Some((_, length)) = step(serving.handler, &mut serving.answer, received)
    {
        let ptr = serving.answer.as_ptr() as usize as i64;
        if usize::try_from(reply_cap).is_ok_and(|cap| length > cap) {
            let _ = Answer::TooLong.report();
            return ptr << 32;
        }
        return (ptr << 32) | length as i64;
    }
    #[cfg(not(target_family = "wasm"))]
    let _ = (received, reply_cap, serving);
    atoll_abi::HANDLER_DEFERRED
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

/// How many answers found their caller gone since this service started (see
/// [`Answer::CallerGone`]).
#[must_use]
pub fn callers_gone() -> u32 {
    CALLERS_GONE.load(Ordering::Relaxed)
}

static CALLERS_GONE: AtomicU32 = AtomicU32::new(0);

/// A message that did not decode as the request type; its caller, if it
/// called, has been answered with an empty reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The sending service's id.
    pub sender: u32,
}

/// A message decoded as `T`, and the right to answer it.
#[derive(Debug)]
pub struct Request<T> {
    /// The decoded message.
    pub message: T,
    responder: Responder,
}

/// Who sent a message, and (for a call) the right to answer it once. Keep it
/// to answer later (e.g. a read waiting for input).
#[derive(Debug, PartialEq, Eq)]
pub struct Responder {
    sender: u32,
    token: Option<ReplyToken>,
}

/// What became of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Answer {
    /// The caller has it.
    Delivered,
    /// The message came from `send`: no answer was due, none was given.
    NotACall,
    /// The caller went away before the answer: it was stopped or restarted,
    /// or the kernel answered the call for this server (at a hot swap or a
    /// restart). Nothing to do; counted by [`callers_gone`].
    CallerGone,
    /// The response did not fit the caller's buffer (or a message), or the
    /// kernel had no room to hold it: the caller got an empty answer instead, which its `request` reports as
    /// [`CallError::Decode`].
    TooLong,
    /// The kernel refused the token ([`Error::BadHandle`]: answered twice, or
    /// never this service's): a bug in this server.
    Refused(Error),
}

impl Answer {
    /// Whether the caller got this answer.
    #[must_use]
    pub const fn delivered(self) -> bool {
        matches!(self, Answer::Delivered)
    }

    /// Logs an answer that went wrong through this server's fault (too long,
    /// refused); a gone caller is not logged. Returns [`Answer::delivered`].
    #[cfg(target_family = "wasm")]
    pub fn report(self) -> bool {
        match self {
            Answer::TooLong => crate::println!("response too long for its caller"),
            Answer::Refused(error) => crate::println!("reply failed: {error}"),
            Answer::Delivered | Answer::NotACall | Answer::CallerGone => {}
        }
        self.delivered()
    }
}

impl<'a> Received<'a> {
    /// Decodes the message as `T`. A message that does not decode is logged
    /// and its caller (if it called) answered with an empty reply (a
    /// [`CallError::Decode`] on its side).
    #[cfg(target_family = "wasm")]
    pub fn decode<T: DeserializeOwned>(self) -> Result<Request<T>, Malformed> {
        let responder = Responder {
            sender: self.sender,
            token: self.reply,
        };
        match postcard::from_bytes(self.message) {
            Ok(message) => Ok(Request { message, responder }),
            Err(_) => {
                crate::println!("malformed request from service {}", self.sender);
                let _ = responder.reply_empty();
                Err(Malformed {
                    sender: self.sender,
                })
            }
        }
    }

    /// Who sent the message, and the right to answer it.
    #[must_use]
    pub fn responder(&self) -> Responder {
        Responder {
            sender: self.sender,
            token: self.reply,
        }
    }
}

impl<T> Request<T> {
    /// The sending service's id.
    #[must_use]
    pub fn sender(&self) -> u32 {
        self.responder.sender
    }

    /// Whether the sender waits in `call` for an answer.
    #[must_use]
    pub fn is_call(&self) -> bool {
        self.responder.token.is_some()
    }

    /// The message and the right to answer it, apart.
    #[must_use]
    pub fn into_parts(self) -> (T, Responder) {
        (self.message, self.responder)
    }

    /// Encodes `response` and answers the call (see [`Responder::reply`]).
    #[cfg(target_family = "wasm")]
    pub fn reply<R: Serialize>(self, response: &R) -> Answer {
        self.responder.reply(response)
    }
}

impl Responder {
    /// The sending service's id.
    #[must_use]
    pub fn sender(&self) -> u32 {
        self.sender
    }

    /// Whether the sender waits in `call` for an answer.
    #[must_use]
    pub fn is_call(&self) -> bool {
        self.token.is_some()
    }

    /// Encodes `response` and answers the call: a response too long for the
    /// caller gets it an empty answer instead ([`Answer::TooLong`]).
    #[cfg(target_family = "wasm")]
    pub fn reply<R: Serialize>(self, response: &R) -> Answer {
        let mut buffer = [0u8; MAX_MESSAGE_LEN];
        let encoded = postcard::to_slice(response, &mut buffer).ok();
        self.answer(encoded.as_deref(), |token, bytes| token.reply(bytes))
    }

    /// Answers the call with an empty message: for a request this server
    /// will not carry out (its typed caller sees [`CallError::Decode`]).
    #[cfg(target_family = "wasm")]
    pub fn reply_empty(self) -> Answer {
        self.answer(Some(&[]), |token, bytes| token.reply(bytes))
    }

    /// Answers with `encoded` (`None`: it could not be encoded) through
    /// `reply`, the `reply` host function or a stand-in for tests.
    fn answer(
        self,
        encoded: Option<&[u8]>,
        mut reply: impl FnMut(ReplyToken, &[u8]) -> Result<(), Error>,
    ) -> Answer {
        let Some(token) = self.token else {
            return Answer::NotACall;
        };
        let first = match encoded {
            Some(bytes) => reply(token, bytes),
            None => Err(Error::TooLarge),
        };
        let answer = match first {
            Ok(()) => Answer::Delivered,
            // The token stays valid when the answer does not fit, or the
            // kernel had no room to hold it: answer empty rather than leave
            // the caller waiting.
            Err(Error::BufferTooSmall | Error::TooLarge | Error::OutOfMemory) => {
                match reply(token, &[]) {
                    Ok(()) => Answer::TooLong,
                    Err(Error::PeerGone) => Answer::CallerGone,
                    Err(error) => Answer::Refused(error),
                }
            }
            Err(Error::PeerGone) => Answer::CallerGone,
            Err(error) => Answer::Refused(error),
        };
        if answer == Answer::CallerGone {
            CALLERS_GONE.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn call(token: u32) -> Responder {
        Responder {
            sender: 7,
            token: Some(ReplyToken(token)),
        }
    }

    /// Answers through a stand-in kernel that gives `results` in turn, and
    /// returns the answer and the (token, length) of each reply attempted.
    fn answer(
        responder: Responder,
        encoded: Option<&[u8]>,
        results: &[Result<(), Error>],
    ) -> (Answer, Vec<(u32, usize)>) {
        let mut attempts = Vec::new();
        let mut results = results.iter().copied();
        let answer = responder.answer(encoded, |token, bytes| {
            attempts.push((token.0, bytes.len()));
            results.next().unwrap_or(Err(Error::BadHandle))
        });
        (answer, attempts)
    }

    #[test]
    fn a_gone_caller_is_counted_not_refused_and_a_bad_handle_is_not_counted() {
        let before = callers_gone();
        let (outcome, attempts) = answer(call(5), Some(b"hi"), &[Err(Error::PeerGone)]);
        assert_eq!(outcome, Answer::CallerGone);
        assert!(!outcome.delivered());
        assert_eq!(attempts, [(5, 2)]);
        assert_eq!(callers_gone(), before + 1);
        // Gone while being told the answer was too long: gone all the same.
        let (outcome, attempts) = answer(
            call(5),
            Some(b"long"),
            &[Err(Error::BufferTooSmall), Err(Error::PeerGone)],
        );
        assert_eq!(outcome, Answer::CallerGone);
        assert_eq!(attempts, [(5, 4), (5, 0)]);
        assert_eq!(callers_gone(), before + 2);
        // A bad handle is the server's mistake, not counted. (One test: the
        // count is global, and tests run in parallel.)
        let (outcome, _) = answer(call(9), Some(b"x"), &[Err(Error::BadHandle)]);
        assert_eq!(outcome, Answer::Refused(Error::BadHandle));
        assert_eq!(callers_gone(), before + 2);
    }

    #[test]
    fn an_answer_the_kernel_had_no_room_for_gets_an_empty_reply() {
        let (outcome, attempts) =
            answer(call(4), Some(b"long"), &[Err(Error::OutOfMemory), Ok(())]);
        assert_eq!(outcome, Answer::TooLong);
        assert_eq!(attempts, [(4, 4), (4, 0)]);
    }

    #[test]
    fn too_long_answers_get_an_empty_reply() {
        let (outcome, attempts) = answer(
            call(3),
            Some(b"long"),
            &[Err(Error::BufferTooSmall), Ok(())],
        );
        assert_eq!(outcome, Answer::TooLong);
        assert_eq!(attempts, [(3, 4), (3, 0)]);
        // A response that could not be encoded at all.
        let (outcome, attempts) = answer(call(3), None, &[Ok(())]);
        assert_eq!(outcome, Answer::TooLong);
        assert_eq!(attempts, [(3, 0)]);
    }

    #[test]
    fn delivered_and_not_a_call() {
        let (outcome, attempts) = answer(call(1), Some(b"ok"), &[Ok(())]);
        assert!(outcome.delivered());
        assert_eq!(attempts, [(1, 2)]);
        let sent = Responder {
            sender: 2,
            token: None,
        };
        assert!(!sent.is_call());
        let (outcome, attempts) = answer(sent, Some(b"ok"), &[Ok(())]);
        assert_eq!(outcome, Answer::NotACall);
        assert!(attempts.is_empty());
    }

    #[test]
    fn received_messages_carry_their_responder() {
        let received = Received {
            message: b"",
            sender: 4,
            reply: Some(ReplyToken(8)),
        };
        let responder = received.responder();
        assert_eq!(responder.sender(), 4);
        assert!(responder.is_call());
    }
}
