//! The TCP/IP state machine behind the `net` protocol: smoltcp, the socket
//! table with its owners, held `Wait`s and `Ping`s. Pure logic with no host
//! calls: frames go in with [`Stack::link`] and out through
//! [`Stack::take_transmitted`], so host tests can wire two stacks together.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::net::{
    Address, Error, Interest, Interface as InterfaceInfo, Link, MAX_DATA, MAX_WAIT, Request,
    Response, Socket, SocketInfo,
};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, icmp, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpEndpoint,
    IpListenEndpoint, Ipv4Address, Ipv4Cidr,
};

/// The addresses QEMU's user networking expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub ip: [u8; 4],
    pub prefix: u8,
    pub gateway: [u8; 4],
}

impl Settings {
    pub const QEMU_USER: Settings = Settings {
        ip: [10, 0, 2, 15],
        prefix: 24,
        gateway: [10, 0, 2, 2],
    };
}

/// Per-connection buffers.
const TCP_RECEIVE_BUFFER: usize = 16 * 1024;
const TCP_SEND_BUFFER: usize = 32 * 1024;
const UDP_PACKETS: usize = 16;
const UDP_BUFFER: usize = 16 * 1024;
/// The most sockets of all kinds at once (listeners' pools count).
const MAX_SOCKETS: usize = 256;
const MAX_BACKLOG: u8 = 32;
/// Sockets of a listener kept in the Listen state.
const SPARE_LISTENERS: usize = 2;
/// A connection with no progress for this long is dropped.
const TCP_TIMEOUT: Duration = Duration::from_secs(60);
const ICMP_IDENT: u16 = 0x4154;
/// Passes of sending per poll at most (each sends at most one segment per
/// socket): a bound in case smoltcp said a socket had something due and
/// then sent it without end; what is left goes at the next poll.
const MAX_SENDING_PASSES: usize = 256;
const MTU: usize = 1514;

/// Frames between the stack and the driver.
struct Wire {
    received: VecDeque<Vec<u8>>,
    transmitted: Vec<Vec<u8>>,
}

struct ReceiveToken(Vec<u8>);
struct TransmitToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for ReceiveToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TransmitToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        fill_tcp_checksum(&mut frame);
        self.0.push(frame);
        result
    }
}

/// Offsets in an Ethernet frame carrying IPv4.
const ETHERNET_HEADER: usize = 14;
const TCP_CHECKSUM_AT: usize = 16;

/// Fills in the TCP checksum of `frame` if it is an IPv4 TCP segment (smoltcp
/// leaves it zero: the device's capabilities say it does not compute TCP
/// checksums on transmit). smoltcp sums 16 bits at a time, about 3 Wasm
/// instructions per byte, the largest single part of sending a full segment
/// interpreted; this sums 64 bits at a time in little-endian order (the
/// Internet checksum does not depend on byte order, RFC 1071) and swaps once.
pub(crate) fn fill_tcp_checksum(frame: &mut [u8]) {
    let Some(ip) = frame.get(ETHERNET_HEADER..) else {
        return;
    };
    let ipv4 = frame.get(12..14) == Some(&[0x08, 0x00][..]);
    let (Some(&version_ihl), Some(&protocol)) = (ip.first(), ip.get(9)) else {
        return;
    };
    if !ipv4 || version_ihl >> 4 != 4 || protocol != 6 {
        return;
    }
    let header = usize::from(version_ihl & 0x0f) * 4;
    let total = ip.get(2..4).map_or(0, |bytes| {
        usize::from(u16::from_be_bytes([bytes[0], bytes[1]]))
    });
    let (Some(source), Some(destination)) = (ip.get(12..16), ip.get(16..20)) else {
        return;
    };
    let pseudo = [
        u16::from_be_bytes([source[0], source[1]]),
        u16::from_be_bytes([source[2], source[3]]),
        u16::from_be_bytes([destination[0], destination[1]]),
        u16::from_be_bytes([destination[2], destination[3]]),
        6,
    ];
    let Some(segment_len) = total.checked_sub(header) else {
        return;
    };
    let Ok(length) = u16::try_from(segment_len) else {
        return;
    };
    let start = ETHERNET_HEADER + header;
    let Some(segment) = frame.get_mut(start..start + segment_len) else {
        return;
    };
    let Some(field) = segment.get_mut(TCP_CHECKSUM_AT..TCP_CHECKSUM_AT + 2) else {
        return;
    };
    field.copy_from_slice(&[0, 0]);
    let mut sum = u64::from(fold(sum_le(segment)).swap_bytes());
    for word in pseudo.into_iter().chain([length]) {
        sum += u64::from(word);
    }
    let checksum = !fold(sum);
    if let Some(field) = segment.get_mut(TCP_CHECKSUM_AT..TCP_CHECKSUM_AT + 2) {
        field.copy_from_slice(&checksum.to_be_bytes());
    }
}

