//! WASI preview1 sockets: listening TCP sockets given to a program by
//! `system.toml` (`listen`), the connections it accepts on them, and their
//! translation into requests of the `net` protocol (`atoll_abi::net`), sent
//! by the kernel on the program's behalf to its TCP/IP service.
//!
//! What is here: socket descriptors in the table of `files.rs` (after the
//! preopens), `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`,
//! `fd_read`/`fd_write`/`fd_close` on sockets and socket subscriptions of
//! `poll_oneoff`. A listener listens at its first use. A call that must wait
//! (nothing to accept or read, no room to write) waits in the TCP/IP
//! service's held `Wait` and tries again, the program parked in one
//! kernel-made call, unless the descriptor is non-blocking (`EAGAIN`). A
//! listener whose TCP/IP service restarted (its number answers `NoSocket`)
//! listens again; a connection answers `ECONNRESET`. A call whose service
//! ended under it is answered `EIO` by the kernel: nothing waits for ever.
//!
//! What is not here: connecting out, UDP, addresses (preview1 has none of
//! them), the TCP/IP stack (the netstack service).

use super::files::{
    Descriptor, FDFLAG_NONBLOCK, Files, InFlight, Kind, Operation as FileOperation, Plan, Step,
    buffers, gather,
    rights::{FD_FDSTAT_SET_FLAGS, FD_READ, FD_WRITE, POLL_FD_READWRITE},
    run, scatter,
};
use super::{EVENT_CLOCK, EVENT_FD_READ, EVENT_FD_WRITE, Errno, Event, bytes, store, write_events};
use crate::host::{HostResult, HostState};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use atoll_abi::net::{self, Interest, MAX_DATA, MAX_WAIT, Request, Response};
use atoll_abi::wasi::errno;
use wasmi::{Caller, Linker};

/// Rights `sock_shutdown` and `sock_accept`.
const SOCK_SHUTDOWN: u64 = 1 << 28;
const SOCK_ACCEPT: u64 = 1 << 29;
const LISTENER: u64 = SOCK_ACCEPT | POLL_FD_READWRITE | FD_FDSTAT_SET_FLAGS;
const STREAM: u64 = FD_READ | FD_WRITE | SOCK_SHUTDOWN | POLL_FD_READWRITE | FD_FDSTAT_SET_FLAGS;
/// Connections a listener keeps in progress.
const BACKLOG: u8 = 8;
/// How long one held `Wait` of a blocking call lasts before it is asked again.
const WAIT_MS: u32 = 60_000;
/// `sdflags`.
const SHUT_RD: i32 = 1;
const SHUT_WR: i32 = 2;
/// `riflags::recv_peek`, `recv_waitall`.
const RECV_PEEK: i32 = 1;

/// A listening socket of a service, resolved at boot: its TCP/IP service's
/// handle among the service's endpoints and its TCP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listener {
    pub(crate) handle: i32,
    pub(crate) port: u16,
    /// Starts non-blocking (so do the connections accepted on it).
    pub(crate) nonblocking: bool,
}

/// What a socket descriptor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Socket {
    /// A listener's port; `None` for a connection.
    port: Option<u16>,
    /// The TCP/IP service's number for it, once it has one.
    number: Option<u32>,
    /// `sock_shutdown` of the receiving half: reads see the end.
    read_shut: bool,
}

/// The descriptor of a listening socket, not yet listening.
pub(super) fn listener(listener: &Listener) -> Descriptor {
    let socket = Socket {
        port: Some(listener.port),
        number: None,
        read_shut: false,
    };
    let mut descriptor = Descriptor::socket(listener.handle, socket, LISTENER);
    if listener.nonblocking {
        descriptor.flags = FDFLAG_NONBLOCK;
    }
    descriptor
}

/// One descriptor subscription of `poll_oneoff` on a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(super) userdata: u64,
    pub(super) fd: i32,
    pub(super) write: bool,
}

