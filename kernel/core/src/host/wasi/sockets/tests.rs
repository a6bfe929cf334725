//! Host tests of WASI sockets against a fake TCP/IP service: the requests
//! each call makes (a blocking call waits in one held `Wait`, never in a
//! loop of retries), `EAGAIN` when non-blocking, `poll_oneoff` readiness, a
//! service that goes away or restarts, and the errno of each misuse, driven
//! through the same plan/answer steps the kernel uses.

use super::super::files::{Preopen, continue_operation};
use super::*;
use alloc::collections::{BTreeMap, VecDeque};

/// A connection of the fake service: what the peer sent and what it got.
#[derive(Default)]
struct Connection {
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    peer_closed: bool,
    reset: bool,
    closed: bool,
}

/// An in-memory TCP/IP service speaking the `net` protocol. Socket numbers
/// start at `base` (a restarted service has another).
#[derive(Default)]
struct FakeNet {
    next: u32,
    /// Listener number to its port and connections waiting to be accepted.
    listeners: BTreeMap<u32, (u16, VecDeque<u32>)>,
    connections: BTreeMap<u32, Connection>,
    /// Connections made before anyone listened (the next listener gets them).
    unclaimed: VecDeque<u32>,
    /// What happens in the world while a `Wait` is held, one per wait.
    later: VecDeque<fn(&mut FakeNet)>,
    /// The service ended: calls get no answer (the kernel answers `EIO`).
    dead: bool,
    requests: Vec<Request>,
}

impl FakeNet {
    fn new(base: u32) -> FakeNet {
        FakeNet {
            next: base,
            ..FakeNet::default()
        }
    }

    /// A peer connects to the first listener and sends `data`.
    fn connect(&mut self, data: &[u8]) {
        let number = self.next;
        self.next += 1;
        let connection = Connection {
            incoming: data.to_vec(),
            ..Connection::default()
        };
        self.connections.insert(number, connection);
        match self.listeners.values_mut().next() {
            Some((_, waiting)) => waiting.push_back(number),
            None => self.unclaimed.push_back(number),
        }
    }

    fn ready(&self, interests: &[Interest]) -> Vec<Interest> {
        interests
            .iter()
            .filter(|interest| {
                if let Some((_, waiting)) = self.listeners.get(&interest.socket) {
                    return interest.read && !waiting.is_empty();
                }
                self.connections.get(&interest.socket).is_some_and(|c| {
                    (interest.read && (!c.incoming.is_empty() || c.peer_closed || c.reset))
                        || interest.write
                })
            })
            .copied()
            .collect()
    }

    fn serve(&mut self, request: Request) -> Option<Response> {
        if self.dead {
            return None;
        }
        self.requests.push(request.clone());
        let known = |fake: &FakeNet, socket: u32| {
            fake.connections
                .get(&socket)
                .filter(|c| !c.closed)
                .is_some()
        };
        Some(match request {
            Request::Listen { port, backlog } => {
                assert_eq!(backlog, BACKLOG);
                let number = self.next;
                self.next += 1;
                let waiting = core::mem::take(&mut self.unclaimed);
                self.listeners.insert(number, (port, waiting));
                Response::Socket(number)
            }
            Request::Accept { listener } => match self.listeners.get_mut(&listener) {
                None => Response::Error(net::Error::NoSocket),
                Some((_, waiting)) => match waiting.pop_front() {
                    Some(socket) => Response::Accepted {
                        socket,
                        peer: net::Address {
                            ip: [10, 0, 2, 2],
                            port: 40000,
                        },
                    },
                    None => Response::Error(net::Error::WouldBlock),
                },
            },
            Request::Read { socket, max } if known(self, socket) => {
                assert!(max <= MAX_DATA);
                let c = self.connections.get_mut(&socket).unwrap();
                if c.reset {
                    Response::Error(net::Error::Reset)
                } else if !c.incoming.is_empty() {
                    let take = c.incoming.len().min(max as usize);
                    Response::Data(c.incoming.drain(..take).collect())
                } else if c.peer_closed {
                    Response::Closed
                } else {
                    Response::Error(net::Error::WouldBlock)
                }
            }
            Request::Write { socket, data } if known(self, socket) => {
                assert!(data.len() <= MAX_DATA as usize);
                let c = self.connections.get_mut(&socket).unwrap();
                c.outgoing.extend_from_slice(&data);
                Response::Written(data.len() as u32)
            }
            Request::Close { socket } if known(self, socket) => {
                self.connections.get_mut(&socket).unwrap().closed = true;
                Response::Done
            }
            Request::Wait {
                interests,
                timeout_ms,
            } => {
                if interests
                    .iter()
                    .any(|i| !self.listeners.contains_key(&i.socket) && !known(self, i.socket))
                {
                    return Some(Response::Error(net::Error::NoSocket));
                }
                let mut ready = self.ready(&interests);
                if ready.is_empty() && timeout_ms > 0 {
                    // Held: time passes, the world may act.
                    if let Some(event) = self.later.pop_front() {
                        event(self);
                        if self.dead {
                            return None;
                        }
                    }
                    ready = self.ready(&interests);
                }
                Response::Ready(ready)
            }
            _ => Response::Error(net::Error::NoSocket),
        })
    }
}