/// The ones'-complement sum of `data` read as little-endian 16-bit words
/// (an odd last byte padded with zero), not yet folded.
fn sum_le(data: &[u8]) -> u64 {
    let (words, rest) = data.as_chunks::<8>();
    let mut sum = 0u64;
    for word in words {
        let word = u64::from_le_bytes(*word);
        sum += (word & 0xffff_ffff) + (word >> 32);
    }
    let (pairs, last) = rest.as_chunks::<2>();
    for pair in pairs {
        sum += u64::from(u16::from_le_bytes(*pair));
    }
    if let Some(&byte) = last.first() {
        sum += u64::from(byte);
    }
    sum
}

/// Folds a ones'-complement sum to 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

impl phy::Device for Wire {
    type RxToken<'a> = ReceiveToken;
    type TxToken<'a> = TransmitToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(ReceiveToken, TransmitToken<'_>)> {
        let frame = self.received.pop_front()?;
        Some((ReceiveToken(frame), TransmitToken(&mut self.transmitted)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TransmitToken<'_>> {
        Some(TransmitToken(&mut self.transmitted))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MTU;
        // Received segments are checked by smoltcp; sent ones get their
        // checksum from `fill_tcp_checksum`.
        capabilities.checksum.tcp = phy::Checksum::Rx;
        capabilities
    }
}

enum Kind {
    Tcp(SocketHandle),
    /// Connections to `port`: up to `backlog` sockets, of which at most
    /// [`SPARE_LISTENERS`] in the Listen state and the others have left it (handshake in
    /// progress or done) and wait for `Accept`. Refilled after every
    /// received frame, so a burst of connections finds a listening socket
    /// each; the spares are few because every socket costs smoltcp work on
    /// each poll.
    Listener {
        port: u16,
        backlog: u8,
        pool: Vec<SocketHandle>,
    },
    Udp(SocketHandle),
}

struct Entry {
    owner: u32,
    kind: Kind,
}

/// A held `Wait` or `Ping`.
struct Held<T> {
    token: T,
    owner: u32,
    deadline: Instant,
    what: HeldKind,
}

enum HeldKind {
    Wait(Vec<Interest>),
    Ping { sequence: u16, sent: Instant },
}

/// Counters for `Interface`.
#[derive(Default)]
struct Counters {
    rx_frames: u64,
    rx_bytes: u64,
    tx_frames: u64,
    tx_bytes: u64,
}

/// The TCP/IP service's state. `T` is what answers a held call (a reply
/// token in the service, anything in tests).
pub struct Stack<T> {
    /// The static addresses, used until a DHCP lease comes and after one
    /// is lost.
    fallback: Settings,
    /// The addresses in use.
    settings: Settings,
    /// The DHCP client's socket (once the link is up) and whether the
    /// addresses in use come from its lease; the DNS server it named.
    dhcp: Option<SocketHandle>,
    leased: bool,
    dns: Option<[u8; 4]>,
    /// Address changes since the last `take_address_change` (for the log).
    address_changed: bool,
    seed: u64,
    wire: Wire,
    interface: Option<Interface>,
    mac: [u8; 6],
    link_up: bool,
    sockets: SocketSet<'static>,
    table: BTreeMap<Socket, Entry>,
    /// Closed by their owner, finishing in the background.
    closing: Vec<SocketHandle>,
    next_socket: Socket,
    held: Vec<Held<T>>,
    icmp: Option<SocketHandle>,
    next_sequence: u16,
    counters: Counters,
    pub tx_dropped: u64,
    /// Each client's generation (its restart count) when it last made a
    /// socket: a new one means a new instance, whose predecessor's sockets
    /// are dropped.
    generations: BTreeMap<u32, u32>,
}

fn to_instant(now_ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(now_ns / 1000).unwrap_or(i64::MAX))
}

fn ipv4(address: [u8; 4]) -> Ipv4Address {
    Ipv4Address::from(address)
}

fn address_of(endpoint: Option<IpEndpoint>) -> Address {
    match endpoint {
        Some(IpEndpoint {
            addr: IpAddress::Ipv4(ip),
            port,
        }) => Address {
            ip: ip.octets(),
            port,
        },
        _ => Address {
            ip: [0; 4],
            port: 0,
        },
    }
}

fn tcp_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; TCP_RECEIVE_BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; TCP_SEND_BUFFER]),
    );
    socket.set_timeout(Some(TCP_TIMEOUT));
    socket.set_nagle_enabled(false);
    socket
}

