//! Two stacks wired back to back on the host: the `net` protocol end to end
//! over real Ethernet, ARP, IPv4 and TCP/UDP/ICMP frames.

use crate::stack::{Settings, Stack};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::net::{Address, Error, Interest, Link, Request, Response};

const SERVER: u32 = 7;
const CLIENT: u32 = 9;
const A: Settings = Settings {
    ip: [10, 0, 2, 15],
    prefix: 24,
    gateway: [10, 0, 2, 2],
};
const B: Settings = Settings {
    ip: [10, 0, 2, 2],
    prefix: 24,
    gateway: [10, 0, 2, 15],
};

struct Pair {
    a: Stack<u32>,
    b: Stack<u32>,
    now: u64,
    answered: Vec<(u32, Response)>,
}

fn name(id: u32) -> String {
    alloc::format!("service{id}")
}

impl Pair {
    fn new() -> Pair {
        let mut a = Stack::new(A, 1);
        let mut b = Stack::new(B, 2);
        a.link(
            Link::Up {
                mac: [0x52, 0x54, 0, 0, 0, 1],
                link_up: true,
            },
            0,
        );
        b.link(
            Link::Up {
                mac: [0x52, 0x54, 0, 0, 0, 2],
                link_up: true,
            },
            0,
        );
        Pair {
            a,
            b,
            now: 1_000_000,
            answered: Vec::new(),
        }
    }

    /// Runs both stacks, moving frames between them, for `steps` rounds of
    /// one millisecond.
    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.now += 1_000_000;
            self.answered.extend(self.a.poll(self.now));
            self.answered.extend(self.b.poll(self.now));
            for frame in self.a.take_transmitted() {
                self.b.link(Link::Frame(frame), self.now);
            }
            // This way in batches, as the driver sends them.
            let mut batch = atoll_protocols::net::FrameBatch::default();
            for frame in self.b.take_transmitted() {
                if let Err(frame) = batch.push(frame) {
                    self.a.link(Link::Frames(batch.take()), self.now);
                    let _ = batch.push(frame);
                }
            }
            if !batch.is_empty() {
                self.a.link(Link::Frames(batch.take()), self.now);
            }
        }
    }

    fn a(&mut self, owner: u32, request: Request) -> Response {
        let now = self.now;
        self.a
            .handle(owner, request, 0, now, &name)
            .map(|(_, response)| response)
            .expect("answered at once")
    }

    fn b(&mut self, owner: u32, request: Request) -> Response {
        let now = self.now;
        self.b
            .handle(owner, request, 0, now, &name)
            .map(|(_, response)| response)
            .expect("answered at once")
    }
}

fn socket(response: Response) -> u32 {
    match response {
        Response::Socket(socket) => socket,
        other => panic!("expected a socket, got {other:?}"),
    }
}