/// A socket operation the program is parked in.
#[derive(Debug)]
pub(crate) enum Operation {
    Accept {
        fd: i32,
        flags: u16,
        out: u32,
    },
    Recv {
        fd: i32,
        buffers: Vec<(u32, u32)>,
        out: u32,
    },
    Send {
        fd: i32,
        data: Vec<u8>,
        out: u32,
    },
    /// Waits until the socket of the operation inside is ready, then does it.
    Wait(Box<Operation>),
    /// Makes listener `fd` listen, then does the operation inside.
    Listen {
        fd: i32,
        then: Box<Operation>,
    },
    /// `poll_oneoff`: the events go to `events`, their count to `count`;
    /// `clocks` fire when `timeout_ms` passes with no socket ready (no
    /// timeout: wait until one is).
    Poll {
        subscriptions: Vec<Subscription>,
        clocks: Vec<u64>,
        timeout_ms: Option<u32>,
        events: u32,
        count: u32,
    },
    /// `fd_close` of a socket the service numbered, or `sock_shutdown`.
    Close,
}

/// Whether `fd` is a socket.
pub(super) fn is_socket(files: &Files, fd: i32) -> bool {
    socket(files, fd).is_ok()
}

fn socket(files: &Files, fd: i32) -> Errno<Socket> {
    match files.slot(fd)?.kind {
        Kind::Socket(socket) => Ok(socket),
        _ => Err(errno::NOTSOCK),
    }
}

/// Descriptor `fd`: a socket of the kind wanted (listener or not), with `right`.
fn usable(files: &Files, fd: i32, listening: bool, right: u64) -> Errno<(Socket, &Descriptor)> {
    let socket = socket(files, fd)?;
    if socket.port.is_some() != listening {
        return Err(if listening {
            errno::INVAL
        } else {
            errno::NOTCONN
        });
    }
    Ok((socket, files.usable(fd, right)?))
}

/// What a `poll_oneoff` subscription on descriptor `fd` (3 and up) finds:
/// `Ok(true)` a socket, to ask about; `Ok(false)` a file, or a connection
/// the program shut down (its service no longer knows it: reads see the
/// end at once, writes fail at once), ready at once.
pub(super) fn readiness(files: &Files, fd: i32) -> Errno<bool> {
    let descriptor = files.slot(fd)?;
    Ok(match descriptor.kind {
        Kind::Socket(socket) => socket.port.is_some() || socket.number.is_some(),
        _ => false,
    })
}

fn nonblocking(files: &Files, fd: i32) -> bool {
    files
        .slot(fd)
        .is_ok_and(|descriptor| descriptor.flags & FDFLAG_NONBLOCK != 0)
}

/// The errno of a TCP/IP service's error.
fn errno_of(error: net::Error) -> i32 {
    use net::Error as E;
    match error {
        E::WouldBlock => errno::AGAIN,
        E::NoSocket | E::Reset => errno::CONNRESET,
        E::InvalidState => errno::NOTCONN,
        E::AddressInUse => errno::ADDRINUSE,
        E::NoResources => errno::NOBUFS,
        E::NoLink => errno::NETDOWN,
        E::NotOwner | E::NotPermitted => errno::ACCES,
        E::InvalidArgument | E::TimedOut => errno::INVAL,
    }
}

/// The socket an operation works on and whether it waits to write.
fn subject(operation: &Operation) -> Option<(i32, bool)> {
    match operation {
        Operation::Accept { fd, .. } | Operation::Recv { fd, .. } => Some((*fd, false)),
        Operation::Send { fd, .. } => Some((*fd, true)),
        Operation::Wait(inner) | Operation::Listen { then: inner, .. } => subject(inner),
        Operation::Poll { .. } | Operation::Close => None,
    }
}

/// The service's number of socket `fd`.
fn number(files: &Files, fd: i32) -> Errno<u32> {
    socket(files, fd)?.number.ok_or(errno::NOTCONN)
}