/// Addresses in the test program's memory.
const IOVECS: u32 = 0x100;
const OUT: u32 = 0x200;
const EVENTS: u32 = 0x400;
const BUFFER: u32 = 0x1000;
const MEMORY: usize = 0x2_0000;
/// The TCP/IP service's handle and the listener's port.
const NET: i32 = 2;
const PORT: u16 = 8081;

/// A program given a listening socket on port 8081, with no preopens (so
/// the socket is descriptor 3) or with one (so it is descriptor 4).
struct Program {
    files: Files,
    memory: Vec<u8>,
    net: FakeNet,
}

impl Program {
    fn new(preopens: &[Preopen]) -> Program {
        Program {
            files: Files::new(
                preopens,
                &[Listener {
                    handle: NET,
                    port: PORT,
                    nonblocking: false,
                }],
            ),
            memory: vec![0; MEMORY],
            net: FakeNet::new(1000),
        }
    }

    /// Runs a plan to its end against the fake, as the kernel would: a call
    /// the service never answers ends in `EIO`, with the operation left
    /// behind (the kernel's `Answer::failed`).
    fn drive(&mut self, plan: impl FnOnce(&mut Files, &mut [u8]) -> Errno<Plan>) -> i32 {
        self.files.settle();
        let (mut request, in_flight) = match plan(&mut self.files, &mut self.memory) {
            Err(code) | Ok(Plan::Now(code)) => return code,
            Ok(Plan::Net(request, in_flight)) => (request, in_flight),
            Ok(Plan::Ask(..)) => panic!("a socket call asked a file service"),
        };
        assert_eq!(in_flight.handle, NET);
        self.files.in_flight = Some(in_flight);
        for _ in 0..64 {
            let message = postcard::to_allocvec(&request).unwrap();
            assert!(message.len() <= atoll_abi::MAX_MESSAGE_LEN, "{request:?}");
            let Some(response) = self.net.serve(request) else {
                return errno::IO;
            };
            let reply = postcard::to_allocvec(&response).unwrap();
            match continue_operation(&mut self.files, &mut self.memory, &reply).0 {
                Step::Done(code) => return code,
                Step::Again { handle, message } => {
                    assert_eq!(handle, NET);
                    request = postcard::from_bytes(&message).unwrap();
                }
            }
        }
        panic!("an operation that never ends");
    }

    fn u32_at(&self, at: u32) -> u32 {
        u32::from_le_bytes(
            self.memory[at as usize..at as usize + 4]
                .try_into()
                .unwrap(),
        )
    }

    /// One iovec of `len` bytes at BUFFER, holding `data` first.
    fn iovec(&mut self, data: &[u8], len: u32) {
        self.memory[IOVECS as usize..IOVECS as usize + 4].copy_from_slice(&BUFFER.to_le_bytes());
        self.memory[IOVECS as usize + 4..IOVECS as usize + 8].copy_from_slice(&len.to_le_bytes());
        self.memory[BUFFER as usize..BUFFER as usize + data.len()].copy_from_slice(data);
    }

    fn accept(&mut self, fd: i32) -> Result<i32, i32> {
        match self.drive(|files, memory| plan_accept(files, memory, fd, 0, OUT)) {
            0 => Ok(self.u32_at(OUT) as i32),
            code => Err(code),
        }
    }

