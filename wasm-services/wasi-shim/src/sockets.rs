//! WASI preview1 sockets: the listening TCP sockets `Startup` gives the
//! program (from `listen` in `system.toml`), the connections it accepts on
//! them, and their translation into requests of the `net` protocol
//! (`atoll_abi::net`) to its TCP/IP service.
//!
//! What is here: socket descriptors in the table of `files.rs` (after the
//! preopens), `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`,
//! `fd_read`/`fd_write`/`fd_close`/`fd_renumber` on sockets, and socket
//! subscriptions of `poll_oneoff`. A listener listens at its first use. A
//! call that must wait (nothing to accept or read, no room to write) waits
//! in the TCP/IP service's held `Wait` and tries again, unless the
//! descriptor is non-blocking (`EAGAIN`). A listener whose TCP/IP service
//! restarted (its number answers `NoSocket`) listens again; a connection
//! answers `ECONNRESET`. A call whose service ended under it answers `EIO`
//! (and, unlike a file, leaves its descriptor usable: a restarted service
//! listens again).
//!
//! What is not here: connecting out, UDP, addresses (preview1 has none of
//! them), the TCP/IP stack (the netstack service).

use crate::files::{
    Descriptor, FDFLAG_NONBLOCK, Files, Kind,
    rights::{FD_FDSTAT_SET_FLAGS, FD_READ, FD_WRITE, POLL_FD_READWRITE},
};
use crate::program::{Memory, buffers, gather, scatter, store, total};
use crate::stdio::{EVENT_CLOCK, EVENT_FD_READ, EVENT_FD_WRITE, Event, write_events};
use crate::{Errno, Exchange, Kernel, Shim};
use alloc::vec;
use alloc::vec::Vec;
use atoll_abi::net::{self, Interest, MAX_DATA, MAX_WAIT, Request, Response};
use atoll_abi::startup::Listener;
use atoll_abi::wasi::errno;

/// Rights `sock_shutdown` and `sock_accept`.
const SOCK_SHUTDOWN: u64 = 1 << 28;
const SOCK_ACCEPT: u64 = 1 << 29;
const LISTENER: u64 = SOCK_ACCEPT | POLL_FD_READWRITE | FD_FDSTAT_SET_FLAGS;
const STREAM: u64 = FD_READ | FD_WRITE | SOCK_SHUTDOWN | POLL_FD_READWRITE | FD_FDSTAT_SET_FLAGS;
/// Connections a listener keeps in progress.
pub(crate) const BACKLOG: u8 = 8;
/// How long one held `Wait` of a blocking call lasts before it is asked again.
pub(crate) const WAIT_MS: u32 = 60_000;
/// `sdflags`.
pub(crate) const SHUT_RD: i32 = 1;
pub(crate) const SHUT_WR: i32 = 2;
/// `riflags::recv_peek`.
const RECV_PEEK: i32 = 1;

/// What a socket descriptor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Socket {
    /// A listener's port; `None` for a connection.
    pub(crate) port: Option<u16>,
    /// The TCP/IP service's number for it, once it has one.
    pub(crate) number: Option<u32>,
    /// `sock_shutdown` of the receiving half: reads see the end.
    read_shut: bool,
}

/// The descriptor of a listening socket, not yet listening.
pub(crate) fn listener(listener: &Listener) -> Descriptor {
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
    pub(crate) userdata: u64,
    pub(crate) fd: i32,
    pub(crate) write: bool,
}

/// Whether `fd` is a socket.
pub(crate) fn is_socket(files: &Files, fd: i32) -> bool {
    socket(files, fd).is_ok()
}

fn socket(files: &Files, fd: i32) -> Errno<Socket> {
    match files.slot(fd)?.kind {
        Kind::Socket(socket) => Ok(socket),
        _ => Err(errno::NOTSOCK),
    }
}

