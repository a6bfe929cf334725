//! Sockets against the fake TCP/IP service: the requests each call makes
//! (a blocking call waits in one held `Wait`, never in a loop of retries),
//! `EAGAIN` when non-blocking, `poll_oneoff` readiness, a service that goes
//! away or restarts, and the errno of each misuse (the kernel's tests,
//! through the WASI functions).

use super::fake_fs::FakeFs;
use super::fake_net::FakeNet;
use super::*;
use crate::files::FDFLAG_NONBLOCK;
use crate::sockets::{BACKLOG, SHUT_RD, SHUT_WR, WAIT_MS};
use crate::stdio::{EVENT_FD_READ, EVENT_FD_WRITE};
use atoll_abi::net::{Interest, MAX_DATA, Request, Response};

/// The listener's port.
const PORT: u16 = 8081;
/// Where `poll` puts its subscriptions.
const SUBSCRIPTIONS: u32 = 0x2000;

/// A program given a listening socket on port 8081, with no preopens (so
/// the socket is descriptor 3) or with one (so it is descriptor 4).
fn sockets(preopens: Vec<Preopen>) -> Program {
    program(preopens, vec![listener(PORT, false)], FakeFs::new())
}

impl Program {
    fn net(&mut self) -> &mut FakeNet {
        &mut self.kernel.net
    }

    fn accept(&mut self, fd: i32) -> Result<i32, i32> {
        match self.sock_accept(fd, 0, OUT as i32) {
            0 => Ok(self.u32_at(OUT) as i32),
            code => Err(code),
        }
    }

    fn recv(&mut self, fd: i32, len: u32) -> Result<Vec<u8>, i32> {
        self.iovec(&[], len);
        match self.sock_recv(fd, IOVECS as i32, 1, 0, OUT as i32, OUT as i32 + 8) {
            0 => Ok(self.bytes(BUFFER, self.u32_at(OUT) as usize)),
            code => Err(code),
        }
    }

    fn send(&mut self, fd: i32, data: &[u8]) -> Result<u32, i32> {
        self.iovec(data, data.len() as u32);
        match self.sock_send(fd, IOVECS as i32, 1, 0, OUT as i32) {
            0 => Ok(self.u32_at(OUT)),
            code => Err(code),
        }
    }

    fn set_nonblocking(&mut self, fd: i32) {
        assert_eq!(self.fd_fdstat_set_flags(fd, i32::from(FDFLAG_NONBLOCK)), 0);
    }