    fn recv(&mut self, fd: i32, len: u32) -> Result<Vec<u8>, i32> {
        self.iovec(&[], len);
        match self.drive(|files, memory| plan_recv(files, memory, fd, IOVECS as i32, 1, OUT)) {
            0 => {
                let count = self.u32_at(OUT) as usize;
                Ok(self.memory[BUFFER as usize..BUFFER as usize + count].to_vec())
            }
            code => Err(code),
        }
    }

    fn send(&mut self, fd: i32, data: &[u8]) -> Result<u32, i32> {
        self.iovec(data, data.len() as u32);
        match self.drive(|files, memory| plan_send(files, memory, fd, IOVECS as i32, 1, OUT)) {
            0 => Ok(self.u32_at(OUT)),
            code => Err(code),
        }
    }

    fn set_nonblocking(&mut self, fd: i32) {
        self.files.slot_mut(fd).unwrap().flags |= FDFLAG_NONBLOCK;
    }

    /// `poll_oneoff` on `subscriptions` with a clock after `timeout_ms`:
    /// the events' (userdata, error, kind).
    fn poll(
        &mut self,
        subscriptions: &[(u64, i32, bool)],
        timeout_ms: Option<u32>,
    ) -> Result<Vec<(u64, u16, u8)>, i32> {
        let subscriptions: Vec<Subscription> = subscriptions
            .iter()
            .map(|&(userdata, fd, write)| Subscription {
                userdata,
                fd,
                write,
            })
            .collect();
        let clocks = if timeout_ms.is_some() {
            vec![99]
        } else {
            vec![]
        };
        match self
            .drive(|files, _| plan_poll(files, subscriptions, clocks, timeout_ms, EVENTS, OUT))
        {
            0 => Ok((0..self.u32_at(OUT))
                .map(|index| {
                    let at = (EVENTS + index * 32) as usize;
                    let record = &self.memory[at..at + 32];
                    (
                        u64::from_le_bytes(record[0..8].try_into().unwrap()),
                        u16::from_le_bytes(record[8..10].try_into().unwrap()),
                        record[10],
                    )
                })
                .collect()),
            code => Err(code),
        }
    }
}

fn listen_request() -> Request {
    Request::Listen {
        port: PORT,
        backlog: BACKLOG,
    }
}

#[test]
fn a_listener_is_descriptor_3_without_preopens_and_after_them_with_some() {
    let program = Program::new(&[]);
    let descriptor = program.files.slot(3).unwrap();
    assert!(matches!(descriptor.kind, Kind::Socket(_)));
    assert_eq!(descriptor.handle, NET);
    assert!(program.files.slot(4).is_err());
    let preopen = Preopen {
        guest: "/".into(),
        handle: 1,
        directory: "/".into(),
        read_only: false,
    };
    let program = Program::new(&[preopen]);
    assert_eq!(program.files.slot(3).unwrap().kind, Kind::Directory);
    assert!(is_socket(&program.files, 4));
    // Nothing is asked of the TCP/IP service before the first use.
    assert!(program.net.requests.is_empty());
}

