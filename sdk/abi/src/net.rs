//! Sockets: TCP and UDP over IPv4, ICMP echo, and the link between the
//! TCP/IP service and its network driver (served by the netstack service).
//!
//! Clients `call` the `net` endpoint. Every call is answered at once except
//! [`Request::Wait`] and [`Request::Ping`], which the server holds until
//! something happens or the timeout passes. Sockets are numbered by the
//! server and belong to the service that made them: another service naming
//! one gets [`Error::NotOwner`]. No call blocks on the network: a read with
//! nothing buffered answers [`Error::WouldBlock`], a write takes what fits in
//! the send buffer (`Written(n)`, possibly fewer than sent: that is the
//! backpressure) and answers `WouldBlock` when nothing fits; a client waits
//! with `Wait` for the sockets it cares about to become ready.
//!
//! The network driver also speaks to this endpoint, with [`Request::Link`]
//! messages (sent, never called); the server takes them only from the
//! service named [`LINK_SERVICE`].
//!
//! The WASI shim speaks it on a WASI program's behalf, for the listening
//! sockets `system.toml` gives the program (`listen`); servers see such
//! calls as the program's own. Variants are only ever added at the end.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

pub const ENDPOINT: &str = "net";

/// The service whose `Link` messages the TCP/IP service accepts.
pub const LINK_SERVICE: &str = "virtio-net";

/// The most bytes one `Read`, `Write`, `UdpSend` or `UdpReceive` carries.
pub const MAX_DATA: u32 = 3072;

/// The most sockets one `Wait` names.
pub const MAX_WAIT: usize = 128;

/// A socket's number.
pub type Socket = u32;