    /// `poll_oneoff` on `subscriptions` (userdata, fd, write) with a clock
    /// after `timeout_ms` (userdata 99): the events' (userdata, error, kind).
    fn poll(
        &mut self,
        subscriptions: &[(u64, i32, bool)],
        timeout_ms: Option<u32>,
    ) -> Result<Vec<(u64, u16, u8)>, i32> {
        let mut records = Vec::new();
        for &(userdata, fd, write) in subscriptions {
            let mut record = [0u8; 48];
            record[0..8].copy_from_slice(&userdata.to_le_bytes());
            record[8] = if write { EVENT_FD_WRITE } else { EVENT_FD_READ };
            record[16..20].copy_from_slice(&fd.to_le_bytes());
            records.extend_from_slice(&record);
        }
        if let Some(ms) = timeout_ms {
            let mut record = [0u8; 48];
            record[0..8].copy_from_slice(&99u64.to_le_bytes());
            record[16..20].copy_from_slice(&1u32.to_le_bytes());
            record[24..32].copy_from_slice(&(u64::from(ms) * 1_000_000).to_le_bytes());
            records.extend_from_slice(&record);
        }
        self.put(SUBSCRIPTIONS, &records);
        let count = (records.len() / 48) as i32;
        match self.poll_oneoff(SUBSCRIPTIONS as i32, EVENTS as i32, count, OUT as i32) {
            0 => Ok((0..self.u32_at(OUT))
                .map(|index| {
                    let at = EVENTS + index * 32;
                    let record = self.bytes(at, 32);
                    (
                        self.u64_at(at),
                        u16::from_le_bytes([record[8], record[9]]),
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

fn root() -> Preopen {
    Preopen {
        guest: "/".into(),
        handle: FS,
        directory: "/".into(),
        read_only: false,
    }
}

#[test]
fn a_listener_is_descriptor_3_without_preopens_and_after_them_with_some() {
    let mut program = sockets(vec![]);
    assert_eq!(
        program.fdstat(3).unwrap().0,
        crate::files::FILETYPE_SOCKET_STREAM
    );
    assert_eq!(program.fdstat(4), Err(errno::BADF));
    let mut program = sockets(vec![root()]);
    assert_eq!(
        program.fdstat(3).unwrap().0,
        crate::files::FILETYPE_DIRECTORY
    );
    assert_eq!(
        program.fdstat(4).unwrap().0,
        crate::files::FILETYPE_SOCKET_STREAM
    );
    // Nothing is asked of the TCP/IP service before the first use.
    assert!(program.net().requests.is_empty());
}

#[test]
fn accept_recv_send_shutdown_and_close_make_their_requests() {
    let mut program = sockets(vec![]);
    program
        .net()
        .later
        .push_back(|net| net.connect(b"GET / HTTP/1.1\r\n\r\n"));
    // Blocking accept: listen at first use, nothing waiting, one held wait,
    // then the connection.
    let stream = program.accept(3).unwrap();
    assert_eq!(stream, 4);
    assert_eq!(
        program.net().requests,
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
    // A read of 8 bytes, then the rest (fd_read on a socket too).
    assert_eq!(program.recv(4, 8).unwrap(), b"GET / HT");
    assert_eq!(program.read(4, 4096).unwrap(), b"TP/1.1\r\n\r\n");
    // A long write is cut to one message's worth (a short write).
    let long = vec![b'x'; 5000];
    assert_eq!(program.send(4, &long).unwrap(), MAX_DATA);
    assert_eq!(program.write(4, b"done").unwrap(), 4);
    assert_eq!(program.net().connections[&1001].outgoing.len(), 3076);
    // A blocking read with nothing there waits, then sees the peer's end.
    program.net().later.push_back(|net| {
        net.connections.get_mut(&1001).unwrap().peer_closed = true;
    });
    let before = program.net().requests.len();
    assert_eq!(program.recv(4, 100).unwrap(), b"");
    assert_eq!(program.net().requests.len() - before, 3, "read, wait, read");
    // Shutting the sending half closes the connection; writes are refused,
    // reads see the end.
    assert_eq!(program.sock_shutdown(4, SHUT_WR), 0);
    assert!(program.net().connections[&1001].closed);
    assert_eq!(program.send(4, b"late"), Err(errno::BADF));
    assert_eq!(program.recv(4, 10).unwrap(), b"");
    assert_eq!(program.sock_shutdown(4, 7), errno::INVAL);
    // Closing it asks nothing more (already closed there); the number is free.
    let asked = program.net().requests.len();
    assert_eq!(program.fd_close(4), 0);
    assert_eq!(program.net().requests.len(), asked);
    assert_eq!(program.fdstat(4), Err(errno::BADF));
    // A second connection, closed by fd_close: a `Close` request.
    program.net().connect(b"");
    let stream = program.accept(3).unwrap();
    assert_eq!(stream, 4);
    assert_eq!(program.fd_close(4), 0);
    assert_eq!(
        program.net().requests.last(),
        Some(&Request::Close { socket: 1002 })
    );
}

#[test]
fn nonblocking_calls_answer_eagain_without_waiting() {
    let mut program = sockets(vec![]);
    program.set_nonblocking(3);
    assert_eq!(program.accept(3), Err(errno::AGAIN));
    assert!(
        !program
            .net()
            .requests
            .iter()
            .any(|request| matches!(request, Request::Wait { .. }))
    );
    program.net().connect(b"");
    let stream = program.accept(3).unwrap();
    assert_eq!(program.recv(stream, 10), Err(errno::AGAIN), "inherited");
    program
        .net()
        .connections
        .get_mut(&1001)
        .unwrap()
        .incoming
        .extend_from_slice(b"hi");
    assert_eq!(program.recv(stream, 10).unwrap(), b"hi");
    // A connection accepted with the NONBLOCK flag is non-blocking.
    let mut program = sockets(vec![]);
    program.net().connect(b"");
    let flags = i32::from(FDFLAG_NONBLOCK);
    assert_eq!(program.sock_accept(3, flags, OUT as i32), 0);
    let stream = program.u32_at(OUT) as i32;
    assert_eq!(program.recv(stream, 10), Err(errno::AGAIN));
    // Other flags are refused.
    assert_eq!(program.sock_accept(3, 1, OUT as i32), errno::INVAL);
}

#[test]
fn poll_reports_ready_sockets_and_fires_its_clock_when_none_is() {
    let mut program = sockets(vec![]);
    // Nothing happens: the clock fires (the listener listens first).
    assert_eq!(
        program.poll(&[(7, 3, false)], Some(5)).unwrap(),
        [(99, 0, 0)]
    );
    assert_eq!(program.net().requests[0], listen_request());
    assert_eq!(
        program.net().requests[1],
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
    program.net().later.push_back(|net| net.connect(b"x"));
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
    program.net().later.push_back(|_| {});
    program.net().later.push_back(|net| net.connect(b""));
    assert_eq!(
        program.poll(&[(7, 3, false)], None).unwrap(),
        [(7, 0, EVENT_FD_READ)]
    );
    // Stdio is ready at once, with the sockets not asked.
    let asked = program.net().requests.len();
    assert_eq!(
        program.poll(&[(1, 0, false), (2, 1, true), (7, 3, false)], None),
        Ok(vec![(1, 0, EVENT_FD_READ), (2, 0, EVENT_FD_WRITE)])
    );
    assert_eq!(program.net().requests.len(), asked);
    // A socket the service no longer knows: every subscription reports it.
    program.net().connections.get_mut(&1001).unwrap().closed = true;
    assert_eq!(
        program.poll(&[(8, stream, false)], None).unwrap(),
        [(8, errno::CONNRESET as u16, EVENT_FD_READ)]
    );
}

#[test]
fn a_service_that_goes_away_gives_eio_and_a_restarted_one_is_listened_on_again() {
    let mut program = sockets(vec![]);
    program.net().connect(b"");
    let stream = program.accept(3).unwrap();
    // The service ends while a blocking accept waits: `EIO`, no hang.
    program.net().later.push_back(|net| net.dead = true);
    assert_eq!(program.accept(3), Err(errno::IO));
    // Still gone: the next calls fail too.
    assert_eq!(program.recv(stream, 10), Err(errno::IO));
    // A new instance, numbering from elsewhere: the listener listens again
    // by itself; the old connection is reset.
    program.kernel.net = FakeNet::new(5000);
    program.net().connect(b"");
    assert_eq!(program.accept(3), Ok(5));
    assert_eq!(
        program.net().requests[..2],
        [Request::Accept { listener: 1001 }, listen_request()]
    );
    assert_eq!(program.recv(stream, 10), Err(errno::CONNRESET));
    assert_eq!(program.send(stream, b"x"), Err(errno::CONNRESET));
    // A reset connection.
    program.net().connections.get_mut(&5000).unwrap().reset = true;
    assert_eq!(program.recv(5, 10), Err(errno::CONNRESET));
    // The service restarts while a blocking accept waits: it listens again
    // and goes on waiting on the new listener.
    program.net().later.push_back(|net| {
        *net = FakeNet::new(7000);
        net.connect(b"");
    });
    assert_eq!(program.accept(3), Ok(6));
    let listens = program.net().requests.iter();
    assert_eq!(listens.filter(|r| **r == listen_request()).count(), 1);
}

#[test]
fn bad_descriptors_and_wrong_kinds_give_their_errno() {
    let mut program = sockets(vec![root()]);
    // Unknown descriptors.
    for fd in [-1, 0, 2, 9, 4000] {
        assert_eq!(program.accept(fd), Err(errno::BADF), "{fd}");
        assert_eq!(program.recv(fd, 4), Err(errno::BADF), "{fd}");
    }
    // A directory is not a socket; a listener is not a connection, nor a
    // connection a listener.
    assert_eq!(program.accept(3), Err(errno::NOTSOCK));
    assert_eq!(program.recv(3, 4), Err(errno::NOTSOCK));
    assert_eq!(program.recv(4, 4), Err(errno::NOTCONN));
    assert_eq!(program.send(4, b"x"), Err(errno::NOTCONN));
    assert_eq!(program.sock_shutdown(4, SHUT_RD), errno::NOTCONN);
    program.net().connect(b"");
    let stream = program.accept(4).unwrap();
    assert_eq!(program.accept(stream), Err(errno::INVAL));
    // Peeking is not supported.
    assert_eq!(
        program.sock_recv(stream, IOVECS as i32, 1, 1, OUT as i32, OUT as i32 + 8),
        errno::NOTSUP
    );
    // Bad buffers are `EFAULT`, before anything is asked.
    let asked = program.net().requests.len();
    program.iovec(&[], 4);
    assert_eq!(
        program.sock_recv(stream, IOVECS as i32, 1, 0, -1, OUT as i32),
        errno::FAULT
    );
    assert_eq!(program.sock_accept(4, 0, -2), errno::FAULT);
    assert_eq!(program.net().requests.len(), asked);
}

#[test]
fn polls_over_two_tcp_ip_services_are_refused() {
    let mut program = program(
        vec![],
        vec![
            listener(80, false),
            Listener {
                handle: NET + 10,
                port: 81,
                nonblocking: false,
            },
        ],
        FakeFs::new(),
    );
    assert_eq!(
        program.poll(&[(1, 3, false), (2, 4, false)], None),
        Err(errno::NOTSUP)
    );
    assert!(program.net().requests.is_empty());
}

#[test]
fn a_service_claiming_more_written_than_sent_is_an_eio() {
    let mut program = sockets(vec![]);
    program.net().connect(b"");
    let stream = program.accept(3).unwrap();
    program.net().overclaim = true;
    program.put(OUT, &[0xee; 4]);
    assert_eq!(program.send(stream, b"four"), Err(errno::IO));
    // The program is not told the lie.
    assert_eq!(program.u32_at(OUT), 0xeeee_eeee);
    // A socket is not broken by it.
    program.net().overclaim = false;
    assert_eq!(program.send(stream, b"four"), Ok(4));
}

#[test]
fn renumbering_onto_a_connection_closes_it_in_the_service() {
    let mut program = sockets(vec![]);
    program.net().connect(b"");
    program.net().connect(b"");
    assert_eq!(program.accept(3), Ok(4));
    assert_eq!(program.accept(3), Ok(5));
    assert_eq!(program.fd_renumber(5, 4), 0);
    assert_eq!(
        program.net().requests.last(),
        Some(&Request::Close { socket: 1000 })
    );
    // (Both connected before the listener was made: 1000 and 1001.)
    assert!(program.net().connections[&1000].closed);
    assert!(!program.net().connections[&1001].closed);
    assert_eq!(program.fdstat(5), Err(errno::BADF));
    // Onto itself: nothing closed.
    let asked = program.net().requests.len();
    assert_eq!(program.fd_renumber(4, 4), 0);
    assert_eq!(program.net().requests.len(), asked);
    assert!(!program.net().connections[&1001].closed);
    assert_eq!(program.fd_renumber(4, 9), errno::BADF);
}

#[test]
fn accept_with_a_full_table_leaves_the_connection_queued() {
    let mut program = program(
        preopens()[..1].to_vec(),
        vec![listener(PORT, false)],
        FakeFs::new(),
    );
    program.net().connect(b"");
    program.net().connect(b"");
    assert_eq!(program.accept(4), Ok(5));
    // Fill the table with directories.
    let mut opened = 0;
    while program.open(3, ".", crate::files::O_DIRECTORY, 0).is_ok() {
        opened += 1;
    }
    assert_eq!(opened, 256 - 3);
    let asked = program.net().requests.len();
    assert_eq!(program.accept(4), Err(errno::MFILE));
    assert_eq!(program.net().requests.len(), asked, "nothing accepted");
    // Once a descriptor is free, the connection is still there to take.
    assert_eq!(program.fd_close(6), 0);
    assert_eq!(program.accept(4), Ok(6));
}

#[test]
fn a_connection_shut_down_for_writing_is_ready_at_once_for_poll() {
    let mut program = sockets(vec![]);
    program.net().connect(b"");
    let stream = program.accept(3).unwrap();
    assert_eq!(program.sock_shutdown(stream, SHUT_WR), 0);
    // Asking the service would fail the whole `poll_oneoff` (ENOTCONN: the
    // shim has no number for it), which Go's runtime takes as fatal.
    let asked = program.net().requests.len();
    assert_eq!(
        program.poll(&[(5, stream, false)], None),
        Ok(vec![(5, 0, EVENT_FD_READ)])
    );
    assert_eq!(program.net().requests.len(), asked);
    assert_eq!(program.recv(stream, 10).unwrap(), b"");
}

#[test]
fn closing_a_connection_its_restarted_service_forgot_succeeds() {
    let mut program = sockets(vec![]);
    program.net().connect(b"");
    let stream = program.accept(3).unwrap();
    // The TCP/IP service restarts: its new instance knows no old number.
    program.net().connections.clear();
    program.net().listeners.clear();
    assert_eq!(program.fd_close(stream), 0);
    assert_eq!(
        program.net().requests.last(),
        Some(&Request::Close { socket: 1000 })
    );
    assert_eq!(program.fdstat(stream), Err(errno::BADF));
}

#[test]
fn an_answer_out_of_protocol_is_eio() {
    let mut program = sockets(vec![]);
    program.net().connect(b"");
    let stream = program.accept(3).unwrap();
    program.net().answer_next = Some(Response::Done);
    assert_eq!(program.recv(stream, 10), Err(errno::IO));
}
