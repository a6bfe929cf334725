//! The device and the service loop (Wasm only: everything here is a host call).

use crate::ring::{self, Layout, feature, register, status};
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::net::{self, FrameBatch, Link, nic};
use atoll_sdk::driver::{
    COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_IO, Dma, PCI_COMMAND, inb, inl, inw, irq_ack,
    notification, outb, outl, outw, pci_read, pci_write,
};
use atoll_sdk::supervision::KERNEL_SENDER;
use atoll_sdk::{Endpoint, MAX_MESSAGE_LEN, Timeout};
use core::sync::atomic::{AtomicI32, Ordering};

/// Hot swap: the DMA buffers this version allocated (its state for the next
/// version), and those the version it replaced named (freed once the device
/// is reset). Four each: two rings and their packet buffers.
static OWNED: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];
static INHERITED: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];

/// The state handed to a new version: the handles in [`OWNED`], as four
/// little-endian `i32`s.
fn save() -> Vec<u8> {
    OWNED
        .iter()
        .flat_map(|handle| handle.load(Ordering::Relaxed).to_le_bytes())
        .collect()
}

fn restore(state: &[u8]) {
    for (slot, bytes) in INHERITED.iter().zip(state.as_chunks::<4>().0) {
        slot.store(i32::from_le_bytes(*bytes), Ordering::Relaxed);
    }
}

atoll_sdk::state_handoff!(save, restore);

/// Records a buffer this version allocated, for [`save`].
fn own(buffer: &Dma) {
    if let Some(slot) = OWNED.iter().find(|slot| slot.load(Ordering::Relaxed) == 0) {
        slot.store(buffer.handle(), Ordering::Relaxed);
    }
}

/// Frees what the replaced version held (the device is reset: it no longer
/// uses those buffers), so that this version's own fit in `dma-kib`.
fn free_inherited() {
    for slot in &INHERITED {
        let handle = slot.swap(0, Ordering::Relaxed);
        if handle > 0 {
            let _ = Dma::free_inherited(handle);
        }
    }
}

const VENDOR: u16 = 0x1af4;
const DEVICE: u16 = 0x1000;

/// Receive buffers kept in the device's hands, and transmit slots.
const RECEIVE_BUFFERS: u16 = 128;
const TRANSMIT_SLOTS: u16 = 64;
/// With a working interrupt the rings are still looked at this often (a lost
/// interrupt costs latency, not progress); without one, much more often.
const POLL_WITH_IRQ_NS: u64 = 20_000_000;
const POLL_WITHOUT_IRQ_NS: u64 = 1_000_000;
/// How often the link state is read when the device does not interrupt.
const LINK_CHECK_NS: u64 = 500_000_000;