/// Whether a pooled listening socket has finished its handshake (or got
/// past it: data and even a FIN may have come already).
fn handshake_done(state: tcp::State) -> bool {
    !matches!(
        state,
        tcp::State::Listen | tcp::State::SynReceived | tcp::State::Closed
    )
}

/// Drops the listeners' sockets that closed before being accepted, and
/// brings each listener back to [`SPARE_LISTENERS`] listening sockets while
/// its backlog has room.
fn refill_listeners(table: &mut BTreeMap<Socket, Entry>, sockets: &mut SocketSet<'static>) {
    for entry in table.values_mut() {
        let Kind::Listener {
            port,
            backlog,
            pool,
        } = &mut entry.kind
        else {
            continue;
        };
        pool.retain(|&handle| {
            let closed = sockets.get::<tcp::Socket>(handle).state() == tcp::State::Closed;
            if closed {
                sockets.remove(handle);
            }
            !closed
        });
        let mut listening = pool
            .iter()
            .filter(|&&handle| sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen)
            .count();
        // Listening sockets count against the backlog too, so that at most
        // `backlog` connections can be pending.
        while listening < SPARE_LISTENERS
            && pool.len() < usize::from(*backlog)
            && sockets.iter().count() < MAX_SOCKETS
        {
            let mut socket = tcp_socket();
            if socket.listen(*port).is_err() {
                break;
            }
            pool.push(sockets.add(socket));
            listening += 1;
        }
    }
}

impl<T> Stack<T> {
    /// A stack with no link yet (it waits for the driver's `Link::Up`).
    pub fn new(settings: Settings, seed: u64) -> Stack<T> {
        Stack {
            fallback: settings,
            settings,
            dhcp: None,
            leased: false,
            dns: None,
            address_changed: false,
            seed,
            wire: Wire {
                received: VecDeque::new(),
                transmitted: Vec::new(),
            },
            interface: None,
            mac: [0; 6],
            link_up: false,
            sockets: SocketSet::new(Vec::new()),
            table: BTreeMap::new(),
            closing: Vec::new(),
            // Numbers start at a random point, so that a client holding
            // numbers from a previous instance (before a restart) gets
            // `NoSocket`, not someone else's socket.
            next_socket: (seed % 0x4000_0000) as u32 + 1,
            held: Vec::new(),
            icmp: None,
            next_sequence: 1,
            counters: Counters::default(),
            tx_dropped: 0,
            generations: BTreeMap::new(),
        }
    }

    /// How many smoltcp sockets there are (listeners' pools, closing ones
    /// and DHCP included): each costs work on every poll.
    pub fn socket_count(&self) -> usize {
        self.sockets.iter().count()
    }

    /// Whether a driver has announced a MAC address.
    pub fn has_link(&self) -> bool {
        self.interface.is_some()
    }

    /// A message from the driver.
    pub fn link(&mut self, link: Link, now_ns: u64) {
        match link {
            Link::Up { mac, link_up } => {
                self.link_up = link_up;
                self.set_mac(mac, now_ns);
            }
            Link::State { link_up } => self.link_up = link_up,
            Link::Frames(frames) => {
                for frame in frames {
                    self.link(Link::Frame(frame.into_vec()), now_ns);
                }
            }
            Link::Frame(frame) => {
                if self.interface.is_some() && frame.len() <= MTU {
                    self.counters.rx_frames += 1;
                    self.counters.rx_bytes += frame.len() as u64;
                    // Bounded: a flood beyond what one poll takes is dropped.
                    if self.wire.received.len() < 512 {
                        self.wire.received.push_back(frame);
                    }
                }
            }
        }
    }

    fn set_mac(&mut self, mac: [u8; 6], now_ns: u64) {
        let address = EthernetAddress(mac);
        // smoltcp refuses (panics on) a multicast or zero address.
        if !address.is_unicast() {
            return;
        }
        self.mac = mac;
        if let Some(interface) = self.interface.as_mut() {
            interface.set_hardware_addr(HardwareAddress::Ethernet(address));
            return;
        }
        let mut config = Config::new(HardwareAddress::Ethernet(address));
        config.random_seed = self.seed;
        let interface = Interface::new(config, &mut self.wire, to_instant(now_ns));
        self.interface = Some(interface);
        self.apply(self.fallback, false, None);
        // A DHCP client runs beside the static addresses and replaces them
        // with its lease.
        self.dhcp = Some(self.sockets.add(dhcpv4::Socket::new()));
    }

    /// Puts `settings` on the interface.
    fn apply(&mut self, settings: Settings, leased: bool, dns: Option<[u8; 4]>) {
        let Some(interface) = self.interface.as_mut() else {
            return;
        };
        interface.update_ip_addrs(|addresses| {
            addresses.clear();
            let _ = addresses.push(IpCidr::new(
                IpAddress::Ipv4(ipv4(settings.ip)),
                settings.prefix,
            ));
        });
        interface.routes_mut().remove_default_ipv4_route();
        let _ = interface
            .routes_mut()
            .add_default_ipv4_route(ipv4(settings.gateway));
        self.settings = settings;
        self.leased = leased;
        self.dns = dns;
        self.address_changed = true;
    }