#[test]
fn tcp_connects_transfers_both_ways_and_closes() {
    let mut pair = Pair::new();
    let listener = socket(pair.a(
        SERVER,
        Request::Listen {
            port: 80,
            backlog: 2,
        },
    ));
    assert_eq!(
        pair.a(SERVER, Request::Accept { listener }),
        Response::Error(Error::WouldBlock)
    );
    let client = socket(pair.b(
        CLIENT,
        Request::Connect {
            to: Address {
                ip: [10, 0, 2, 15],
                port: 80,
            },
        },
    ));
    pair.run(20);
    let Response::Accepted {
        socket: server,
        peer,
    } = pair.a(SERVER, Request::Accept { listener })
    else {
        panic!("no connection to accept");
    };
    assert_eq!(peer.ip, [10, 0, 2, 2]);
    // Another service may not touch it.
    assert_eq!(
        pair.a(
            CLIENT,
            Request::Read {
                socket: server,
                max: 100
            }
        ),
        Response::Error(Error::NotOwner)
    );
    // 100 KiB client to server, through 3 KiB writes and reads.
    let data: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let mut sent = 0;
    let mut received = Vec::new();
    for _ in 0..2000 {
        if sent < data.len() {
            let end = (sent + 3072).min(data.len());
            match pair.b(
                CLIENT,
                Request::Write {
                    socket: client,
                    data: data[sent..end].to_vec(),
                },
            ) {
                Response::Written(n) => sent += n as usize,
                Response::Error(Error::WouldBlock) => {}
                other => panic!("write: {other:?}"),
            }
        }
        pair.run(1);
        match pair.a(
            SERVER,
            Request::Read {
                socket: server,
                max: 3072,
            },
        ) {
            Response::Data(bytes) => received.extend(bytes),
            Response::Error(Error::WouldBlock) => {}
            other => panic!("read: {other:?}"),
        }
        if received.len() == data.len() {
            break;
        }
    }
    assert_eq!(received, data);
    // The server answers, closes; the client reads the answer, then Closed.
    assert_eq!(
        pair.a(
            SERVER,
            Request::Write {
                socket: server,
                data: b"bye".to_vec()
            }
        ),
        Response::Written(3)
    );
    assert_eq!(
        pair.a(SERVER, Request::Close { socket: server }),
        Response::Done
    );
    assert_eq!(
        pair.a(SERVER, Request::Close { socket: server }),
        Response::Error(Error::NoSocket)
    );
    pair.run(20);
    assert_eq!(
        pair.b(
            CLIENT,
            Request::Read {
                socket: client,
                max: 100
            }
        ),
        Response::Data(b"bye".to_vec())
    );
    assert_eq!(
        pair.b(
            CLIENT,
            Request::Read {
                socket: client,
                max: 100
            }
        ),
        Response::Closed
    );
    let Response::Sockets(sockets) = pair.a(SERVER, Request::Sockets) else {
        panic!()
    };
    assert!(
        sockets
            .iter()
            .any(|s| s.state == "LISTEN" && s.local.port == 80 && s.owner == "service7")
    );
}

#[test]
fn waits_are_held_until_ready_or_timed_out() {
    let mut pair = Pair::new();
    let listener = socket(pair.a(
        SERVER,
        Request::Listen {
            port: 8080,
            backlog: 1,
        },
    ));
    let interest = Interest {
        socket: listener,
        read: true,
        write: false,
    };
    let now = pair.now;
    assert!(
        pair.a
            .handle(
                SERVER,
                Request::Wait {
                    interests: vec![interest],
                    timeout_ms: 5000,
                },
                42,
                now,
                &name,
            )
            .is_none()
    );
    let _ = pair.b(
        CLIENT,
        Request::Connect {
            to: Address {
                ip: [10, 0, 2, 15],
                port: 8080,
            },
        },
    );
    pair.run(20);
    assert_eq!(pair.answered, vec![(42, Response::Ready(vec![interest]))]);
    // A wait on nothing ready times out with an empty list.
    pair.answered.clear();
    let server = match pair.a(SERVER, Request::Accept { listener }) {
        Response::Accepted { socket, .. } => socket,
        other => panic!("{other:?}"),
    };
    let now = pair.now;
    let read = Interest {
        socket: server,
        read: true,
        write: false,
    };
    assert!(
        pair.a
            .handle(
                SERVER,
                Request::Wait {
                    interests: vec![read],
                    timeout_ms: 10
                },
                43,
                now,
                &name
            )
            .is_none()
    );
    pair.run(20);
    assert_eq!(pair.answered, vec![(43, Response::Ready(vec![]))]);
    // Someone else's socket cannot be waited on.
    assert_eq!(
        pair.a(
            CLIENT,
            Request::Wait {
                interests: vec![read],
                timeout_ms: 10
            }
        ),
        Response::Error(Error::NotOwner)
    );
}

