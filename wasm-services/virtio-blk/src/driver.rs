//! The device and the service loop (Wasm only: everything here is a host call).

use crate::ring::{self, Layout, feature, register, status};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::block::{Error, MAX_SECTORS, Request, Response, SECTOR_SIZE};
use atoll_sdk::driver::{
    COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_IO, Dma, PCI_COMMAND, inb, inl, inw, irq_ack,
    notification, outb, outl, outw, pci_read, pci_write,
};
use atoll_sdk::supervision::KERNEL_SENDER;
use atoll_sdk::{Endpoint, MAX_MESSAGE_LEN, Timeout};

const VENDOR: u16 = 0x1af4;
const DEVICE: u16 = 0x1001;

/// How long one request may take before the device is declared stuck.
const REQUEST_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long to wait for an interrupt before looking at the used ring anyway.
const POLL_NS: u64 = 2_000_000;
/// The most client requests kept while a request is in flight.
const MAX_PENDING: usize = 64;

/// Layout of the request buffer: header, status byte, data.
const HEADER_AT: usize = 0;
const STATUS_AT: usize = 16;
const DATA_AT: usize = 512;
const REQUEST_BUFFER: usize = DATA_AT + MAX_SECTORS as usize * SECTOR_SIZE;

pub fn main() {
    let endpoint = Endpoint::from_handle(1);
    let mut inbox = Inbox {
        endpoint,
        pending: VecDeque::new(),
        buffer: vec![0u8; MAX_MESSAGE_LEN],
    };
    let mut device = match Device::find_and_start() {
        Ok(device) => Some(device),
        Err(reason) => {
            atoll_sdk::println!("no disk: {reason}");
            None
        }
    };
    loop {
        let Some(incoming) = inbox.next(device.as_mut()) else {
            continue;
        };
        let (request, responder) = incoming.into_parts();
        let response = match device.as_mut() {
            Some(disk) => disk.handle(request, &mut inbox),
            None => Response::Error(Error::NoDevice),
        };
        if let Some(disk) = device.as_mut()
            && disk.broken
        {
            device = disk.restart();
        }
        responder.reply(&response).report();
    }
}

/// A client request taken from the endpoint (one that did not decode was
/// answered on arrival, see [`atoll_sdk::Received::decode`]).
type Incoming = atoll_sdk::Request<Request>;

/// The endpoint, and the client requests that arrived while the device was busy.
struct Inbox {
    endpoint: Endpoint,
    pending: VecDeque<Incoming>,
    buffer: Vec<u8>,
}

/// What one `receive` brought.
enum Event {
    Request(Incoming),
    Interrupt,
    Nothing,
}

impl Inbox {
    /// The next client request: a kept one first, else one from the endpoint
    /// (interrupts that arrive while idle are acknowledged on the way).
    fn next(&mut self, device: Option<&mut Device>) -> Option<Incoming> {
        if let Some(incoming) = self.pending.pop_front() {
            return Some(incoming);
        }
        match self.receive(Timeout::Forever) {
            Event::Request(incoming) => Some(incoming),
            Event::Interrupt => {
                if let Some(device) = device {
                    device.interrupt();
                }
                None
            }
            Event::Nothing => None,
        }
    }

    fn receive(&mut self, timeout: Timeout) -> Event {
        let received = match self.endpoint.receive(&mut self.buffer, timeout) {
            Ok(received) => received,
            Err(atoll_sdk::Error::TimedOut | atoll_sdk::Error::WouldBlock) => {
                return Event::Nothing;
            }
            Err(error) => {
                atoll_sdk::println!("receive failed: {error}");
                atoll_sdk::sleep(POLL_NS);
                return Event::Nothing;
            }
        };
        if received.sender == KERNEL_SENDER && notification(received.message).is_some() {
            return Event::Interrupt;
        }
        match received.decode() {
            Ok(incoming) => Event::Request(incoming),
            Err(_) => Event::Nothing,
        }
    }