/// The request that starts (or restarts) `operation`: the listen of a
/// listener it needs that is not listening yet, else its own.
fn start(files: &Files, handle: i32, operation: Operation) -> Errno<Plan> {
    let fds: Vec<i32> = match &operation {
        Operation::Poll { subscriptions, .. } => subscriptions.iter().map(|s| s.fd).collect(),
        other => subject(other).map(|(fd, _)| fd).into_iter().collect(),
    };
    for fd in fds {
        let socket = socket(files, fd)?;
        if let (Some(port), None) = (socket.port, socket.number) {
            let request = Request::Listen {
                port,
                backlog: BACKLOG,
            };
            let then = Box::new(operation);
            return Ok(ask(handle, request, Operation::Listen { fd, then }));
        }
    }
    let request = request(files, &operation)?;
    Ok(ask(handle, request, operation))
}

fn ask(handle: i32, request: Request, operation: Operation) -> Plan {
    let in_flight = InFlight {
        // No descriptor is made broken by a lost answer: a listener
        // listens again and a connection answers `ECONNRESET`.
        fd: None,
        handle,
        operation: FileOperation::Socket(operation),
    };
    Plan::Net(request, in_flight)
}

fn request(files: &Files, operation: &Operation) -> Errno<Request> {
    Ok(match operation {
        Operation::Accept { fd, .. } => Request::Accept {
            listener: number(files, *fd)?,
        },
        Operation::Recv { fd, buffers, .. } => Request::Read {
            socket: number(files, *fd)?,
            max: read_size(buffers),
        },
        Operation::Send { fd, data, .. } => Request::Write {
            socket: number(files, *fd)?,
            data: data.clone(),
        },
        Operation::Wait(inner) => {
            let (fd, write) = subject(inner).ok_or(errno::INVAL)?;
            Request::Wait {
                interests: vec![interest(files, fd, write)?],
                timeout_ms: WAIT_MS,
            }
        }
        Operation::Poll {
            subscriptions,
            timeout_ms,
            ..
        } => Request::Wait {
            interests: subscriptions
                .iter()
                .map(|s| interest(files, s.fd, s.write))
                .collect::<Errno<_>>()?,
            timeout_ms: timeout_ms.unwrap_or(WAIT_MS),
        },
        Operation::Listen { .. } | Operation::Close => return Err(errno::INVAL),
    })
}

fn interest(files: &Files, fd: i32, write: bool) -> Errno<Interest> {
    Ok(Interest {
        socket: number(files, fd)?,
        read: !write,
        write,
    })
}

/// The most one read asks for: the buffers' total, at most [`MAX_DATA`].
fn read_size(buffers: &[(u32, u32)]) -> u32 {
    let total: u64 = buffers.iter().map(|(_, len)| u64::from(*len)).sum();
    u32::try_from(total.min(u64::from(MAX_DATA))).unwrap_or(MAX_DATA)
}

/// Takes the TCP/IP service's reply to the program's socket operation:
/// finishes it (the errno to resume with) or asks again. Also the bytes
/// copied into the program.
pub(super) fn advance(
    files: &mut Files,
    memory: &mut [u8],
    handle: i32,
    operation: Operation,
    reply: &[u8],
) -> (Step, usize) {
    let Ok(response) = postcard::from_bytes::<Response>(reply) else {
        return (Step::Done(errno::IO), 0);
    };
    let copied = match &response {
        Response::Data(data) => data.len(),
        _ => 0,
    };
    let step = match step(files, memory, handle, operation, response) {
        Ok(Plan::Net(request, in_flight)) => match postcard::to_allocvec(&request) {
            Ok(message) => {
                files.in_flight = Some(in_flight);
                Step::Again { handle, message }
            }
            Err(_) => Step::Done(errno::IO),
        },
        Ok(Plan::Now(code)) | Err(code) => Step::Done(code),
        Ok(Plan::Ask(..)) => Step::Done(errno::IO),
    };
    (step, copied)
}