/// An IPv4 address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub ip: [u8; 4],
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Listens for TCP connections on `port`, keeping up to `backlog`
    /// (1..=32) handshakes in progress at once.
    Listen { port: u16, backlog: u8 },
    /// A connection established on listening socket `listener`:
    /// `Accepted`, or `WouldBlock` if none is waiting.
    Accept { listener: Socket },
    /// Opens a TCP connection; the socket is writable once established, and
    /// reads `Closed`/`Reset` if it fails.
    Connect { to: Address },
    /// Up to `max` (at most MAX_DATA) received bytes.
    Read { socket: Socket, max: u32 },
    /// Queues `data` (at most MAX_DATA) for sending; answers how much fitted.
    Write {
        socket: Socket,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Closes the sending half once what is queued has been sent; the socket
    /// number is released (its remaining bytes go on in the background).
    Close { socket: Socket },
    /// Drops the connection at once (RST) and releases the number.
    Abort { socket: Socket },
    /// A UDP socket on `port` (0: any free port).
    UdpBind { port: u16 },
    /// Sends one datagram.
    UdpSend {
        socket: Socket,
        to: Address,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The oldest datagram received, or `WouldBlock`.
    UdpReceive { socket: Socket },
    /// Answers when one of `interests` is ready (at once if one already is)
    /// or after `timeout_ms` with an empty list. At most MAX_WAIT entries.
    Wait {
        interests: Vec<Interest>,
        timeout_ms: u32,
    },
    /// ICMP echo to `to`: answered with the round trip or `TimedOut`. The
    /// service numbers the echo requests itself (callers share one ICMP
    /// identifier), so replies cannot be confused between callers.
    Ping { to: [u8; 4], timeout_ms: u32 },
    /// The interface: addresses, link state, counters.
    Interface,
    /// Every socket, for `netstat`.
    Sockets,
    /// From the network driver only (see [`LINK_SERVICE`]).
    Link(Link),
}

/// What the driver tells the TCP/IP service (with `send`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Link {
    /// The driver (re)started: the device's MAC address and link state.
    Up { mac: [u8; 6], link_up: bool },
    /// The link went up or down.
    State { link_up: bool },
    /// One received Ethernet frame (without the virtio header).
    Frame(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Several received frames, in order, as many as fit in one message
    /// (see [`FrameBatch`]): one message per batch instead of per frame.
    Frames(Vec<serde_bytes::ByteBuf>),
}

/// Frames gathered for one `Link::Frames` or `nic::Request::Frames`
/// message: [`FrameBatch::push`] says when the next frame no longer fits
/// (the message limit, `MAX_MESSAGE_LEN`, holds two full-size frames or
/// dozens of ACKs).
#[derive(Debug, Default)]
pub struct FrameBatch {
    frames: Vec<serde_bytes::ByteBuf>,
    bytes: usize,
}

impl FrameBatch {
    /// Bytes of frames and their length prefixes one message carries, with
    /// room for the message's own tags and count.
    pub const BUDGET: usize = crate::MAX_MESSAGE_LEN - 16;
    /// Frames one message carries at most: half the virtio-net driver's 64
    /// transmit slots, which it hands to the device once per message (71
    /// bare ACKs fit in the byte budget: the frames past the free slots
    /// were dropped even with the device idle).
    pub const MAX_FRAMES: usize = 32;
    /// A frame's length prefix (a postcard varint) at most.
    const PREFIX: usize = 3;

    /// Adds `frame` if it fits; gives it back if it does not (send the
    /// batch, then start the next with it).
    pub fn push(&mut self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        let cost = frame.len() + Self::PREFIX;
        let full = self.bytes + cost > Self::BUDGET || self.frames.len() >= Self::MAX_FRAMES;
        if full && !self.frames.is_empty() {
            return Err(frame);
        }
        self.bytes += cost;
        self.frames.push(serde_bytes::ByteBuf::from(frame));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// The frames gathered, leaving the batch empty.
    pub fn take(&mut self) -> Vec<serde_bytes::ByteBuf> {
        self.bytes = 0;
        core::mem::take(&mut self.frames)
    }
}

/// Which readiness `Wait` looks for on one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    pub socket: Socket,
    /// Data, end of stream or an error to read; for a listener, a connection
    /// to accept; for UDP, a datagram.
    pub read: bool,
    /// Room in the send buffer (or the connection's end, to report it).
    pub write: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Socket(Socket),
    Accepted {
        socket: Socket,
        peer: Address,
    },
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The peer closed its sending half and everything it sent was read.
    Closed,
    Written(u32),
    Datagram {
        from: Address,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The sockets of a `Wait` that are ready (empty: timed out).
    Ready(Vec<Interest>),
    Pong {
        rtt_us: u64,
    },
    Interface(Interface),
    Sockets(Vec<SocketInfo>),
    Done,
    Error(Error),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub mac: [u8; 6],
    /// Whether the driver has announced itself since this service started.
    pub driver: bool,
    pub link_up: bool,
    pub ip: [u8; 4],
    pub prefix: u8,
    pub gateway: [u8; 4],
    /// The address, prefix and gateway come from a DHCP lease (else: the
    /// static configuration).
    pub dhcp: bool,
    /// The DNS server the lease named.
    pub dns: Option<[u8; 4]>,
    pub mtu: u32,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames the driver's queue refused (TCP sends them again).
    pub tx_dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub socket: Socket,
    /// `tcp`, `udp`.
    pub kind: String,
    pub local: Address,
    /// Zero for listeners and unbound UDP.
    pub remote: Address,
    /// The TCP state as smoltcp names it (`Listen`, `Established`, ...).
    pub state: String,
    /// The owning service's name.
    pub owner: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Error {
    /// Nothing to read, no room to write, no connection to accept: wait.
    WouldBlock,
    /// No such socket (never made, or already closed).
    NoSocket,
    /// The socket belongs to another service.
    NotOwner,
    /// The operation does not apply to this kind of socket or its state
    /// (e.g. `Read` on a listener, `Write` after `Close`).
    InvalidState,
    /// A port already taken, or port 0 where one is needed.
    AddressInUse,
    /// An argument out of range (`backlog`, `max`, too many interests, a
    /// payload over MAX_DATA).
    InvalidArgument,
    /// The peer reset the connection, or it could not be made.
    Reset,
    /// No more sockets or buffers.
    NoResources,
    /// `Ping`: no answer in time.
    TimedOut,
    /// No driver has announced a link yet.
    NoLink,
    /// A `Link` message from a service other than the driver.
    NotPermitted,
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(match self {
            Error::WouldBlock => "would block",
            Error::NoSocket => "no such socket",
            Error::NotOwner => "socket owned by another service",
            Error::InvalidState => "not possible in the socket's state",
            Error::AddressInUse => "address in use",
            Error::InvalidArgument => "invalid argument",
            Error::Reset => "connection reset or refused",
            Error::NoResources => "out of sockets or buffers",
            Error::TimedOut => "timed out",
            Error::NoLink => "no network link",
            Error::NotPermitted => "not permitted",
        })
    }
}

/// What the TCP/IP service sends the driver (on the driver's `nic` endpoint).
pub mod nic {
    use alloc::vec::Vec;
    use serde::{Deserialize, Serialize};

    pub const ENDPOINT: &str = "nic";

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Request {
        /// Announce yourself again (`Link::Up`): the TCP/IP service restarted.
        Hello,
        /// Transmit one Ethernet frame (at most 1514 bytes).
        Frame(#[serde(with = "serde_bytes")] Vec<u8>),
        /// Transmit several frames, in order (a `super::FrameBatch`).
        Frames(Vec<serde_bytes::ByteBuf>),
    }
}

#[cfg(test)]
mod tests {
    use super::FrameBatch;

    #[test]
    fn a_batch_of_bare_acks_fits_the_drivers_transmit_slots() {
        // The driver notifies the device once per message, so slots do not
        // come back within one: a batch must not hold more frames than it
        // has slots (64). Before: 71 frames of 54 bytes (bare TCP ACKs).
        let mut batch = FrameBatch::default();
        while batch.push(alloc::vec![0; 54]).is_ok() {}
        assert!(batch.len() <= 64, "{} frames in one batch", batch.len());
        assert_eq!(batch.len(), FrameBatch::MAX_FRAMES);
    }
}