#[test]
fn udp_and_ping_work_and_bad_requests_are_errors() {
    let mut pair = Pair::new();
    let a = socket(pair.a(SERVER, Request::UdpBind { port: 53 }));
    let b = socket(pair.b(CLIENT, Request::UdpBind { port: 0 }));
    assert_eq!(
        pair.a(SERVER, Request::UdpBind { port: 53 }),
        Response::Error(Error::AddressInUse)
    );
    let to = Address {
        ip: [10, 0, 2, 15],
        port: 53,
    };
    assert_eq!(
        pair.b(
            CLIENT,
            Request::UdpSend {
                socket: b,
                to,
                data: b"query".to_vec()
            }
        ),
        Response::Written(5)
    );
    pair.run(20);
    let Response::Datagram { from, data } = pair.a(SERVER, Request::UdpReceive { socket: a })
    else {
        panic!("no datagram");
    };
    assert_eq!((from.ip, data.as_slice()), ([10, 0, 2, 2], &b"query"[..]));
    // Ping from A to B: held, then answered with a round trip.
    let now = pair.now;
    assert!(
        pair.a
            .handle(
                SERVER,
                Request::Ping {
                    to: [10, 0, 2, 2],
                    timeout_ms: 1000
                },
                5,
                now,
                &name
            )
            .is_none()
    );
    pair.run(20);
    assert!(
        matches!(pair.answered.as_slice(), [(5, Response::Pong { .. })]),
        "{:?}",
        pair.answered
    );
    // Bad arguments are errors, never panics.
    for request in [
        Request::Listen {
            port: 0,
            backlog: 1,
        },
        Request::Listen {
            port: 1,
            backlog: 0,
        },
        Request::Listen {
            port: 1,
            backlog: 200,
        },
        Request::Read { socket: a, max: 0 },
        Request::Write {
            socket: 999,
            data: vec![0; 10],
        },
        Request::Accept { listener: a },
        Request::Write {
            socket: a,
            data: vec![0; 5000],
        },
        Request::Link(Link::Frame(vec![0; 10])),
    ] {
        assert!(matches!(pair.a(SERVER, request), Response::Error(_)));
    }
    // Garbage frames are dropped.
    pair.a.link(Link::Frame(vec![0xff; 60]), pair.now);
    pair.a.link(Link::Frame(vec![]), pair.now);
    pair.run(2);
}

#[test]
fn a_restarted_client_gets_its_port_back() {
    let mut pair = Pair::new();
    pair.a.note_generation(SERVER, 0);
    let old = socket(pair.a(
        SERVER,
        Request::Listen {
            port: 80,
            backlog: 4,
        },
    ));
    pair.a.note_generation(SERVER, 0);
    assert_eq!(
        pair.a(
            SERVER,
            Request::Listen {
                port: 80,
                backlog: 4
            }
        ),
        Response::Error(Error::AddressInUse)
    );
    // The same service id, restarted once: its old listener goes.
    pair.a.note_generation(SERVER, 1);
    let new = socket(pair.a(
        SERVER,
        Request::Listen {
            port: 80,
            backlog: 4,
        },
    ));
    assert_ne!(old, new);
    assert_eq!(
        pair.a(SERVER, Request::Accept { listener: old }),
        Response::Error(Error::NoSocket)
    );
}

#[test]
fn a_burst_of_connections_is_accepted_up_to_the_backlog() {
    let mut pair = Pair::new();
    let listener = socket(pair.a(
        SERVER,
        Request::Listen {
            port: 80,
            backlog: 8,
        },
    ));
    let to = Address {
        ip: [10, 0, 2, 15],
        port: 80,
    };
    // Twelve SYNs arrive together: eight fit the backlog.
    let clients: Vec<u32> = (0..12)
        .map(|_| socket(pair.b(CLIENT, Request::Connect { to })))
        .collect();
    pair.run(50);
    let mut accepted = Vec::new();
    while let Response::Accepted { socket, .. } = pair.a(SERVER, Request::Accept { listener }) {
        accepted.push(socket);
    }
    assert_eq!(accepted.len(), 8);
    // Accepting made room: the refused ones retry (smoltcp sent them RST;
    // a new connect each) and get in.
    for _ in 0..4 {
        let _ = pair.b(CLIENT, Request::Connect { to });
    }
    pair.run(50);
    let mut more = 0;
    while let Response::Accepted { .. } = pair.a(SERVER, Request::Accept { listener }) {
        more += 1;
    }
    assert_eq!(more, 4);
    // Every accepted connection carries data.
    for &socket in &accepted {
        assert_eq!(
            pair.a(
                SERVER,
                Request::Write {
                    socket,
                    data: b"hi".to_vec()
                }
            ),
            Response::Written(2)
        );
    }
    pair.run(20);
    let readable = clients
        .iter()
        .filter(|&&client| {
            pair.b(
                CLIENT,
                Request::Read {
                    socket: client,
                    max: 10,
                },
            ) == Response::Data(b"hi".to_vec())
        })
        .count();
    assert_eq!(readable, 8);
}