#[test]
fn accept_recv_send_shutdown_and_close_make_their_requests() {
    let mut program = Program::new(&[]);
    program
        .net
        .later
        .push_back(|net| net.connect(b"GET / HTTP/1.1\r\n\r\n"));
    // Blocking accept: listen at first use, nothing waiting, one held wait,
    // then the connection.
    let stream = program.accept(3).unwrap();
    assert_eq!(stream, 4);
    assert_eq!(
        program.net.requests,
        [
            listen_request(),
            Request::Accept { listener: 1000 },
            Request::Wait {
                interests: vec![Interest {
                    socket: 1000,
                    read: true,
                    write: false
                }],
                timeout_ms: WAIT_MS,
            },
            Request::Accept { listener: 1000 },
        ]
    );
    assert!(matches!(
        program.files.slot(4).unwrap().kind,
        Kind::Socket(Socket {
            port: None,
            number: Some(1001),
            ..
        })
    ));
    // A read of 8 bytes, then the rest.
    assert_eq!(program.recv(4, 8).unwrap(), b"GET / HT");
    assert_eq!(program.recv(4, 4096).unwrap(), b"TP/1.1\r\n\r\n");
    // A long write is cut to one message's worth (a short write).
    let long = vec![b'x'; 5000];
    assert_eq!(program.send(4, &long).unwrap(), MAX_DATA);
    assert_eq!(program.send(4, b"done").unwrap(), 4);
    assert_eq!(program.net.connections[&1001].outgoing.len(), 3076);
    // A blocking read with nothing there waits, then sees the peer's end.
    program.net.later.push_back(|net| {
        net.connections.get_mut(&1001).unwrap().peer_closed = true;
    });
    let before = program.net.requests.len();
    assert_eq!(program.recv(4, 100).unwrap(), b"");
    assert_eq!(program.net.requests.len() - before, 3, "read, wait, read");
    // Shutting the sending half closes the connection; writes are refused,
    // reads see the end.
    assert_eq!(
        program.drive(|files, _| plan_shutdown(files, 4, SHUT_WR)),
        0
    );
    assert!(program.net.connections[&1001].closed);
    assert_eq!(program.send(4, b"late"), Err(errno::BADF));
    assert_eq!(program.recv(4, 10).unwrap(), b"");
    assert_eq!(
        program.drive(|files, _| plan_shutdown(files, 4, 7)),
        errno::INVAL
    );
    // Closing it asks nothing more (already closed there); the number is free.
    let asked = program.net.requests.len();
    assert_eq!(program.drive(|files, _| plan_close(files, 4)), 0);
    assert_eq!(program.net.requests.len(), asked);
    assert!(program.files.slot(4).is_err());
    // A second connection, closed by fd_close: a `Close` request.
    program.net.connect(b"");
    let stream = program.accept(3).unwrap();
    assert_eq!(stream, 4);
    assert_eq!(program.drive(|files, _| plan_close(files, 4)), 0);
    assert_eq!(
        program.net.requests.last(),
        Some(&Request::Close { socket: 1002 })
    );
}

#[test]
fn nonblocking_calls_answer_eagain_without_waiting() {
    let mut program = Program::new(&[]);
    program.set_nonblocking(3);
    assert_eq!(program.accept(3), Err(errno::AGAIN));
    assert!(
        !program
            .net
            .requests
            .iter()
            .any(|request| matches!(request, Request::Wait { .. }))
    );
    program.net.connect(b"");
    let stream = program.accept(3).unwrap();
    program.set_nonblocking(stream);
    assert_eq!(program.recv(stream, 10), Err(errno::AGAIN));
    program
        .net
        .connections
        .get_mut(&1001)
        .unwrap()
        .incoming
        .extend_from_slice(b"hi");
    assert_eq!(program.recv(stream, 10).unwrap(), b"hi");
    // A connection accepted with the NONBLOCK flag is non-blocking.
    program.net.connect(b"");
    let flags = i32::from(FDFLAG_NONBLOCK);
    assert_eq!(
        program.drive(|files, memory| plan_accept(files, memory, 3, flags, OUT)),
        0
    );
    let third = program.u32_at(OUT) as i32;
    assert_eq!(program.recv(third, 10), Err(errno::AGAIN));
}

#[test]
fn poll_reports_ready_sockets_and_fires_its_clock_when_none_is() {
    let mut program = Program::new(&[]);
    // Nothing happens: the clock fires (the listener listens first).
    assert_eq!(
        program.poll(&[(7, 3, false)], Some(5)).unwrap(),
        [(99, 0, 0)]
    );
    assert_eq!(program.net.requests[0], listen_request());
    assert_eq!(
        program.net.requests[1],
        Request::Wait {
            interests: vec![Interest {
                socket: 1000,
                read: true,
                write: false
            }],
            timeout_ms: 5,
        }
    );
    // A connection comes while the poll waits: the listener is readable.
    program.net.later.push_back(|net| net.connect(b"x"));
    assert_eq!(
        program.poll(&[(7, 3, false)], Some(1000)).unwrap(),
        [(7, 0, EVENT_FD_READ)]
    );
    let stream = program.accept(3).unwrap();
    // Readable and writable connection, listener not ready.
    let events = program
        .poll(
            &[(7, 3, false), (8, stream, false), (9, stream, true)],
            None,
        )
        .unwrap();
    assert_eq!(events, [(8, 0, EVENT_FD_READ), (9, 0, EVENT_FD_WRITE)]);
    // Without a clock, an empty answer is waited again, not reported.
    program.recv(stream, 10).unwrap();
    program.net.later.push_back(|_| {});
    program.net.later.push_back(|net| net.connect(b""));
    assert_eq!(
        program.poll(&[(7, 3, false)], None).unwrap(),
        [(7, 0, EVENT_FD_READ)]
    );
    // A socket the service no longer knows: every subscription reports it.
    program.net.connections.get_mut(&1001).unwrap().closed = true;
    assert_eq!(
        program.poll(&[(8, stream, false)], None).unwrap(),
        [(8, errno::CONNRESET as u16, EVENT_FD_READ)]
    );
}

