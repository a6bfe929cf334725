//! virtio-net: the network card driver, a legacy virtio-pci network device
//! linked to the TCP/IP service.
//!
//! What it is: a driver service granted its device by `pci = ["1af4:1000"]`
//! (configuration access, the I/O BAR as ports, the interrupt line) and a DMA
//! budget (`dma-kib`, 512 KiB: two rings and 192 buffers of 2 KiB). At start
//! it finds the first granted function on bus 0 with that id, turns on I/O
//! decoding and bus mastering, resets the device, negotiates the MAC and link
//! status features (nothing else: no offloads, no merged receive buffers, so
//! every packet has a 10-byte header in its own descriptor) and sets up the
//! receive queue (0) and the transmit queue (1) with the legacy layout.
//!
//! Receive: up to 128 buffers are kept in the device's hands; each one used
//! is copied out and given back to the device at once, and the frames taken
//! in one look at the ring go to the TCP/IP service's `net` endpoint as
//! `Link::Frames`, as many to a message as fit (`FrameBatch`: two full-size
//! frames, dozens of ACKs). A full queue on the TCP/IP side drops them (TCP
//! sends them again); drops are counted and logged at powers of two.
//! Transmit: each frame of a `nic::Request::Frames` (or `Frame`) message on
//! this service's `nic` endpoint goes into one of 64 slots, and the device is
//! notified once per message; slots come back when the device has used them
//! (completion), and a frame that finds every slot busy is dropped and
//! counted.
//!
//! Interrupts with a poll fallback: the driver waits on its endpoint with a
//! timeout (20 ms with an interrupt line, 1 ms without); an interrupt
//! notification reads the ISR (acknowledging the device), unmasks the line
//! and looks at both rings, and so does every message and every timeout.
//! A configuration interrupt re-reads the link state; without an interrupt
//! line it is read every 500 ms. Changes are sent as `Link::State`.
//!
//! Restarts lose nothing above the driver: a new instance resets the device
//! (dropping what the old one had queued) and announces itself again with
//! `Link::Up`; the TCP/IP service keeps its sockets and TCP retransmits what
//! fell into the gap. `nic::Request::Hello` (sent by a restarted TCP/IP
//! service) makes it announce itself again.
//!
//! Hot swaps too: the old version hands its four DMA handles on as its state
//! (`atoll_sdk::state_handoff!`); the new one resets the device, frees them
//! (the kernel gives a swapped-in version the old one's buffers, which fill
//! the budget) and starts like a restarted instance. A swap rolled back after
//! the new version reset the device leaves the old one with a reset device:
//! as after a restart, the supervisor restarts it if it fails.
//!
//! What it is not: a modern (virtio 1.0) driver, a multi-queue one, or one
//! for more than one card.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ring;

#[cfg(target_family = "wasm")]
mod driver;

#[cfg(target_family = "wasm")]
atoll_sdk::entry!(driver::main);