fn step(
    files: &mut Files,
    memory: &mut [u8],
    handle: i32,
    operation: Operation,
    response: Response,
) -> Errno<Plan> {
    let done = Ok(Plan::Now(errno::SUCCESS));
    match (operation, response) {
        (Operation::Listen { fd, then }, Response::Socket(number)) => {
            if let Kind::Socket(socket) = &mut files.slot_mut(fd)?.kind {
                socket.number = Some(number);
            }
            start(files, handle, *then)
        }
        (Operation::Accept { fd, flags, out }, Response::Accepted { socket, .. }) => {
            let socket = Socket {
                port: None,
                number: Some(socket),
                read_shut: false,
            };
            let mut descriptor = Descriptor::socket(handle, socket, STREAM);
            // Non-blocking if asked, or if the listener is (as BSD's
            // accept does; Go's runtime accepts with no flags and expects
            // non-blocking connections of a non-blocking listener).
            let inherited = if nonblocking(files, fd) {
                FDFLAG_NONBLOCK
            } else {
                0
            };
            descriptor.flags = (flags | inherited) & FDFLAG_NONBLOCK;
            let fd = files.insert(descriptor)?;
            store(memory, out, &fd.to_le_bytes())?;
            done
        }
        (operation @ Operation::Accept { fd, .. }, Response::Error(net::Error::NoSocket)) => {
            // The TCP/IP service restarted: listen again.
            if let Kind::Socket(socket) = &mut files.slot_mut(fd)?.kind {
                socket.number = None;
            }
            start(files, handle, operation)
        }
        (Operation::Recv { buffers, out, .. }, Response::Data(data)) => {
            if data.len() > read_size(&buffers) as usize {
                return Err(errno::IO);
            }
            scatter(memory, &buffers, 0, &data)?;
            let count = u32::try_from(data.len()).map_err(|_| errno::IO)?;
            store(memory, out, &count.to_le_bytes())?;
            done
        }
        (Operation::Recv { out, .. }, Response::Closed) => {
            store(memory, out, &0u32.to_le_bytes())?;
            done
        }
        (Operation::Send { data, out, .. }, Response::Written(count)) => {
            // More than was sent is the service's error: the program must
            // not be told so (its libc would step past its buffer).
            if !usize::try_from(count).is_ok_and(|count| count <= data.len()) {
                return Err(errno::IO);
            }
            store(memory, out, &count.to_le_bytes())?;
            done
        }
        (
            operation
            @ (Operation::Accept { .. } | Operation::Recv { .. } | Operation::Send { .. }),
            Response::Error(net::Error::WouldBlock),
        ) => {
            let (fd, _) = subject(&operation).ok_or(errno::IO)?;
            if nonblocking(files, fd) {
                return Err(errno::AGAIN);
            }
            let wait = Operation::Wait(Box::new(operation));
            Ok(ask(handle, request(files, &wait)?, wait))
        }
        // Ready, or the socket is gone (a restarted service): the call
        // itself meets it (a listener listens again).
        (Operation::Wait(inner), Response::Ready(_) | Response::Error(net::Error::NoSocket)) => {
            start(files, handle, *inner)
        }
        (
            Operation::Poll {
                subscriptions,
                clocks,
                timeout_ms,
                events,
                count,
            },
            response @ (Response::Ready(_) | Response::Error(_)),
        ) => {
            let fired: Vec<Event> = match &response {
                Response::Ready(ready) if ready.is_empty() => {
                    if timeout_ms.is_none() {
                        let again = Operation::Poll {
                            subscriptions,
                            clocks,
                            timeout_ms,
                            events,
                            count,
                        };
                        return start(files, handle, again);
                    }
                    clocks
                        .iter()
                        .map(|&userdata| Event {
                            userdata,
                            error: 0,
                            kind: EVENT_CLOCK,
                        })
                        .collect()
                }
                Response::Ready(ready) => subscriptions
                    .iter()
                    .filter(|s| {
                        let number = number(files, s.fd).ok();
                        ready.iter().any(|r| {
                            Some(r.socket) == number && if s.write { r.write } else { r.read }
                        })
                    })
                    .map(|s| socket_event(s, 0))
                    .collect(),
                // A socket the service no longer knows, say: every
                // subscription is reported with the error, and the call
                // that follows meets it.
                Response::Error(error) => subscriptions
                    .iter()
                    .map(|s| socket_event(s, errno_of(*error)))
                    .collect(),
                _ => Vec::new(),
            };
            write_events(memory, events, count, &fired)?;
            done
        }
        // A socket its service no longer knows (it restarted) is closed
        // all the same: `close` fails only for a bad descriptor.
        (Operation::Close, Response::Done | Response::Error(net::Error::NoSocket)) => done,
        (_, Response::Error(error)) => Err(errno_of(error)),
        _ => Err(errno::IO),
    }
}