#[test]
fn a_service_that_goes_away_gives_eio_and_a_restarted_one_is_listened_on_again() {
    let mut program = Program::new(&[]);
    program.net.connect(b"");
    let stream = program.accept(3).unwrap();
    // The service ends while a blocking accept waits: `EIO`, no hang.
    program.net.later.push_back(|net| net.dead = true);
    assert_eq!(program.accept(3), Err(errno::IO));
    // Still gone: the next calls fail too (the kernel refuses the call).
    assert_eq!(program.recv(stream, 10), Err(errno::IO));
    // A new instance, numbering from elsewhere: the listener listens again
    // by itself; the old connection is reset.
    program.net = FakeNet::new(5000);
    program.net.connect(b"");
    assert_eq!(program.accept(3), Ok(5));
    assert_eq!(
        program.net.requests[..2],
        [Request::Accept { listener: 1001 }, listen_request()]
    );
    assert_eq!(program.recv(stream, 10), Err(errno::CONNRESET));
    assert_eq!(program.send(stream, b"x"), Err(errno::CONNRESET));
    // A reset connection.
    program.net.connections.get_mut(&5000).unwrap().reset = true;
    assert_eq!(program.recv(5, 10), Err(errno::CONNRESET));
    // The service restarts while a blocking accept waits: it listens again
    // and goes on waiting on the new listener.
    program.net.later.push_back(|net| {
        *net = FakeNet::new(7000);
        net.connect(b"");
    });
    assert_eq!(program.accept(3), Ok(6));
    let listens = program.net.requests.iter();
    assert_eq!(listens.filter(|r| **r == listen_request()).count(), 1);
    // An answer that is not the protocol's: `EIO`.
    program.files.settle();
    let mut memory = vec![0u8; 64];
    let (step, _) = advance(
        &mut program.files,
        &mut memory,
        NET,
        Operation::Close,
        &[0xff, 0xff],
    );
    assert_eq!(step, Step::Done(errno::IO));
}

#[test]
fn bad_descriptors_and_wrong_kinds_give_their_errno() {
    let preopen = Preopen {
        guest: "/".into(),
        handle: 1,
        directory: "/".into(),
        read_only: false,
    };
    let mut program = Program::new(&[preopen]);
    // Unknown descriptors.
    for fd in [-1, 0, 2, 9, 4000] {
        assert_eq!(program.accept(fd), Err(errno::BADF), "{fd}");
        assert_eq!(program.recv(fd, 4), Err(errno::BADF), "{fd}");
    }
    // A directory is not a socket; a listener is not a connection, nor a
    // connection a listener.
    assert_eq!(program.accept(3), Err(errno::NOTSOCK));
    assert_eq!(program.recv(4, 4), Err(errno::NOTCONN));
    assert_eq!(program.send(4, b"x"), Err(errno::NOTCONN));
    assert_eq!(
        program.drive(|files, _| plan_shutdown(files, 4, SHUT_RD)),
        errno::NOTCONN
    );
    program.net.connect(b"");
    let stream = program.accept(4).unwrap();
    assert_eq!(program.accept(stream), Err(errno::INVAL));
    // Polls over descriptors of two TCP/IP services are refused.
    program.files.slot_mut(stream).unwrap().handle = NET + 1;
    assert_eq!(
        program.poll(&[(1, 4, false), (2, stream, false)], None),
        Err(errno::NOTSUP)
    );
    // Bad buffers are `EFAULT`, before anything is asked.
    program.files.slot_mut(stream).unwrap().handle = NET;
    let asked = program.net.requests.len();
    assert_eq!(
        program.drive(|files, memory| plan_recv(files, memory, stream, IOVECS as i32, 1, u32::MAX)),
        errno::FAULT
    );
    assert_eq!(
        program.drive(|files, memory| plan_accept(files, memory, 4, 0, u32::MAX - 1)),
        errno::FAULT
    );
    assert_eq!(program.net.requests.len(), asked);
}