    /// Waits until `done` holds or `deadline` passes, handling interrupts and
    /// keeping client requests for later. Returns whether `done` held.
    fn wait(&mut self, device: &Device, deadline: u64) -> bool {
        loop {
            if device.completed() {
                return true;
            }
            let now = atoll_sdk::time();
            if now >= deadline {
                return device.completed();
            }
            match self.receive(Timeout::Nanos(POLL_NS.min(deadline - now))) {
                Event::Interrupt => device.interrupt(),
                Event::Request(incoming) => {
                    if self.pending.len() < MAX_PENDING {
                        self.pending.push_back(incoming);
                    } else {
                        // Too many callers at once: an empty answer (a decode
                        // error on their side) rather than an unbounded queue.
                        let (_, responder) = incoming.into_parts();
                        responder.reply_empty().report();
                    }
                }
                Event::Nothing => {}
            }
        }
    }
}

/// A started device.
struct Device {
    /// PCI function, for the log and for a restart.
    address: u16,
    /// First I/O port of BAR0.
    base: u16,
    /// Interrupt line, if it has one the driver could unmask.
    irq: Option<u8>,
    layout: Layout,
    ring: Dma,
    request: Dma,
    /// Our running index into the available ring.
    avail_idx: u16,
    /// The used ring's index as last seen.
    used_idx: u16,
    capacity: u64,
    features: u32,
    /// A request timed out: reset and set up again before the next one.
    broken: bool,
}