fn set_socket(files: &mut Files, fd: i32, socket: Socket) -> Errno<()> {
    files.slot_mut(fd)?.kind = Kind::Socket(socket);
    Ok(())
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
pub(crate) fn readiness(files: &Files, fd: i32) -> Errno<bool> {
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
fn net_errno(error: net::Error) -> i32 {
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

/// The service's number of socket `fd`.
fn number(files: &Files, fd: i32) -> Errno<u32> {
    socket(files, fd)?.number.ok_or(errno::NOTCONN)
}

fn interest(files: &Files, fd: i32, write: bool) -> Errno<Interest> {
    Ok(Interest {
        socket: number(files, fd)?,
        read: !write,
        write,
    })
}

/// Makes the listeners among `fds` that are not listening yet listen (at
/// their first use, or again after their service restarted).
fn listen<K: Kernel>(
    files: &mut Files,
    exchange: &mut Exchange<'_, K>,
    handle: i32,
    fds: impl Iterator<Item = i32>,
) -> Errno<()> {
    for fd in fds {
        let mut socket = socket(files, fd)?;
        if let (Some(port), None) = (socket.port, socket.number) {
            let request = Request::Listen {
                port,
                backlog: BACKLOG,
            };
            match exchange.ask(handle, &request)? {
                Response::Socket(number) => socket.number = Some(number),
                Response::Error(error) => return Err(net_errno(error)),
                _ => return Err(errno::IO),
            }
            set_socket(files, fd, socket)?;
        }
    }
    Ok(())
}

/// What a blocking call does when its socket is not ready: `EAGAIN` if it
/// is non-blocking, else one held `Wait` until it is (or the wait's time is
/// up, or the socket is gone: the call itself meets that), to try again.
fn wait<K: Kernel>(
    files: &Files,
    exchange: &mut Exchange<'_, K>,
    handle: i32,
    fd: i32,
    write: bool,
) -> Errno<()> {
    if nonblocking(files, fd) {
        return Err(errno::AGAIN);
    }
    let request = Request::Wait {
        interests: vec![interest(files, fd, write)?],
        timeout_ms: WAIT_MS,
    };
    match exchange.ask(handle, &request)? {
        Response::Ready(_) | Response::Error(net::Error::NoSocket) => Ok(()),
        Response::Error(error) => Err(net_errno(error)),
        _ => Err(errno::IO),
    }
}

/// `sock_accept`: a connection's new descriptor at `out`.
fn accept<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    flags: i32,
    out: u32,
) -> Errno<()> {
    let (_, descriptor) = usable(files, fd, true, SOCK_ACCEPT)?;
    let handle = descriptor.handle;
    // Only NONBLOCK means anything for a connection; APPEND or the sync
    // flags are a caller's mistake, refused rather than ignored.
    let flags = u16::try_from(flags)
        .ok()
        .filter(|flags| flags & !FDFLAG_NONBLOCK == 0)
        .ok_or(errno::INVAL)?;
    memory.check(out, 4)?;
    // With no descriptor free, the connection is left queued in the TCP/IP
    // service: accepted there, it would have nowhere to go, and leak.
    if !files.has_room() {
        return Err(errno::MFILE);
    }
    loop {
        listen(files, exchange, handle, [fd].into_iter())?;
        let listener = number(files, fd)?;
        match exchange.ask(handle, &Request::Accept { listener })? {
            Response::Accepted { socket, .. } => {
                let socket = Socket {
                    port: None,
                    number: Some(socket),
                    read_shut: false,
                };
                let mut descriptor = Descriptor::socket(handle, socket, STREAM);
                // Non-blocking if asked, or if the listener is (as BSD's
                // accept does; Go's runtime accepts with no flags and
                // expects non-blocking connections of a non-blocking
                // listener).
                let inherited = if nonblocking(files, fd) {
                    FDFLAG_NONBLOCK
                } else {
                    0
                };
                descriptor.flags = (flags | inherited) & FDFLAG_NONBLOCK;
                let fd = files.insert(descriptor)?;
                return store(memory, out, &fd.to_le_bytes());
            }
            Response::Error(net::Error::NoSocket) => {
                // The TCP/IP service restarted: listen again.
                let mut socket = socket(files, fd)?;
                socket.number = None;
                set_socket(files, fd, socket)?;
            }
            Response::Error(net::Error::WouldBlock) => wait(files, exchange, handle, fd, false)?,
            Response::Error(error) => return Err(net_errno(error)),
            _ => return Err(errno::IO),
        }
    }
}

/// The most one read asks for: the buffers' total, at most [`MAX_DATA`].
fn read_size(buffers: &[(u32, u32)]) -> u32 {
    u32::try_from(total(buffers).min(u64::from(MAX_DATA))).unwrap_or(MAX_DATA)
}

/// `fd_read` or `sock_recv` on a connection.
pub(crate) fn recv<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    (iovs, count): (u32, i32),
    out: u32,
) -> Errno<()> {
    let (socket, descriptor) = usable(files, fd, false, FD_READ)?;
    let handle = descriptor.handle;
    memory.check(out, 4)?;
    let buffers = buffers(memory, iovs, count)?;
    if socket.read_shut || read_size(&buffers) == 0 {
        return store(memory, out, &0u32.to_le_bytes());
    }
    loop {
        let request = Request::Read {
            socket: number(files, fd)?,
            max: read_size(&buffers),
        };
        let data = match exchange.ask(handle, &request)? {
            Response::Data(data) => data,
            Response::Closed => Vec::new(),
            Response::Error(net::Error::WouldBlock) => {
                wait(files, exchange, handle, fd, false)?;
                continue;
            }
            Response::Error(error) => return Err(net_errno(error)),
            _ => return Err(errno::IO),
        };
        if data.len() > read_size(&buffers) as usize {
            return Err(errno::IO);
        }
        scatter(memory, &buffers, 0, &data)?;
        let count = u32::try_from(data.len()).map_err(|_| errno::IO)?;
        return store(memory, out, &count.to_le_bytes());
    }
}

/// `fd_write` or `sock_send` on a connection: at most [`MAX_DATA`] bytes
/// (a short write, as POSIX allows; libcs loop).
pub(crate) fn send<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    (iovs, count): (u32, i32),
    out: u32,
) -> Errno<()> {
    let (_, descriptor) = usable(files, fd, false, FD_WRITE)?;
    let handle = descriptor.handle;
    memory.check(out, 4)?;
    let data = gather(memory, iovs, count, MAX_DATA as usize)?;
    if data.is_empty() {
        return store(memory, out, &0u32.to_le_bytes());
    }
    loop {
        let request = Request::Write {
            socket: number(files, fd)?,
            data: data.clone(),
        };
        match exchange.ask(handle, &request)? {
            Response::Written(count) => {
                // More than was sent is the service's error: the program
                // must not be told so (its libc would step past its buffer).
                if !usize::try_from(count).is_ok_and(|count| count <= data.len()) {
                    return Err(errno::IO);
                }
                return store(memory, out, &count.to_le_bytes());
            }
            Response::Error(net::Error::WouldBlock) => wait(files, exchange, handle, fd, true)?,
            Response::Error(error) => return Err(net_errno(error)),
            _ => return Err(errno::IO),
        }
    }
}