fn socket_event(subscription: &Subscription, error: i32) -> Event {
    Event {
        userdata: subscription.userdata,
        error: u16::try_from(error).unwrap_or(u16::MAX),
        kind: if subscription.write {
            EVENT_FD_WRITE
        } else {
            EVENT_FD_READ
        },
    }
}

// ---- Plans of the calls --------------------------------------------------

fn plan_accept(files: &Files, memory: &[u8], fd: i32, flags: i32, out: u32) -> Errno<Plan> {
    let (_, descriptor) = usable(files, fd, true, SOCK_ACCEPT)?;
    let handle = descriptor.handle;
    // Only NONBLOCK means anything for a connection; APPEND or the sync
    // flags are a caller's mistake, refused rather than ignored.
    let flags = u16::try_from(flags)
        .ok()
        .filter(|flags| flags & !FDFLAG_NONBLOCK == 0)
        .ok_or(errno::INVAL)?;
    bytes(memory, out, 4)?;
    // With no descriptor free, the connection is left queued in the TCP/IP
    // service: accepted there, it would have nowhere to go, and leak.
    if !files.has_room() {
        return Err(errno::MFILE);
    }
    start(files, handle, Operation::Accept { fd, flags, out })
}

/// `fd_read` or `sock_recv` on a connection.
pub(super) fn plan_recv(
    files: &mut Files,
    memory: &mut [u8],
    fd: i32,
    iovs: i32,
    count: i32,
    out: u32,
) -> Errno<Plan> {
    let (socket, descriptor) = usable(files, fd, false, FD_READ)?;
    let handle = descriptor.handle;
    bytes(memory, out, 4)?;
    let buffers = buffers(memory, iovs, count)?;
    if socket.read_shut || read_size(&buffers) == 0 {
        store(memory, out, &0u32.to_le_bytes())?;
        return Ok(Plan::Now(errno::SUCCESS));
    }
    start(files, handle, Operation::Recv { fd, buffers, out })
}

/// `fd_write` or `sock_send` on a connection: at most [`MAX_DATA`] bytes
/// (a short write, as POSIX allows; libcs loop).
pub(super) fn plan_send(
    files: &mut Files,
    memory: &mut [u8],
    fd: i32,
    iovs: i32,
    count: i32,
    out: u32,
) -> Errno<Plan> {
    let (_, descriptor) = usable(files, fd, false, FD_WRITE)?;
    let handle = descriptor.handle;
    bytes(memory, out, 4)?;
    let data = gather(memory, iovs, count, MAX_DATA as usize)?;
    if data.is_empty() {
        store(memory, out, &0u32.to_le_bytes())?;
        return Ok(Plan::Now(errno::SUCCESS));
    }
    start(files, handle, Operation::Send { fd, data, out })
}

/// `sock_shutdown`: the receiving half is the kernel's to end (reads see
/// the end); ending the sending half closes the connection in the TCP/IP
/// service (what is queued is still sent; later reads see the end).
fn plan_shutdown(files: &mut Files, fd: i32, how: i32) -> Errno<Plan> {
    let (mut socket, descriptor) = usable(files, fd, false, SOCK_SHUTDOWN)?;
    let handle = descriptor.handle;
    if how & !(SHUT_RD | SHUT_WR) != 0 || how == 0 {
        return Err(errno::INVAL);
    }
    socket.read_shut |= how & SHUT_RD != 0 || how & SHUT_WR != 0;
    let number = socket.number;
    if how & SHUT_WR != 0 {
        socket.number = None;
    }
    let descriptor = files.slot_mut(fd)?;
    descriptor.kind = Kind::Socket(socket);
    if how & SHUT_WR != 0 {
        descriptor.rights &= !FD_WRITE;
        if let Some(number) = number {
            return Ok(ask(
                handle,
                Request::Close { socket: number },
                Operation::Close,
            ));
        }
    }
    Ok(Plan::Now(errno::SUCCESS))
}