pub fn main() {
    let nic_endpoint = Endpoint::from_handle(1);
    let stack = match Endpoint::lookup(net::ENDPOINT) {
        Ok(endpoint) => Some(endpoint),
        Err(error) => {
            atoll_sdk::println!(
                "no `{}` endpoint to deliver frames to: {error}",
                net::ENDPOINT
            );
            None
        }
    };
    let mut device = match Device::find_and_start() {
        Ok(device) => device,
        Err(reason) => {
            // Stay, rather than end and be restarted in a loop: a system
            // booted without a card just has no network.
            atoll_sdk::println!("no network card: {reason}");
            idle(nic_endpoint);
        }
    };
    let mut link = Uplink {
        endpoint: stack,
        buffer: vec![0u8; MAX_MESSAGE_LEN],
        dropped: 0,
    };
    link.announce(&device);
    let mut buffer = vec![0u8; MAX_MESSAGE_LEN];
    let mut last_link_check = atoll_sdk::time();
    loop {
        let timeout = if device.irq.is_some() {
            POLL_WITH_IRQ_NS
        } else {
            POLL_WITHOUT_IRQ_NS
        };
        match nic_endpoint.receive(&mut buffer, Timeout::Nanos(timeout)) {
            Ok(received) => {
                if received.sender == KERNEL_SENDER && notification(received.message).is_some() {
                    let isr = device.interrupt();
                    if isr & ring::ISR_CONFIG != 0 {
                        link.link_check(&mut device);
                    }
                } else {
                    match postcard::from_bytes::<nic::Request>(received.message) {
                        Ok(nic::Request::Hello) => link.announce(&device),
                        Ok(nic::Request::Frame(frame)) => {
                            device.transmit(&frame);
                            device.publish_transmitted();
                        }
                        Ok(nic::Request::Frames(frames)) => {
                            for frame in &frames {
                                device.transmit(frame);
                            }
                            device.publish_transmitted();
                        }
                        Err(_) => atoll_sdk::println!(
                            "malformed message from service {}",
                            received.sender
                        ),
                    }
                    if let Some(token) = received.reply {
                        // The protocol is sent, never called: end the call.
                        let _ = token.reply(&[]);
                    }
                }
            }
            Err(atoll_sdk::Error::TimedOut | atoll_sdk::Error::WouldBlock) => {}
            Err(error) => {
                atoll_sdk::println!("receive failed: {error}");
                atoll_sdk::sleep(POLL_WITHOUT_IRQ_NS);
            }
        }
        device.reclaim_transmitted();
        device.deliver_received(&mut link);
        let now = atoll_sdk::time();
        if device.irq.is_none() && now.saturating_sub(last_link_check) >= LINK_CHECK_NS {
            last_link_check = now;
            link.link_check(&mut device);
        }
    }
}

/// Without a device: take (and drop) what arrives, for ever.
fn idle(endpoint: Endpoint) -> ! {
    let mut buffer = vec![0u8; MAX_MESSAGE_LEN];
    loop {
        if let Ok(received) = endpoint.receive(&mut buffer, Timeout::Forever)
            && let Some(token) = received.reply
        {
            let _ = token.reply(&[]);
        }
    }
}

/// The TCP/IP service's endpoint, where received frames go.
struct Uplink {
    endpoint: Option<Endpoint>,
    buffer: Vec<u8>,
    dropped: u64,
}

impl Uplink {
    fn send(&mut self, message: &net::Request) -> Result<(), atoll_sdk::Error> {
        let Some(endpoint) = self.endpoint else {
            return Ok(());
        };
        let encoded = postcard::to_slice(message, &mut self.buffer)
            .map_err(|_| atoll_sdk::Error::TooLarge)?;
        endpoint.send(encoded)
    }

    fn announce(&mut self, device: &Device) {
        let message = net::Request::Link(Link::Up {
            mac: device.mac,
            link_up: device.link_up,
        });
        if let Err(error) = self.send(&message) {
            atoll_sdk::println!("cannot announce the link: {error}");
        }
    }

    fn link_check(&mut self, device: &mut Device) {
        let up = device.read_link();
        if up != device.link_up {
            device.link_up = up;
            atoll_sdk::println!("link {}", if up { "up" } else { "down" });
            let _ = self.send(&net::Request::Link(Link::State { link_up: up }));
        }
    }

    /// Sends the batch's frames in one message.
    fn frames(&mut self, batch: &mut FrameBatch) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        match self.send(&net::Request::Link(Link::Frames(batch.take()))) {
            Ok(()) => {}
            // A full queue drops the frames: TCP sends them again.
            Err(_) => {
                let before = self.dropped;
                self.dropped += count;
                if (before + 1..=self.dropped).any(u64::is_power_of_two) {
                    atoll_sdk::println!(
                        "{} received frames dropped (the TCP/IP service's queue was full or gone)",
                        self.dropped
                    );
                }
            }
        }
    }
}

/// One virtqueue: its ring and its buffers, two descriptors (header, frame)
/// per buffer.
struct Queue {
    number: u16,
    layout: Layout,
    ring: Dma,
    buffers: Dma,
    count: u16,
    /// Our running index into the available ring.
    avail_idx: u16,
    /// The used ring's index as last seen.
    used_idx: u16,
}

