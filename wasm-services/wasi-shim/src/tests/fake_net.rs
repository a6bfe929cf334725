//! An in-memory TCP/IP service speaking the `net` protocol, as the
//! kernel's tests had it: connections a peer makes, held `Wait`s during
//! which the world may act, and a service that ends or restarts.

use crate::sockets::BACKLOG;
use atoll_abi::net::{self, Interest, MAX_DATA, Request, Response};
use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

/// A connection of the fake service: what the peer sent and what it got.
#[derive(Default)]
pub(super) struct Connection {
    pub(super) incoming: Vec<u8>,
    pub(super) outgoing: Vec<u8>,
    pub(super) peer_closed: bool,
    pub(super) reset: bool,
    pub(super) closed: bool,
}

/// An in-memory TCP/IP service speaking the `net` protocol. Socket numbers
/// start at `base` (a restarted service has another).
#[derive(Default)]
pub(super) struct FakeNet {
    pub(super) next: u32,
    /// Listener number to its port and connections waiting to be accepted.
    pub(super) listeners: BTreeMap<u32, (u16, VecDeque<u32>)>,
    pub(super) connections: BTreeMap<u32, Connection>,
    /// Connections made before anyone listened (the next listener gets them).
    pub(super) unclaimed: VecDeque<u32>,
    /// What happens in the world while a `Wait` is held, one per wait.
    pub(super) later: VecDeque<fn(&mut FakeNet)>,
    /// The service ended: calls get no answer (the kernel answers `EIO`).
    pub(super) dead: bool,
    pub(super) requests: Vec<Request>,
    /// Answers every `Write` with more than was sent.
    pub(super) overclaim: bool,
    /// The answer to the next request, whatever it is.
    pub(super) answer_next: Option<Response>,
}

impl FakeNet {
    pub(super) fn new(base: u32) -> FakeNet {
        FakeNet {
            next: base,
            ..FakeNet::default()
        }
    }

    /// A peer connects to the first listener and sends `data`.
    pub(super) fn connect(&mut self, data: &[u8]) {
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

    pub(super) fn serve(&mut self, request: Request) -> Option<Response> {
        if self.dead {
            return None;
        }
        self.requests.push(request.clone());
        if let Some(answer) = self.answer_next.take() {
            return Some(answer);
        }
        if self.overclaim && matches!(request, Request::Write { .. }) {
            return Some(Response::Written(u32::MAX));
        }
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