impl Device {
    /// Finds the granted device on bus 0 and starts it.
    fn find_and_start() -> Result<Device, &'static str> {
        let address = find().ok_or("no virtio block device (1af4:1001) granted on bus 0")?;
        Device::start(address)
    }

    fn start(address: u16) -> Result<Device, &'static str> {
        const NO_CONFIG: &str = "cannot read the device's PCI configuration";
        let bar = pci_read(address, 0x10).map_err(|_| NO_CONFIG)?;
        if bar & 1 == 0 {
            return Err("BAR0 is not an I/O BAR (is the device legacy? use disable-modern=on)");
        }
        let base = u16::try_from(bar & 0xffff_fffc).map_err(|_| "BAR0 beyond the I/O space")?;
        if base == 0 {
            return Err("BAR0 is not assigned");
        }
        let command = pci_read(address, PCI_COMMAND).map_err(|_| NO_CONFIG)?;
        // Low half only: the status half is write-one-to-clear.
        let command = (command | COMMAND_IO | COMMAND_BUS_MASTER) & !COMMAND_INTX_DISABLE & 0xffff;
        pci_write(address, PCI_COMMAND, command)
            .map_err(|_| "cannot enable the device (command register)")?;
        let line = pci_read(address, 0x3c).map_err(|_| NO_CONFIG)? & 0xff;

        let port = |offset: u16| base.wrapping_add(offset);
        const NO_PORTS: &str = "the device's I/O ports are not granted";
        // Reset: the device forgets any queue and any request a previous
        // instance of this driver left behind.
        outb(port(register::STATUS), 0).map_err(|_| NO_PORTS)?;
        let _ = inb(port(register::ISR));
        outb(port(register::STATUS), status::ACKNOWLEDGE).map_err(|_| NO_PORTS)?;
        outb(port(register::STATUS), status::ACKNOWLEDGE | status::DRIVER).map_err(|_| NO_PORTS)?;
        let offered = inl(port(register::DEVICE_FEATURES)).map_err(|_| NO_PORTS)?;
        let features = offered & (feature::FLUSH | feature::RO);
        outl(port(register::GUEST_FEATURES), features).map_err(|_| NO_PORTS)?;

        let fail = |reason: &'static str| {
            let _ = outb(port(register::STATUS), status::FAILED);
            reason
        };
        outw(port(register::QUEUE_SELECT), 0).map_err(|_| NO_PORTS)?;
        let size = inw(port(register::QUEUE_SIZE)).map_err(|_| NO_PORTS)?;
        let layout =
            Layout::new(size).ok_or_else(|| fail("queue 0 is missing or has a bad size"))?;
        let ring =
            Dma::allocate(layout.len).map_err(|_| fail("no DMA memory for the ring (dma-kib)"))?;
        let request = Dma::allocate(REQUEST_BUFFER)
            .map_err(|_| fail("no DMA memory for requests (dma-kib)"))?;
        let frame = u32::try_from(ring.physical() >> 12).map_err(|_| fail("ring above 16 TiB"))?;
        outl(port(register::QUEUE_ADDRESS), frame).map_err(|_| NO_PORTS)?;
        let low = inl(port(register::CAPACITY)).map_err(|_| NO_PORTS)?;
        let high = inl(port(register::CAPACITY + 4)).map_err(|_| NO_PORTS)?;
        let capacity = u64::from(high) << 32 | u64::from(low);
        outb(
            port(register::STATUS),
            status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
        )
        .map_err(|_| NO_PORTS)?;

        let irq = match u8::try_from(line) {
            Ok(irq) if irq != 0 && irq != 0xff => match irq_ack(irq) {
                Ok(()) => Some(irq),
                Err(error) => {
                    atoll_sdk::println!("cannot unmask irq {irq} ({error}): polling");
                    None
                }
            },
            _ => None,
        };
        let device = Device {
            address,
            base,
            irq,
            layout,
            ring,
            request,
            avail_idx: 0,
            used_idx: 0,
            capacity,
            features,
            broken: false,
        };
        device.log();
        Ok(device)
    }

    fn log(&self) {
        let (bus, slot, function) = (
            self.address >> 8,
            (self.address >> 3) & 0x1f,
            self.address & 7,
        );
        let mib = self.capacity / 2048;
        let flush = if self.features & feature::FLUSH != 0 {
            ", write cache (flush)"
        } else {
            ""
        };
        let read_only = if self.features & feature::RO != 0 {
            ", read-only"
        } else {
            ""
        };
        match self.irq {
            Some(irq) => atoll_sdk::println!(
                "disk at {bus:02x}:{slot:02x}.{function}, io {:#x}, irq {irq}, queue {}: {} sectors ({mib} MiB){flush}{read_only}",
                self.base,
                self.layout.size,
                self.capacity
            ),
            None => atoll_sdk::println!(
                "disk at {bus:02x}:{slot:02x}.{function}, io {:#x}, polled, queue {}: {} sectors ({mib} MiB){flush}{read_only}",
                self.base,
                self.layout.size,
                self.capacity
            ),
        }
    }

    /// Resets the device and sets it up afresh (after a stuck request).
    fn restart(&mut self) -> Option<Device> {
        self.reset();
        match Device::start(self.address) {
            Ok(device) => Some(device),
            Err(reason) => {
                atoll_sdk::println!("device lost after a reset: {reason}");
                None
            }
        }
    }

    fn reset(&self) {
        let _ = outb(self.base.wrapping_add(register::STATUS), 0);
    }

    fn port(&self, offset: u16) -> u16 {
        self.base.wrapping_add(offset)
    }

    /// An interrupt notification: reading the ISR acknowledges the device,
    /// then the line is unmasked for the next one.
    fn interrupt(&self) {
        let _ = inb(self.port(register::ISR));
        if let Some(irq) = self.irq {
            let _ = irq_ack(irq);
        }
    }

    /// Whether the device has used what we made available.
    fn completed(&self) -> bool {
        let mut index = [0u8; 2];
        self.ring.read(self.layout.used_idx(), &mut index).is_ok()
            && u16::from_le_bytes(index) != self.used_idx
    }

    fn handle(&mut self, request: Request, inbox: &mut Inbox) -> Response {
        let result = match request {
            Request::Capacity => Ok(Response::Capacity {
                sectors: self.capacity,
            }),
            Request::Read { sector, count } => self.read(sector, count, inbox).map(Response::Data),
            Request::Write { sector, data } => {
                self.write(sector, &data, inbox).map(|()| Response::Done)
            }
            Request::Flush => self.flush(inbox).map(|()| Response::Done),
        };
        result.unwrap_or_else(Response::Error)
    }

    fn check_range(&self, sector: u64, count: u32) -> Result<(), Error> {
        if count == 0 || count > MAX_SECTORS {
            return Err(Error::BadLength);
        }
        match sector.checked_add(u64::from(count)) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(Error::OutOfRange),
        }
    }

    fn read(&mut self, sector: u64, count: u32, inbox: &mut Inbox) -> Result<Vec<u8>, Error> {
        self.check_range(sector, count)?;
        let len = count as usize * SECTOR_SIZE;
        self.submit(ring::T_IN, sector, Some((len, ring::DESC_WRITE)), inbox)?;
        let mut data = vec![0u8; len];
        self.request
            .read(DATA_AT, &mut data)
            .map_err(|_| Error::Io)?;
        Ok(data)
    }

    fn write(&mut self, sector: u64, data: &[u8], inbox: &mut Inbox) -> Result<(), Error> {
        if !data.len().is_multiple_of(SECTOR_SIZE) {
            return Err(Error::BadLength);
        }
        let count = u32::try_from(data.len() / SECTOR_SIZE).map_err(|_| Error::BadLength)?;
        self.check_range(sector, count)?;
        if self.features & feature::RO != 0 {
            return Err(Error::Io);
        }
        self.request.write(DATA_AT, data).map_err(|_| Error::Io)?;
        self.submit(ring::T_OUT, sector, Some((data.len(), 0)), inbox)
    }

    fn flush(&mut self, inbox: &mut Inbox) -> Result<(), Error> {
        if self.features & feature::FLUSH == 0 {
            return Ok(());
        }
        self.submit(ring::T_FLUSH, 0, None, inbox)
    }

    /// Runs one request: header, optional data (`len`, descriptor flags),
    /// status; waits for it and checks its status byte.
    fn submit(
        &mut self,
        kind: u32,
        sector: u64,
        data: Option<(usize, u16)>,
        inbox: &mut Inbox,
    ) -> Result<(), Error> {
        let io = |_| Error::Io;
        let base = self.request.physical();
        self.request
            .write(HEADER_AT, &ring::header(kind, sector))
            .map_err(io)?;
        // A status the device never writes reads as an error.
        self.request.write(STATUS_AT, &[0xff]).map_err(io)?;
        let status_descriptor = ring::descriptor(base + STATUS_AT as u64, 1, ring::DESC_WRITE, 0);
        match data {
            Some((len, flags)) => {
                let len = u32::try_from(len).map_err(|_| Error::BadLength)?;
                let header = ring::descriptor(base + HEADER_AT as u64, 16, ring::DESC_NEXT, 1);
                let data = ring::descriptor(base + DATA_AT as u64, len, flags | ring::DESC_NEXT, 2);
                self.ring
                    .write(self.layout.descriptor(0), &header)
                    .map_err(io)?;
                self.ring
                    .write(self.layout.descriptor(1), &data)
                    .map_err(io)?;
                self.ring
                    .write(self.layout.descriptor(2), &status_descriptor)
                    .map_err(io)?;
            }
            None => {
                let header = ring::descriptor(base + HEADER_AT as u64, 16, ring::DESC_NEXT, 2);
                self.ring
                    .write(self.layout.descriptor(0), &header)
                    .map_err(io)?;
                self.ring
                    .write(self.layout.descriptor(2), &status_descriptor)
                    .map_err(io)?;
            }
        }
        // The chain's head (descriptor 0) in the next slot, then the index.
        self.ring
            .write(self.layout.avail_slot(self.avail_idx), &0u16.to_le_bytes())
            .map_err(io)?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.ring
            .write(self.layout.avail_idx(), &self.avail_idx.to_le_bytes())
            .map_err(io)?;
        outw(self.port(register::QUEUE_NOTIFY), 0).map_err(io)?;

        let deadline = atoll_sdk::time().saturating_add(REQUEST_TIMEOUT_NS);
        if !inbox.wait(self, deadline) {
            atoll_sdk::println!("request timed out: resetting the device");
            self.broken = true;
            return Err(Error::Io);
        }
        self.used_idx = self.used_idx.wrapping_add(1);
        let mut status = [0xffu8];
        self.request.read(STATUS_AT, &mut status).map_err(io)?;
        match status {
            [0] => Ok(()),
            [code] => {
                atoll_sdk::println!("device error {code} on request type {kind}, sector {sector}");
                Err(Error::Io)
            }
        }
    }
}

/// The first function on bus 0 with the virtio block id that this driver may
/// read (others answer `NotPermitted`).
fn find() -> Option<u16> {
    (0..32u16)
        .flat_map(|slot| (0..8u16).map(move |function| slot << 3 | function))
        .find(|&address| {
            pci_read(address, 0x00)
                .is_ok_and(|id| (id & 0xffff) as u16 == VENDOR && (id >> 16) as u16 == DEVICE)
        })
}
