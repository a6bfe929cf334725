//! Atoll's kernel core: the part of the kernel that needs no hardware.
//!
//! What is here: the service table (one Wasm instance per service, two for a
//! WASI program and its shim, each service in its own wasmi `Engine` and
//! `Store`), the scheduler that runs services in fuel slices, and the host
//! functions of the ABI, with every guest pointer checked in one place
//! ([`guest`]). It is `no_std` + `alloc` and talks to the machine only through the
//! [`Platform`] trait, so `cargo test` runs all of it on the host.
//!
//! What is not here: booting, CPU tables, interrupts, memory maps, devices. Those
//! live in the x86_64 layer (`kernel/x86_64`), which implements [`Platform`].
//!
//! Design principles, in order: a service's mistake is an error code or that
//! service's fault, never a kernel panic; simple and clear algorithms over clever
//! ones; nothing a service controls reaches an `unwrap` or an unchecked index.
#![cfg_attr(not(test), no_std)]
// No unsafe code in the core; the host tests alone have one, a counting
// allocator (src/test_allocator.rs), which is why this is `deny` under test.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]
#![deny(clippy::indexing_slicing)]

extern crate alloc;

pub mod control;
pub mod grants;
pub mod guest;
pub mod heap;
mod host;
pub mod ipc;
pub mod kernel;
pub mod loader;
pub mod preflight;
pub mod service;
pub mod trace;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_allocator;
#[cfg(test)]
mod tests;

pub use kernel::{BootError, Kernel, RunSummary, ServiceState, ServiceStats, Wait};
pub use loader::LoadError;

/// What the kernel core needs from the machine it runs on.
pub trait Platform: Send + Sync + 'static {
    /// Nanoseconds since boot on a monotonic clock.
    fn now_ns(&self) -> u64;
    /// Writes text to the console. Called with whole lines. A platform may
    /// hold them back for a while (see [`Platform::console_turn`]) and
    /// write them out when it idles in [`Platform::wait_until`].
    fn console_write(&self, text: &str);
    /// Called at the start of every turn the scheduler gives (a server run
    /// in place, inside its caller's turn, is not a turn of its own): a
    /// platform that holds console lines back writes them out if they have
    /// waited long enough.
    fn console_turn(&self, _now_ns: u64) {}
    /// Waits until an interrupt or until the clock reaches `deadline_ns`,
    /// whichever comes first (returning early is allowed). Called only when no
    /// service is ready.
    fn wait_until(&self, deadline_ns: u64);
    /// Wall-clock time at boot, in nanoseconds since the Unix epoch (0 if the
    /// platform has no clock). WASI's realtime clock is this plus [`Platform::now_ns`].
    fn boot_wall_clock_ns(&self) -> u64 {
        0
    }
    /// A seed for services' random generators, as unpredictable as the
    /// platform can make it.
    fn random_seed(&self) -> u64 {
        self.now_ns()
    }
    /// Bytes the kernel heap can still hand out. Services' memories may only
    /// grow while this stays above a reserve for the kernel's own use.
    fn heap_available(&self) -> usize {
        usize::MAX
    }
    /// Bytes of kernel heap in use, where the platform counts them.
    fn heap_in_use(&self) -> Option<usize> {
        None
    }
    /// Reads `width` (1, 2 or 4) bytes from an I/O port. The kernel calls
    /// this only for ports granted to the asking service.
    fn port_in(&self, _port: u16, _width: u8) -> u32 {
        u32::MAX
    }
    /// Writes the low `width` bytes of `value` to an I/O port.
    fn port_out(&self, _port: u16, _width: u8, _value: u32) {}
    /// Reads a 32-bit PCI configuration register (`None`: no PCI here).
    fn pci_read(&self, _address: u16, _offset: u8) -> Option<u32> {
        None
    }
    /// Writes a 32-bit PCI configuration register.
    fn pci_write(&self, _address: u16, _offset: u8, _value: u32) {}
    /// Unmasks interrupt line `irq`. The platform masks a line when it fires.
    fn irq_unmask(&self, _irq: u8) {}
    /// Takes the set of lines that fired since the last call (bit n: IRQ n).
    fn take_interrupts(&self) -> u16 {
        0
    }
    /// The physical address of kernel memory at `virtual_address`, for DMA
    /// (`None`: this platform has no DMA).
    fn physical_address(&self, _virtual_address: usize) -> Option<u64> {
        None
    }
    /// Reads up to `max` bytes of this platform's own standard input for a
    /// WASI program's `fd_read` on descriptor 0 when it has no console
    /// service to read from, blocking until some arrive; an empty answer is
    /// the end of the input. `None`: the platform has none (the program
    /// reads end of file). The hosted core (`host-run`) passes its stdin.
    fn stdin_read(&self, _max: usize) -> Option<alloc::vec::Vec<u8>> {
        None
    }
    /// Reads bytes waiting on the host control channel, without blocking.
    /// Returns how many were written to `buffer` (0: none, or no channel).
    fn control_read(&self, _buffer: &mut [u8]) -> usize {
        0
    }
    /// Writes a reply line to the host control channel.
    fn control_write(&self, _text: &str) {}
}