#[test]
fn arbitrary_frames_and_requests_never_panic_the_stack() {
    let mut pair = Pair::new();
    let listener = socket(pair.a(
        SERVER,
        Request::Listen {
            port: 80,
            backlog: 4,
        },
    ));
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // A valid frame to mutate: whatever A sends when B connects.
    let _ = pair.b(
        CLIENT,
        Request::Connect {
            to: Address {
                ip: [10, 0, 2, 15],
                port: 80,
            },
        },
    );
    // Run the handshake by hand, keeping a copy of every frame.
    let mut seeds = Vec::new();
    for _ in 0..10 {
        pair.now += 1_000_000;
        let _ = pair.a.poll(pair.now);
        let _ = pair.b.poll(pair.now);
        for frame in pair.a.take_transmitted() {
            seeds.push(frame.clone());
            pair.b.link(Link::Frame(frame), pair.now);
        }
        for frame in pair.b.take_transmitted() {
            seeds.push(frame.clone());
            pair.a.link(Link::Frame(frame), pair.now);
        }
    }
    assert!(!seeds.is_empty());
    for round in 0..5_000 {
        let mut frame = seeds[round % seeds.len()].clone();
        for _ in 0..(next() % 8) {
            if frame.is_empty() {
                break;
            }
            let at = (next() as usize) % frame.len();
            frame[at] = next() as u8;
        }
        frame.truncate((next() as usize) % 1600);
        pair.now += 1_000;
        pair.a.link(Link::Frame(frame), pair.now);
        let _ = pair.a.poll(pair.now);
        let _ = pair.a.take_transmitted();
        // And requests with arbitrary numbers.
        let socket = if next() % 2 == 0 {
            listener
        } else {
            next() as u32
        };
        let request = match next() % 6 {
            0 => Request::Read {
                socket,
                max: next() as u32,
            },
            1 => Request::Write {
                socket,
                data: vec![0; (next() % 4000) as usize],
            },
            2 => Request::Accept { listener: socket },
            3 => Request::Close { socket },
            4 => Request::UdpReceive { socket },
            _ => Request::Listen {
                port: next() as u16,
                backlog: next() as u8,
            },
        };
        let _ = pair.a.handle(SERVER, request, 0, pair.now, &name);
    }
}

/// The textbook Internet checksum (16-bit big-endian words), for comparison.
fn reference_tcp_checksum(source: [u8; 4], destination: [u8; 4], segment: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let high = u32::from(pair[0]) << 8;
            sum += high | pair.get(1).map_or(0, |&low| u32::from(low));
        }
    };
    add(&source);
    add(&destination);
    add(&[0, 6]);
    add(&(segment.len() as u16).to_be_bytes());
    add(segment);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn sent_tcp_checksums_match_the_textbook_sum_for_every_length() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for payload in (0..64).chain([1459, 1460, 1461, 1479, 1480]) {
        let mut frame = vec![0u8; 14 + 20 + 20 + payload];
        for byte in frame.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        frame[12] = 0x08;
        frame[13] = 0x00;
        frame[14] = 0x45;
        let total = (20 + 20 + payload) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame[23] = 6;
        let source: [u8; 4] = frame[26..30].try_into().unwrap();
        let destination: [u8; 4] = frame[30..34].try_into().unwrap();
        crate::stack::fill_tcp_checksum(&mut frame);
        let mut segment = frame[34..].to_vec();
        let filled = u16::from_be_bytes([segment[16], segment[17]]);
        segment[16] = 0;
        segment[17] = 0;
        assert_eq!(
            filled,
            reference_tcp_checksum(source, destination, &segment),
            "payload of {payload} bytes"
        );
    }
    // Not IPv4 TCP, or cut short: left alone.
    let mut udp = vec![0x11u8; 60];
    udp[12] = 0x08;
    udp[13] = 0x00;
    udp[14] = 0x45;
    udp[23] = 17;
    let before = udp.clone();
    crate::stack::fill_tcp_checksum(&mut udp);
    assert_eq!(udp, before);
    let mut short = vec![0u8; 20];
    short[12] = 0x08;
    crate::stack::fill_tcp_checksum(&mut short);
    assert_eq!(
        short,
        vec![0u8; 20]
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i == 12 { 8 } else { b })
            .collect::<Vec<u8>>()
    );
}