/// A `Close` of socket `number`: one its restarted service no longer knows
/// is closed all the same (`close` fails only for a bad descriptor).
fn close_number<K: Kernel>(exchange: &mut Exchange<'_, K>, handle: i32, number: u32) -> Errno<()> {
    match exchange.ask(handle, &Request::Close { socket: number })? {
        Response::Done | Response::Error(net::Error::NoSocket) => Ok(()),
        Response::Error(error) => Err(net_errno(error)),
        _ => Err(errno::IO),
    }
}

/// `sock_shutdown`: the receiving half is the shim's to end (reads see the
/// end); ending the sending half closes the connection in the TCP/IP
/// service (what is queued is still sent; later reads see the end).
fn shutdown<K: Kernel>(
    files: &mut Files,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    how: i32,
) -> Errno<()> {
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
            return close_number(exchange, handle, number);
        }
    }
    Ok(())
}

/// `fd_close`: a socket the service numbered is closed there too.
pub(crate) fn close<K: Kernel>(
    files: &mut Files,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
) -> Errno<()> {
    let closing = socket(files, fd).ok().and_then(|socket| socket.number);
    let handle = files.slot(fd)?.handle;
    files.close(fd)?;
    match closing {
        Some(number) => close_number(exchange, handle, number),
        None => Ok(()),
    }
}