    /// The addresses in use and whether they come from a DHCP lease, if they
    /// changed since the last call.
    pub fn take_address_change(&mut self) -> Option<(Settings, bool)> {
        core::mem::take(&mut self.address_changed).then_some((self.settings, self.leased))
    }

    /// Takes the DHCP client's news: a lease (applied) or its loss (back to
    /// the static addresses).
    fn dhcp_events(&mut self) {
        let Some(handle) = self.dhcp else {
            return;
        };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(config)) => {
                let address: Ipv4Cidr = config.address;
                Some((
                    Settings {
                        ip: address.address().octets(),
                        prefix: address.prefix_len(),
                        gateway: config
                            .router
                            .map_or(self.fallback.gateway, |router| router.octets()),
                    },
                    config.dns_servers.first().map(|dns| dns.octets()),
                ))
            }
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match event {
            Some((settings, dns)) => self.apply(settings, true, dns),
            None => self.apply(self.fallback, false, None),
        }
    }

    /// Frames for the driver since the last call.
    pub fn take_transmitted(&mut self) -> Vec<Vec<u8>> {
        let frames = core::mem::take(&mut self.wire.transmitted);
        for frame in &frames {
            self.counters.tx_frames += 1;
            self.counters.tx_bytes += frame.len() as u64;
        }
        frames
    }

    /// Runs the protocols: takes the received frames, sends what is due,
    /// refills listeners, frees finished sockets. Returns the held calls that
    /// are now answered.
    pub fn poll(&mut self, now_ns: u64) -> Vec<(T, Response)> {
        self.poll_marked(now_ns, &mut |_| {})
    }

    /// [`Stack::poll`], calling `mark` after each of its phases (1:
    /// maintenance, 2: received frames, 5: a pass of sending that sent
    /// something, 3: the end of sending (a last pass that sent nothing, or
    /// the check that nothing is due), 4: DHCP and sockets' upkeep), for the
    /// service's measurements.
    pub fn poll_marked(&mut self, now_ns: u64, mark: &mut dyn FnMut(u8)) -> Vec<(T, Response)> {
        let now = to_instant(now_ns);
        if let Some(interface) = self.interface.as_mut() {
            interface.poll_maintenance(now);
            mark(1);
            loop {
                let result = interface.poll_ingress_single(now, &mut self.wire, &mut self.sockets);
                if result == smoltcp::iface::PollIngressSingleResult::None {
                    break;
                }
                refill_listeners(&mut self.table, &mut self.sockets);
            }
            mark(2);
            // A pass over the sockets costs about 3,500 Wasm instructions per
            // socket even when none sends (measured, feature `loop-stats`),
            // and the old loop ended every poll with such a pass; smoltcp's
            // `poll_delay` (about a tenth of that) says whether a socket has
            // something due now, so a pass runs only then.
            for _ in 0..MAX_SENDING_PASSES {
                if interface.poll_delay(now, &self.sockets) != Some(Duration::ZERO)
                    || interface.poll_egress(now, &mut self.wire, &mut self.sockets)
                        == smoltcp::iface::PollResult::None
                {
                    break;
                }
                mark(5);
            }
            mark(3);
        }
        self.dhcp_events();
        self.maintain();
        mark(4);
        self.answer_held(now)
    }

    /// How long until `poll` has work even if no frame or request comes, in
    /// nanoseconds (`None`: nothing pending).
    pub fn poll_delay_ns(&mut self, now_ns: u64) -> Option<u64> {
        let now = to_instant(now_ns);
        let mut delay = match self.interface.as_mut() {
            Some(interface) => interface
                .poll_delay(now, &self.sockets)
                .map(|delay| delay.total_micros() * 1000),
            None => None,
        };
        if !self.wire.received.is_empty() {
            delay = Some(0);
        }
        for held in &self.held {
            let until = (held.deadline - now).total_micros() * 1000;
            let until = if held.deadline <= now { 0 } else { until };
            delay = Some(delay.map_or(until, |delay| delay.min(until)));
        }
        delay
    }

    fn maintain(&mut self) {
        refill_listeners(&mut self.table, &mut self.sockets);
        let sockets = &mut self.sockets;
        self.closing.retain(|&handle| {
            let finished = sockets.get::<tcp::Socket>(handle).state() == tcp::State::Closed;
            if finished {
                sockets.remove(handle);
            }
            !finished
        });
    }

    /// Handles one request from service `owner`. `None`: the call is held
    /// (`Wait`, `Ping`) and answered by a later `poll`.
    pub fn handle(
        &mut self,
        owner: u32,
        request: Request,
        token: T,
        now_ns: u64,
        name_of: &dyn Fn(u32) -> String,
    ) -> Option<(T, Response)> {
        let now = to_instant(now_ns);
        let result = match request {
            Request::Listen { port, backlog } => self.listen(owner, port, backlog),
            Request::Accept { listener } => self.accept(owner, listener),
            Request::Connect { to } => self.connect(owner, to),
            Request::Read { socket, max } => self.read(owner, socket, max),
            Request::Write { socket, data } => self.write(owner, socket, &data),
            Request::Close { socket } => self.close(owner, socket, false),
            Request::Abort { socket } => self.close(owner, socket, true),
            Request::UdpBind { port } => self.udp_bind(owner, port),
            Request::UdpSend { socket, to, data } => self.udp_send(owner, socket, to, &data),
            Request::UdpReceive { socket } => self.udp_receive(owner, socket),
            Request::Wait {
                interests,
                timeout_ms,
            } => {
                if interests.len() > MAX_WAIT {
                    Err(Error::InvalidArgument)
                } else if let Some(error) = interests
                    .iter()
                    .find_map(|interest| self.owned(owner, interest.socket).err())
                {
                    Err(error)
                } else {
                    let ready = self.ready(&interests);
                    if !ready.is_empty() || timeout_ms == 0 {
                        Ok(Response::Ready(ready))
                    } else {
                        self.held.push(Held {
                            token,
                            owner,
                            deadline: now + Duration::from_millis(u64::from(timeout_ms)),
                            what: HeldKind::Wait(interests),
                        });
                        return None;
                    }
                }
            }
            Request::Ping { to, timeout_ms } => match self.ping(to) {
                Ok(sequence) => {
                    self.held.push(Held {
                        token,
                        owner,
                        deadline: now + Duration::from_millis(u64::from(timeout_ms)),
                        what: HeldKind::Ping {
                            sequence,
                            sent: now,
                        },
                    });
                    return None;
                }
                Err(error) => Err(error),
            },
            Request::Interface => Ok(Response::Interface(self.interface_info())),
            Request::Sockets => Ok(Response::Sockets(self.socket_list(name_of))),
            // The service checks the sender before it gets here.
            Request::Link(_) => Err(Error::NotPermitted),
        };
        Some((token, result.unwrap_or_else(Response::Error)))
    }

    fn allocate_number(&mut self) -> Result<Socket, Error> {
        if self.sockets.iter().count() >= MAX_SOCKETS {
            return Err(Error::NoResources);
        }
        let number = self.next_socket;
        self.next_socket = self.next_socket.checked_add(1).unwrap_or(1);
        Ok(number)
    }

    fn owned(&self, owner: u32, socket: Socket) -> Result<&Entry, Error> {
        let entry = self.table.get(&socket).ok_or(Error::NoSocket)?;
        if entry.owner != owner {
            return Err(Error::NotOwner);
        }
        Ok(entry)
    }

    fn tcp_handle(&self, owner: u32, socket: Socket) -> Result<SocketHandle, Error> {
        match self.owned(owner, socket)?.kind {
            Kind::Tcp(handle) => Ok(handle),
            _ => Err(Error::InvalidState),
        }
    }

    fn port_taken(&self, port: u16) -> bool {
        self.table.values().any(|entry| match &entry.kind {
            Kind::Listener { port: taken, .. } => *taken == port,
            Kind::Udp(handle) => self.sockets.get::<udp::Socket>(*handle).endpoint().port == port,
            Kind::Tcp(_) => false,
        })
    }

    fn listen(&mut self, owner: u32, port: u16, backlog: u8) -> Result<Response, Error> {
        if port == 0 || backlog == 0 || backlog > MAX_BACKLOG {
            return Err(Error::InvalidArgument);
        }
        if self.port_taken(port) {
            return Err(Error::AddressInUse);
        }
        if self.sockets.iter().count() + SPARE_LISTENERS > MAX_SOCKETS {
            return Err(Error::NoResources);
        }
        let number = self.allocate_number()?;
        self.table.insert(
            number,
            Entry {
                owner,
                kind: Kind::Listener {
                    port,
                    backlog,
                    pool: Vec::new(),
                },
            },
        );
        refill_listeners(&mut self.table, &mut self.sockets);
        Ok(Response::Socket(number))
    }

    fn accept(&mut self, owner: u32, listener: Socket) -> Result<Response, Error> {
        let position = match &self.owned(owner, listener)?.kind {
            Kind::Listener { pool, .. } => pool.iter().position(|&handle| {
                handshake_done(self.sockets.get::<tcp::Socket>(handle).state())
            }),
            _ => return Err(Error::InvalidState),
        };
        let position = position.ok_or(Error::WouldBlock)?;
        let number = self.allocate_number()?;
        let Some(Entry {
            kind: Kind::Listener { pool, .. },
            ..
        }) = self.table.get_mut(&listener)
        else {
            return Err(Error::InvalidState);
        };
        if position >= pool.len() {
            return Err(Error::InvalidState);
        }
        let accepted = pool.swap_remove(position);
        refill_listeners(&mut self.table, &mut self.sockets);
        let peer = address_of(self.sockets.get::<tcp::Socket>(accepted).remote_endpoint());
        self.table.insert(
            number,
            Entry {
                owner,
                kind: Kind::Tcp(accepted),
            },
        );
        Ok(Response::Accepted {
            socket: number,
            peer,
        })
    }

    fn connect(&mut self, owner: u32, to: Address) -> Result<Response, Error> {
        let Some(interface) = self.interface.as_mut() else {
            return Err(Error::NoLink);
        };
        if to.port == 0 {
            return Err(Error::InvalidArgument);
        }
        let number = self.next_socket;
        if self.sockets.iter().count() >= MAX_SOCKETS {
            return Err(Error::NoResources);
        }
        // An ephemeral port from the upper range, different per socket number.
        let local = 49152 + (number % 16384) as u16;
        let mut socket = tcp_socket();
        socket
            .connect(
                interface.context(),
                IpEndpoint::new(IpAddress::Ipv4(ipv4(to.ip)), to.port),
                local,
            )
            .map_err(|_| Error::InvalidArgument)?;
        let handle = self.sockets.add(socket);
        self.next_socket = self.next_socket.checked_add(1).unwrap_or(1);
        self.table.insert(
            number,
            Entry {
                owner,
                kind: Kind::Tcp(handle),
            },
        );
        Ok(Response::Socket(number))
    }

    fn read(&mut self, owner: u32, socket: Socket, max: u32) -> Result<Response, Error> {
        if max == 0 || max > MAX_DATA {
            return Err(Error::InvalidArgument);
        }
        let handle = self.tcp_handle(owner, socket)?;
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if socket.can_recv() {
            let mut data = vec![0u8; max as usize];
            let read = socket.recv_slice(&mut data).map_err(|_| Error::Reset)?;
            data.truncate(read);
            return Ok(Response::Data(data));
        }
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Established => {
                Err(Error::WouldBlock)
            }
            tcp::State::FinWait1 | tcp::State::FinWait2 if socket.may_recv() => {
                Err(Error::WouldBlock)
            }
            // A socket that went to Closed without a FIN read was reset.
            tcp::State::Closed | tcp::State::Listen => Err(Error::Reset),
            _ => Ok(Response::Closed),
        }
    }

    fn write(&mut self, owner: u32, socket: Socket, data: &[u8]) -> Result<Response, Error> {
        if data.len() > MAX_DATA as usize {
            return Err(Error::InvalidArgument);
        }
        let handle = self.tcp_handle(owner, socket)?;
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        match socket.state() {
            tcp::State::Closed => return Err(Error::Reset),
            tcp::State::SynSent | tcp::State::SynReceived => return Err(Error::WouldBlock),
            _ if !socket.may_send() => return Err(Error::InvalidState),
            _ => {}
        }
        let written = socket.send_slice(data).map_err(|_| Error::InvalidState)?;
        if written == 0 && !data.is_empty() {
            return Err(Error::WouldBlock);
        }
        Ok(Response::Written(written as u32))
    }

    fn close(&mut self, owner: u32, socket: Socket, abort: bool) -> Result<Response, Error> {
        self.owned(owner, socket)?;
        let Some(entry) = self.table.remove(&socket) else {
            return Err(Error::NoSocket);
        };
        match entry.kind {
            Kind::Tcp(handle) => {
                let tcp = self.sockets.get_mut::<tcp::Socket>(handle);
                if abort {
                    tcp.abort();
                } else {
                    tcp.close();
                }
                self.closing.push(handle);
            }
            Kind::Listener { pool, .. } => {
                for handle in pool {
                    let tcp = self.sockets.get_mut::<tcp::Socket>(handle);
                    if handshake_done(tcp.state()) {
                        tcp.abort();
                        self.closing.push(handle);
                    } else {
                        self.sockets.remove(handle);
                    }
                }
            }
            Kind::Udp(handle) => {
                self.sockets.remove(handle);
            }
        }
        Ok(Response::Done)
    }

    /// Records that `owner` is in its `generation` (restart count); if that
    /// is a new one, the sockets of its previous instance are dropped first
    /// (they would otherwise hold their ports until they time out). Called
    /// before requests that make sockets.
    pub fn note_generation(&mut self, owner: u32, generation: u32) {
        let previous = self.generations.insert(owner, generation);
        if previous.is_some_and(|previous| previous != generation) {
            self.forget_owner(owner);
        }
    }

    /// Drops every socket of a service that is gone (restarted, stopped).
    pub fn forget_owner(&mut self, owner: u32) {
        let numbers: Vec<Socket> = self
            .table
            .iter()
            .filter(|(_, entry)| entry.owner == owner)
            .map(|(&number, _)| number)
            .collect();
        for number in numbers {
            let _ = self.close(owner, number, true);
        }
    }

    fn udp_bind(&mut self, owner: u32, port: u16) -> Result<Response, Error> {
        let port = if port == 0 {
            (49152..=u16::MAX)
                .find(|&port| !self.port_taken(port))
                .ok_or(Error::NoResources)?
        } else {
            port
        };
        if self.port_taken(port) {
            return Err(Error::AddressInUse);
        }
        let number = self.allocate_number()?;
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0u8; UDP_BUFFER],
            ),
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0u8; UDP_BUFFER],
            ),
        );
        socket
            .bind(IpListenEndpoint { addr: None, port })
            .map_err(|_| Error::AddressInUse)?;
        let handle = self.sockets.add(socket);
        self.table.insert(
            number,
            Entry {
                owner,
                kind: Kind::Udp(handle),
            },
        );
        Ok(Response::Socket(number))
    }

    fn udp_handle(&self, owner: u32, socket: Socket) -> Result<SocketHandle, Error> {
        match self.owned(owner, socket)?.kind {
            Kind::Udp(handle) => Ok(handle),
            _ => Err(Error::InvalidState),
        }
    }

    fn udp_send(
        &mut self,
        owner: u32,
        socket: Socket,
        to: Address,
        data: &[u8],
    ) -> Result<Response, Error> {
        if data.len() > MAX_DATA as usize || to.port == 0 {
            return Err(Error::InvalidArgument);
        }
        let handle = self.udp_handle(owner, socket)?;
        let socket = self.sockets.get_mut::<udp::Socket>(handle);
        socket
            .send_slice(data, IpEndpoint::new(IpAddress::Ipv4(ipv4(to.ip)), to.port))
            .map_err(|error| match error {
                udp::SendError::BufferFull => Error::WouldBlock,
                udp::SendError::Unaddressable => Error::InvalidArgument,
            })?;
        Ok(Response::Written(data.len() as u32))
    }

    fn udp_receive(&mut self, owner: u32, socket: Socket) -> Result<Response, Error> {
        let handle = self.udp_handle(owner, socket)?;
        let socket = self.sockets.get_mut::<udp::Socket>(handle);
        let (data, metadata) = socket.recv().map_err(|_| Error::WouldBlock)?;
        let mut data = data.to_vec();
        data.truncate(MAX_DATA as usize);
        Ok(Response::Datagram {
            from: address_of(Some(metadata.endpoint)),
            data,
        })
    }

    /// Which of `interests` are ready now.
    fn ready(&self, interests: &[Interest]) -> Vec<Interest> {
        interests
            .iter()
            .filter_map(|interest| {
                let entry = self.table.get(&interest.socket)?;
                let (read, write) = match &entry.kind {
                    Kind::Tcp(handle) => {
                        let socket = self.sockets.get::<tcp::Socket>(*handle);
                        let state = socket.state();
                        let ended = matches!(
                            state,
                            tcp::State::Closed | tcp::State::CloseWait | tcp::State::LastAck
                        ) || !socket.may_recv()
                            && !matches!(state, tcp::State::SynSent);
                        let read = socket.can_recv() || ended;
                        let write = socket.can_send() || state == tcp::State::Closed;
                        (read, write)
                    }
                    Kind::Listener { pool, .. } => (
                        pool.iter().any(|&handle| {
                            handshake_done(self.sockets.get::<tcp::Socket>(handle).state())
                        }),
                        false,
                    ),
                    Kind::Udp(handle) => {
                        let socket = self.sockets.get::<udp::Socket>(*handle);
                        (socket.can_recv(), socket.can_send())
                    }
                };
                let ready = Interest {
                    socket: interest.socket,
                    read: interest.read && read,
                    write: interest.write && write,
                };
                (ready.read || ready.write).then_some(ready)
            })
            .collect()
    }

    fn ping(&mut self, to: [u8; 4]) -> Result<u16, Error> {
        if self.interface.is_none() {
            return Err(Error::NoLink);
        }
        let handle = match self.icmp {
            Some(handle) => handle,
            None => {
                let mut socket = icmp::Socket::new(
                    icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 1024]),
                    icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 1024]),
                );
                socket
                    .bind(icmp::Endpoint::Ident(ICMP_IDENT))
                    .map_err(|_| Error::NoResources)?;
                let handle = self.sockets.add(socket);
                self.icmp = Some(handle);
                handle
            }
        };
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let data = b"atoll ping";
        let repr = Icmpv4Repr::EchoRequest {
            ident: ICMP_IDENT,
            seq_no: sequence,
            data,
        };
        let socket = self.sockets.get_mut::<icmp::Socket>(handle);
        let buffer = socket
            .send(repr.buffer_len(), IpAddress::Ipv4(ipv4(to)))
            .map_err(|_| Error::WouldBlock)?;
        let mut packet = Icmpv4Packet::new_unchecked(buffer);
        repr.emit(&mut packet, &smoltcp::phy::ChecksumCapabilities::default());
        Ok(sequence)
    }

    /// Echo replies received since the last look: their sequence numbers.
    fn take_pongs(&mut self) -> Vec<u16> {
        let Some(handle) = self.icmp else {
            return Vec::new();
        };
        let socket = self.sockets.get_mut::<icmp::Socket>(handle);
        let mut pongs = Vec::new();
        while let Ok((payload, _)) = socket.recv() {
            let Ok(packet) = Icmpv4Packet::new_checked(payload) else {
                continue;
            };
            if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) =
                Icmpv4Repr::parse(&packet, &smoltcp::phy::ChecksumCapabilities::ignored())
                && ident == ICMP_IDENT
            {
                pongs.push(seq_no);
            }
        }
        pongs
    }

    fn answer_held(&mut self, now: Instant) -> Vec<(T, Response)> {
        let pongs = self.take_pongs();
        let mut answered = Vec::new();
        let mut kept = Vec::new();
        for held in core::mem::take(&mut self.held) {
            let response = match &held.what {
                HeldKind::Wait(interests) => {
                    let ready = self.ready(interests);
                    if !ready.is_empty() || now >= held.deadline {
                        Some(Response::Ready(ready))
                    } else {
                        None
                    }
                }
                HeldKind::Ping { sequence, sent } => {
                    if pongs.contains(sequence) {
                        Some(Response::Pong {
                            rtt_us: (now - *sent).total_micros(),
                        })
                    } else if now >= held.deadline {
                        Some(Response::Error(Error::TimedOut))
                    } else {
                        None
                    }
                }
            };
            match response {
                Some(response) => answered.push((held.token, response)),
                None => kept.push(held),
            }
        }
        self.held = kept;
        answered
    }

    /// Held calls of `owner` (gone): dropped without an answer.
    pub fn drop_held_of(&mut self, owner: u32) {
        self.held.retain(|held| held.owner != owner);
    }

    fn interface_info(&self) -> InterfaceInfo {
        InterfaceInfo {
            mac: self.mac,
            driver: self.interface.is_some(),
            link_up: self.link_up,
            ip: self.settings.ip,
            prefix: self.settings.prefix,
            gateway: self.settings.gateway,
            dhcp: self.leased,
            dns: self.dns,
            mtu: MTU as u32,
            rx_frames: self.counters.rx_frames,
            rx_bytes: self.counters.rx_bytes,
            tx_frames: self.counters.tx_frames,
            tx_bytes: self.counters.tx_bytes,
            tx_dropped: self.tx_dropped,
        }
    }

    fn socket_list(&self, name_of: &dyn Fn(u32) -> String) -> Vec<SocketInfo> {
        let mut list = Vec::new();
        for (&number, entry) in &self.table {
            let owner = name_of(entry.owner);
            match &entry.kind {
                Kind::Tcp(handle) => {
                    let socket = self.sockets.get::<tcp::Socket>(*handle);
                    list.push(SocketInfo {
                        socket: number,
                        kind: "tcp".to_string(),
                        local: address_of(socket.local_endpoint()),
                        remote: address_of(socket.remote_endpoint()),
                        state: socket.state().to_string(),
                        owner,
                    });
                }
                Kind::Listener { port, .. } => list.push(SocketInfo {
                    socket: number,
                    kind: "tcp".to_string(),
                    local: Address {
                        ip: [0; 4],
                        port: *port,
                    },
                    remote: address_of(None),
                    state: "LISTEN".to_string(),
                    owner,
                }),
                Kind::Udp(handle) => {
                    let socket = self.sockets.get::<udp::Socket>(*handle);
                    list.push(SocketInfo {
                        socket: number,
                        kind: "udp".to_string(),
                        local: Address {
                            ip: [0; 4],
                            port: socket.endpoint().port,
                        },
                        remote: address_of(None),
                        state: String::new(),
                        owner,
                    });
                }
            }
        }
        list
    }
}