impl Queue {
    fn set_up(
        base: u16,
        number: u16,
        limit: u16,
        device_writes: bool,
    ) -> Result<Queue, &'static str> {
        const NO_PORTS: &str = "the device's I/O ports are not granted";
        outw(base + register::QUEUE_SELECT, number).map_err(|_| NO_PORTS)?;
        let size = inw(base + register::QUEUE_SIZE).map_err(|_| NO_PORTS)?;
        let layout = Layout::new(size).ok_or("a queue is missing or has a bad size")?;
        let count = layout.buffers(limit);
        let ring = Dma::allocate(layout.len).map_err(|_| "no DMA memory for a ring (dma-kib)")?;
        own(&ring);
        let buffers = Dma::allocate(usize::from(count) * ring::SLOT)
            .map_err(|_| "no DMA memory for packet buffers (dma-kib)")?;
        own(&buffers);
        let flags = if device_writes { ring::DESC_WRITE } else { 0 };
        for index in 0..count {
            let slot = buffers.physical() + (usize::from(index) * ring::SLOT) as u64;
            let header = ring::descriptor(
                slot,
                ring::HEADER_LEN as u32,
                flags | ring::DESC_NEXT,
                2 * index + 1,
            );
            let frame_len = if device_writes {
                (ring::SLOT - ring::FRAME_AT) as u32
            } else {
                0
            };
            let frame = ring::descriptor(slot + ring::FRAME_AT as u64, frame_len, flags, 0);
            ring.write(layout.descriptor(2 * index), &header)
                .and_then(|()| ring.write(layout.descriptor(2 * index + 1), &frame))
                .map_err(|_| "cannot write the descriptors")?;
        }
        let frame_number = u32::try_from(ring.physical() >> 12).map_err(|_| "ring above 16 TiB")?;
        outl(base + register::QUEUE_ADDRESS, frame_number).map_err(|_| NO_PORTS)?;
        Ok(Queue {
            number,
            layout,
            ring,
            buffers,
            count,
            avail_idx: 0,
            used_idx: 0,
        })
    }

    /// Makes buffer `index` available (the index is published by `publish`).
    fn offer(&mut self, index: u16) -> Result<(), atoll_sdk::Error> {
        self.ring.write(
            self.layout.avail_slot(self.avail_idx),
            &(2 * index).to_le_bytes(),
        )?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(())
    }

    fn publish(&self, base: u16) -> Result<(), atoll_sdk::Error> {
        self.ring
            .write(self.layout.avail_idx(), &self.avail_idx.to_le_bytes())?;
        outw(base + register::QUEUE_NOTIFY, self.number)
    }

    /// The next used buffer (its index and the length the device wrote).
    fn take_used(&mut self) -> Option<(u16, u32)> {
        let mut index = [0u8; 2];
        self.ring.read(self.layout.used_idx(), &mut index).ok()?;
        if u16::from_le_bytes(index) == self.used_idx {
            return None;
        }
        let mut element = [0u8; 8];
        self.ring
            .read(self.layout.used_element(self.used_idx), &mut element)
            .ok()?;
        self.used_idx = self.used_idx.wrapping_add(1);
        let (head, len) = ring::used_element(element);
        let buffer = u16::try_from(head / 2).ok().filter(|&b| b < self.count)?;
        Some((buffer, len))
    }

    fn slot(&self, index: u16) -> usize {
        usize::from(index) * ring::SLOT
    }
}

/// A started device.
struct Device {
    base: u16,
    irq: Option<u8>,
    mac: [u8; 6],
    link_up: bool,
    has_status: bool,
    receive: Queue,
    transmit: Queue,
    /// Transmit slots not in the device's hands.
    free: Vec<u16>,
    /// Frames offered but not yet published to the device.
    transmit_offered: bool,
    transmit_dropped: u64,
    /// Frames refused for their size (empty or over `ring::MAX_FRAME`).
    transmit_refused: u64,
}