/// `fd_renumber`: a socket the service numbered that descriptor `to` held
/// is closed there too (dropped silently, it would leak in the service).
pub(crate) fn renumber<K: Kernel>(
    files: &mut Files,
    exchange: &mut Exchange<'_, K>,
    from: i32,
    to: i32,
) -> Errno<()> {
    let closing = if from == to {
        None
    } else {
        socket(files, to).ok().and_then(|socket| socket.number)
    };
    let handle = files.slot(to)?.handle;
    files.renumber(from, to)?;
    match closing {
        Some(number) => close_number(exchange, handle, number),
        None => Ok(()),
    }
}

/// `poll_oneoff` with socket subscriptions and nothing ready at once: one
/// held `Wait` on all of them (one TCP/IP service per poll), asked again
/// while it answers nothing and no clock limits it; `clocks` (their
/// userdata) fire when `timeout_ms` passes with no socket ready.
#[allow(clippy::too_many_arguments, reason = "poll_oneoff's own parameters")]
pub(crate) fn poll<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    subscriptions: &[Subscription],
    clocks: &[u64],
    timeout_ms: Option<u32>,
    events: u32,
    count: u32,
) -> Errno<()> {
    let first = subscriptions.first().ok_or(errno::INVAL)?;
    let handle = files.slot(first.fd)?.handle;
    if subscriptions.len() > MAX_WAIT
        || subscriptions
            .iter()
            .any(|s| files.slot(s.fd).map(|d| d.handle) != Ok(handle))
    {
        return Err(errno::NOTSUP);
    }
    let fired: Vec<Event> = loop {
        listen(files, exchange, handle, subscriptions.iter().map(|s| s.fd))?;
        let request = Request::Wait {
            interests: subscriptions
                .iter()
                .map(|s| interest(files, s.fd, s.write))
                .collect::<Errno<_>>()?,
            timeout_ms: timeout_ms.unwrap_or(WAIT_MS),
        };
        match exchange.ask(handle, &request)? {
            // Nothing ready in time: with no clock, wait again.
            Response::Ready(ready) if ready.is_empty() && timeout_ms.is_none() => {}
            Response::Ready(ready) if ready.is_empty() => {
                break clocks
                    .iter()
                    .map(|&userdata| Event {
                        userdata,
                        error: 0,
                        kind: EVENT_CLOCK,
                    })
                    .collect();
            }
            Response::Ready(ready) => {
                break subscriptions
                    .iter()
                    .filter(|s| {
                        let number = number(files, s.fd).ok();
                        ready.iter().any(|r| {
                            Some(r.socket) == number && if s.write { r.write } else { r.read }
                        })
                    })
                    .map(|s| socket_event(s, 0))
                    .collect();
            }
            // A socket the service no longer knows, say: every
            // subscription is reported with the error, and the call that
            // follows meets it.
            Response::Error(error) => {
                break subscriptions
                    .iter()
                    .map(|s| socket_event(s, net_errno(error)))
                    .collect();
            }
            _ => return Err(errno::IO),
        }
    };
    write_events(memory, events, count, &fired)
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

impl<K: Kernel, M: Memory> Shim<K, M> {
    pub fn sock_accept(&mut self, fd: i32, flags: i32, out: i32) -> i32 {
        self.operation(None, |files, memory, exchange| {
            accept(files, memory, exchange, fd, flags, out.cast_unsigned())
        })
    }

    pub fn sock_recv(
        &mut self,
        fd: i32,
        iovs: i32,
        count: i32,
        flags: i32,
        out: i32,
        out_flags: i32,
    ) -> i32 {
        self.operation(None, |files, memory, exchange| {
            socket(files, fd)?;
            if flags & RECV_PEEK != 0 {
                return Err(errno::NOTSUP);
            }
            store(memory, out_flags.cast_unsigned(), &0u16.to_le_bytes())?;
            let vectors = (iovs.cast_unsigned(), count);
            recv(files, memory, exchange, fd, vectors, out.cast_unsigned())
        })
    }

    pub fn sock_send(&mut self, fd: i32, iovs: i32, count: i32, _flags: i32, out: i32) -> i32 {
        self.operation(None, |files, memory, exchange| {
            let vectors = (iovs.cast_unsigned(), count);
            send(files, memory, exchange, fd, vectors, out.cast_unsigned())
        })
    }

    pub fn sock_shutdown(&mut self, fd: i32, how: i32) -> i32 {
        self.operation(None, |files, _, exchange| {
            shutdown(files, exchange, fd, how)
        })
    }
}