/// `fd_close`: a socket the service numbered is closed there too.
pub(super) fn plan_close(files: &mut Files, fd: i32) -> Errno<Plan> {
    let closing = socket(files, fd).ok().and_then(|socket| socket.number);
    let handle = files.slot(fd)?.handle;
    super::files::close(files, fd)?;
    Ok(match closing {
        Some(number) => ask(handle, Request::Close { socket: number }, Operation::Close),
        None => Plan::Now(errno::SUCCESS),
    })
}

/// `fd_renumber`: a socket the service numbered that descriptor `to` held
/// is closed there too (dropped silently, it would leak in the service).
pub(super) fn plan_renumber(files: &mut Files, from: i32, to: i32) -> Errno<Plan> {
    let closing = if from == to {
        None
    } else {
        socket(files, to).ok().and_then(|socket| socket.number)
    };
    let handle = files.slot(to)?.handle;
    super::files::renumber(files, from, to)?;
    Ok(match closing {
        Some(number) => ask(handle, Request::Close { socket: number }, Operation::Close),
        None => Plan::Now(errno::SUCCESS),
    })
}

/// `poll_oneoff` with socket subscriptions and nothing ready at once.
pub(super) fn plan_poll(
    files: &Files,
    subscriptions: Vec<Subscription>,
    clocks: Vec<u64>,
    timeout_ms: Option<u32>,
    events: u32,
    count: u32,
) -> Errno<Plan> {
    let first = subscriptions.first().ok_or(errno::INVAL)?;
    let handle = files.slot(first.fd)?.handle;
    if subscriptions.len() > MAX_WAIT
        || subscriptions
            .iter()
            .any(|s| files.slot(s.fd).map(|d| d.handle) != Ok(handle))
    {
        // One TCP/IP service per poll.
        return Err(errno::NOTSUP);
    }
    let operation = Operation::Poll {
        subscriptions,
        clocks,
        timeout_ms,
        events,
        count,
    };
    start(files, handle, operation)
}

/// Defines the socket functions in `linker`.
pub(super) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    let module = atoll_abi::wasi::IMPORT_MODULE;
    linker.func_wrap(
        module,
        "sock_accept",
        |caller: Caller<'_, HostState>, fd: i32, flags: i32, out: i32| -> HostResult {
            run(caller, |files, memory| {
                plan_accept(files, memory, fd, flags, out.cast_unsigned())
            })
        },
    )?;
    linker.func_wrap(
        module,
        "sock_recv",
        |caller: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         count: i32,
         flags: i32,
         out: i32,
         out_flags: i32|
         -> HostResult {
            run(caller, |files, memory| {
                socket(files, fd)?;
                if flags & RECV_PEEK != 0 {
                    return Err(errno::NOTSUP);
                }
                store(memory, out_flags.cast_unsigned(), &0u16.to_le_bytes())?;
                plan_recv(files, memory, fd, iovs, count, out.cast_unsigned())
            })
        },
    )?;
    linker.func_wrap(
        module,
        "sock_send",
        |caller: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         count: i32,
         _flags: i32,
         out: i32|
         -> HostResult {
            run(caller, |files, memory| {
                plan_send(files, memory, fd, iovs, count, out.cast_unsigned())
            })
        },
    )?;
    linker.func_wrap(
        module,
        "sock_shutdown",
        |caller: Caller<'_, HostState>, fd: i32, how: i32| -> HostResult {
            run(caller, |files, _| plan_shutdown(files, fd, how))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