#[test]
fn a_service_claiming_more_written_than_sent_is_an_eio() {
    let mut program = Program::new(&[]);
    program.net.connect(b"");
    let stream = program.accept(3).unwrap();
    program.iovec(b"four", 4);
    let plan = plan_send(
        &mut program.files,
        &mut program.memory,
        stream,
        IOVECS as i32,
        1,
        OUT,
    );
    let Ok(Plan::Net(_, in_flight)) = plan else {
        panic!("a send asks the service: {plan:?}");
    };
    program.files.in_flight = Some(in_flight);
    program.memory[OUT as usize..OUT as usize + 4].copy_from_slice(&[0xee; 4]);
    let reply = postcard::to_allocvec(&Response::Written(u32::MAX)).unwrap();
    let (step, _) = continue_operation(&mut program.files, &mut program.memory, &reply);
    assert!(matches!(step, Step::Done(errno::IO)), "{step:?}");
    // The program is not told the lie.
    assert_eq!(program.u32_at(OUT), 0xeeee_eeee);
}

#[test]
fn renumbering_onto_a_connection_closes_it_in_the_service() {
    let mut program = Program::new(&[]);
    program.net.connect(b"");
    program.net.connect(b"");
    assert_eq!(program.accept(3), Ok(4));
    assert_eq!(program.accept(3), Ok(5));
    assert_eq!(program.drive(|files, _| plan_renumber(files, 5, 4)), 0);
    assert_eq!(
        program.net.requests.last(),
        Some(&Request::Close { socket: 1000 })
    );
    // (Both connected before the listener was made: 1000 and 1001.)
    assert!(program.net.connections[&1000].closed);
    assert!(!program.net.connections[&1001].closed);
    assert!(program.files.slot(5).is_err());
    // Onto itself: nothing closed.
    let asked = program.net.requests.len();
    assert_eq!(program.drive(|files, _| plan_renumber(files, 4, 4)), 0);
    assert_eq!(program.net.requests.len(), asked);
    assert!(!program.net.connections[&1001].closed);
}

#[test]
fn accept_with_a_full_table_leaves_the_connection_queued() {
    let mut program = Program::new(&[]);
    program.net.connect(b"");
    program.net.connect(b"");
    assert_eq!(program.accept(3), Ok(4));
    // Fill the table with copies of the connection's descriptor.
    let copy = program.files.slot(4).unwrap().clone();
    while program.files.insert(copy.clone()).is_ok() {}
    let asked = program.net.requests.len();
    assert_eq!(program.accept(3), Err(errno::MFILE));
    assert_eq!(program.net.requests.len(), asked, "nothing accepted");
    // Once a descriptor is free, the connection is still there to take.
    assert_eq!(program.drive(|files, _| plan_close(files, 5)), 0);
    assert_eq!(program.accept(3), Ok(5));
}

#[test]
fn a_connection_shut_down_for_writing_is_ready_at_once_for_poll() {
    let mut program = Program::new(&[]);
    program.net.connect(b"");
    let stream = program.accept(3).unwrap();
    assert_eq!(readiness(&program.files, stream), Ok(true));
    assert_eq!(
        program.drive(|files, _| plan_shutdown(files, stream, SHUT_WR)),
        0
    );
    // Asking the service would fail the whole `poll_oneoff` (ENOTCONN: the
    // kernel has no number for it), which Go's runtime takes as fatal.
    assert_eq!(readiness(&program.files, stream), Ok(false));
    // A listener not yet listening, and an open connection, are asked about.
    assert_eq!(readiness(&program.files, 3), Ok(true));
    assert_eq!(program.recv(stream, 10).unwrap(), b"");
}

#[test]
fn closing_a_connection_its_restarted_service_forgot_succeeds() {
    let mut program = Program::new(&[]);
    program.net.connect(b"");
    let stream = program.accept(3).unwrap();
    // The TCP/IP service restarts: its new instance knows no old number.
    program.net.connections.clear();
    program.net.listeners.clear();
    assert_eq!(program.drive(|files, _| plan_close(files, stream)), 0);
    assert_eq!(
        program.net.requests.last(),
        Some(&Request::Close { socket: 1000 })
    );
    assert!(program.files.slot(stream).is_err());
}