impl Device {
    fn find_and_start() -> Result<Device, &'static str> {
        let address = find().ok_or("no virtio network device (1af4:1000) granted on bus 0")?;
        Device::start(address)
    }

    fn start(address: u16) -> Result<Device, &'static str> {
        const NO_CONFIG: &str = "cannot read the device's PCI configuration";
        const NO_PORTS: &str = "the device's I/O ports are not granted";
        let bar = pci_read(address, 0x10).map_err(|_| NO_CONFIG)?;
        if bar & 1 == 0 {
            return Err("BAR0 is not an I/O BAR (is the device legacy? use disable-modern=on)");
        }
        let base = u16::try_from(bar & 0xffff_fffc).map_err(|_| "BAR0 beyond the I/O space")?;
        if base == 0 {
            return Err("BAR0 is not assigned");
        }
        let command = pci_read(address, PCI_COMMAND).map_err(|_| NO_CONFIG)?;
        let command = (command | COMMAND_IO | COMMAND_BUS_MASTER) & !COMMAND_INTX_DISABLE & 0xffff;
        pci_write(address, PCI_COMMAND, command)
            .map_err(|_| "cannot enable the device (command register)")?;
        let line = pci_read(address, 0x3c).map_err(|_| NO_CONFIG)? & 0xff;

        // Reset: the device forgets the rings of any previous instance; the
        // buffers of a version this one replaced can go.
        outb(base + register::STATUS, 0).map_err(|_| NO_PORTS)?;
        free_inherited();
        let _ = inb(base + register::ISR);
        outb(base + register::STATUS, status::ACKNOWLEDGE).map_err(|_| NO_PORTS)?;
        outb(
            base + register::STATUS,
            status::ACKNOWLEDGE | status::DRIVER,
        )
        .map_err(|_| NO_PORTS)?;
        let offered = inl(base + register::DEVICE_FEATURES).map_err(|_| NO_PORTS)?;
        let features = offered & (feature::MAC | feature::STATUS);
        outl(base + register::GUEST_FEATURES, features).map_err(|_| NO_PORTS)?;
        let fail = |reason: &'static str| {
            let _ = outb(base + register::STATUS, status::FAILED);
            reason
        };
        if features & feature::MAC == 0 {
            return Err(fail("the device has no MAC address"));
        }
        let mut mac = [0u8; 6];
        for (offset, byte) in (0u16..).zip(mac.iter_mut()) {
            *byte = inb(base + register::MAC + offset).map_err(|_| NO_PORTS)?;
        }
        let mut receive =
            Queue::set_up(base, ring::RECEIVE_QUEUE, RECEIVE_BUFFERS, true).map_err(fail)?;
        let transmit =
            Queue::set_up(base, ring::TRANSMIT_QUEUE, TRANSMIT_SLOTS, false).map_err(fail)?;
        outb(
            base + register::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
        )
        .map_err(|_| NO_PORTS)?;
        for index in 0..receive.count {
            receive
                .offer(index)
                .map_err(|_| fail("cannot fill the receive ring"))?;
        }
        receive
            .publish(base)
            .map_err(|_| fail("cannot fill the receive ring"))?;
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
        let free = (0..transmit.count).rev().collect();
        let mut device = Device {
            base,
            irq,
            mac,
            link_up: true,
            has_status: features & feature::STATUS != 0,
            receive,
            transmit,
            free,
            transmit_offered: false,
            transmit_dropped: 0,
            transmit_refused: 0,
        };
        device.link_up = device.read_link();
        let [a, b, c, d, e, f] = mac;
        let (bus, slot, function) = (address >> 8, (address >> 3) & 0x1f, address & 7);
        let irq_text = match irq {
            Some(irq) => alloc::format!("irq {irq}"),
            None => alloc::string::String::from("polled"),
        };
        atoll_sdk::println!(
            "network card at {bus:02x}:{slot:02x}.{function}, io {base:#x}, {irq_text}, mac {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}, link {}, {} receive buffers, {} transmit slots",
            if device.link_up { "up" } else { "down" },
            device.receive.count,
            device.transmit.count
        );
        Ok(device)
    }

    fn read_link(&self) -> bool {
        if !self.has_status {
            return true;
        }
        inw(self.base + register::LINK_STATUS).is_ok_and(|value| value & ring::LINK_UP != 0)
    }

    /// Reads (and so acknowledges) the ISR, unmasks the line; the ISR bits.
    fn interrupt(&self) -> u8 {
        let isr = inb(self.base + register::ISR).unwrap_or(0);
        if let Some(irq) = self.irq {
            let _ = irq_ack(irq);
        }
        isr
    }

    /// Puts `frame` in a transmit slot and offers it; the device hears of
    /// it at [`Device::publish_transmitted`] (one notification per batch).
    fn transmit(&mut self, frame: &[u8]) {
        if frame.is_empty() || frame.len() > ring::MAX_FRAME {
            // Logged at powers of two, as drops are: a batch of thousands of
            // empty frames must not flood the console.
            self.transmit_refused += 1;
            if self.transmit_refused.is_power_of_two() {
                atoll_sdk::println!(
                    "{} frames refused so far (the last of {} bytes)",
                    self.transmit_refused,
                    frame.len()
                );
            }
            return;
        }
        if self.free.is_empty() {
            // The frames offered so far go to the device first: slots come
            // back only once it has seen (and used) them.
            self.publish_transmitted();
            self.reclaim_transmitted();
        }
        let Some(index) = self.free.pop() else {
            self.transmit_dropped += 1;
            return;
        };
        let slot = self.transmit.slot(index);
        let physical = self.transmit.buffers.physical() + (slot + ring::FRAME_AT) as u64;
        let descriptor = ring::descriptor(physical, frame.len() as u32, 0, 0);
        let written = self
            .transmit
            .buffers
            .write(slot + ring::FRAME_AT, frame)
            .and_then(|()| {
                self.transmit
                    .ring
                    .write(self.transmit.layout.descriptor(2 * index + 1), &descriptor)
            })
            .and_then(|()| self.transmit.offer(index));
        match written {
            Ok(()) => self.transmit_offered = true,
            Err(_) => {
                self.transmit_dropped += 1;
                self.free.push(index);
            }
        }
    }

    /// Publishes the frames offered since the last call and notifies the
    /// device (a port write: a VM exit under QEMU, so once per batch).
    fn publish_transmitted(&mut self) {
        if core::mem::take(&mut self.transmit_offered) && self.transmit.publish(self.base).is_err()
        {
            self.transmit_dropped += 1;
        }
    }

    fn reclaim_transmitted(&mut self) {
        while let Some((index, _)) = self.transmit.take_used() {
            if !self.free.contains(&index) {
                self.free.push(index);
            }
        }
    }

    /// Hands every received frame to the TCP/IP service, as many to a
    /// message as fit, and gives the buffers back to the device.
    fn deliver_received(&mut self, link: &mut Uplink) {
        let mut returned = false;
        let mut batch = FrameBatch::default();
        while let Some((index, len)) = self.receive.take_used() {
            if let Some(frame_len) = ring::received_frame_len(len) {
                let mut frame = vec![0u8; frame_len];
                if self
                    .receive
                    .buffers
                    .read(self.receive.slot(index) + ring::FRAME_AT, &mut frame)
                    .is_ok()
                    && let Err(frame) = batch.push(frame)
                {
                    link.frames(&mut batch);
                    let _ = batch.push(frame);
                }
            }
            if self.receive.offer(index).is_ok() {
                returned = true;
            }
        }
        link.frames(&mut batch);
        if returned {
            let _ = self.receive.publish(self.base);
        }
    }
}

/// The first function on bus 0 with the virtio network id that this driver
/// may read (others answer `NotPermitted`).
fn find() -> Option<u16> {
    (0..32u16)
        .flat_map(|slot| (0..8u16).map(move |function| slot << 3 | function))
        .find(|&address| {
            pci_read(address, 0x00)
                .is_ok_and(|id| (id & 0xffff) as u16 == VENDOR && (id >> 16) as u16 == DEVICE)
        })
}
