//! virtio-blk: the disk driver, a legacy virtio-pci block device served as the
//! `block` protocol.
//!
//! What it is: a driver service granted its device by `pci = ["1af4:1001"]`
//! (configuration access, the I/O BAR as ports, the interrupt line) and a DMA
//! budget (`dma-kib`, 32 KiB is plenty). At start it finds the first granted
//! function on bus 0 with that id (functions it may not read answer
//! `NotPermitted` and are skipped), turns on I/O decoding and bus mastering,
//! resets the device and sets up queue 0 in one page-aligned DMA buffer with
//! the legacy layout. It then serves `Capacity`, `Read`, `Write` and `Flush`
//! on its first provided endpoint, one request at a time: a chain of three
//! descriptors (header, data, status) in a second DMA buffer, a notify, then a
//! wait for the used ring to move.
//!
//! Completion is interrupt driven, with polling as the safety net: while it
//! waits the driver receives on its endpoint with a short timeout; the
//! kernel's interrupt notification (a 1-byte message from `KERNEL_SENDER`)
//! wakes it at once, it reads the ISR register (which acknowledges the device)
//! and unmasks the line with `irq_ack`; a timeout just checks the used ring
//! again, so a lost or unrouted interrupt costs latency, not correctness.
//! Client requests that arrive during the wait are kept in order and served
//! next. A request the device has not finished after 5 seconds fails with
//! `Io` and the device is reset and set up again.
//!
//! Restarts are safe: a fresh instance resets the device before anything else,
//! so whatever the previous one left in flight is dropped by the device.
//!
//! What it is not: a modern (virtio 1.0) driver, a multi-queue or
//! multi-request one (one request in flight), or a driver for more than one
//! disk. `Flush` is sent to the device only if it offers the flush feature
//! (without it the device has no write cache and `Flush` answers `Done`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ring;

#[cfg(target_family = "wasm")]
mod driver;

#[cfg(target_family = "wasm")]
atoll_sdk::entry!(driver::main);
