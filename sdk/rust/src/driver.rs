//! Drivers: I/O ports, interrupts, DMA buffers and PCI configuration, as far
//! as `system.toml` grants them (see `atoll_abi::driver`), and the `info`
//! records behind `ps` and `stats`.

use crate::{Error, check, check_value, raw};
pub use atoll_abi::driver::{
    COMMAND_BUS_MASTER, COMMAND_DRIVER_BITS, COMMAND_INTX_DISABLE, COMMAND_IO, COMMAND_MEMORY,
    PCI_COMMAND,
};
use atoll_abi::info;
pub use atoll_abi::info::{EndpointInfo, ServiceInfo, SystemInfo, TraceInfo};

/// A 64-bit host result: a value, or a negative error code.
fn check_wide(value: i64) -> Result<u64, Error> {
    if value >= 0 {
        return Ok(value.cast_unsigned());
    }
    let code = i32::try_from(value).unwrap_or(Error::InvalidArgument.code());
    Err(Error::from_code(code).unwrap_or(Error::InvalidArgument))
}

/// Reads `width` (1, 2 or 4) bytes from I/O port `port`.
pub fn port_in(port: u16, width: u8) -> Result<u32, Error> {
    // SAFETY: no memory is touched; the kernel checks the grant.
    let value = check_wide(unsafe { raw::port_in(i32::from(port), i32::from(width)) })?;
    u32::try_from(value).map_err(|_| Error::InvalidArgument)
}

/// Reads one byte from an I/O port.
pub fn inb(port: u16) -> Result<u8, Error> {
    port_in(port, 1).map(|value| value as u8)
}

/// Reads two bytes from an I/O port.
pub fn inw(port: u16) -> Result<u16, Error> {
    port_in(port, 2).map(|value| value as u16)
}

/// Reads four bytes from an I/O port.
pub fn inl(port: u16) -> Result<u32, Error> {
    port_in(port, 4)
}

/// Writes the low `width` bytes of `value` to I/O port `port`.
pub fn port_out(port: u16, width: u8, value: u32) -> Result<(), Error> {
    // SAFETY: no memory is touched; the kernel checks the grant.
    check(unsafe { raw::port_out(i32::from(port), i32::from(width), value.cast_signed()) })
}

pub fn outb(port: u16, value: u8) -> Result<(), Error> {
    port_out(port, 1, u32::from(value))
}

pub fn outw(port: u16, value: u16) -> Result<(), Error> {
    port_out(port, 2, u32::from(value))
}

pub fn outl(port: u16, value: u32) -> Result<(), Error> {
    port_out(port, 4, value)
}

/// Unmasks interrupt line `irq` (after set-up, and after each notification).
pub fn irq_ack(irq: u8) -> Result<(), Error> {
    // SAFETY: no memory is touched.
    check(unsafe { raw::irq_ack(i32::from(irq)) })
}

/// The IRQ number if `message` (from [`atoll_abi::supervision::KERNEL_SENDER`])
/// is an interrupt notification.
#[must_use]
pub fn notification(message: &[u8]) -> Option<u8> {
    match message {
        [irq] => Some(*irq),
        _ => None,
    }
}

/// A DMA buffer: kernel memory a device can reach by physical address,
/// copied to and from this service's memory explicitly.
#[derive(Debug, PartialEq, Eq)]
pub struct Dma {
    handle: i32,
    len: usize,
    physical: u64,
}

impl Dma {
    /// Allocates `len` zeroed bytes, page-aligned and physically contiguous.
    pub fn allocate(len: usize) -> Result<Dma, Error> {
        let size = i32::try_from(len).map_err(|_| Error::TooLarge)?;
        // SAFETY: no memory is touched.
        let handle = check_value(unsafe { raw::dma_alloc(size) })?.cast_signed();
        // SAFETY: no memory is touched.
        let physical = check_wide(unsafe { raw::dma_address(handle) })?;
        Ok(Dma {
            handle,
            len,
            physical,
        })
    }

    /// The kernel's handle of this buffer (for a hot swap's state handoff:
    /// the new version gets the old one's buffers, see [`Dma::free_inherited`]).
    #[must_use]
    pub fn handle(&self) -> i32 {
        self.handle
    }

    /// Frees a buffer this version did not allocate: one the version it
    /// replaced in a hot swap held and named in its state. Call it only once
    /// the device can no longer use the buffer (after a reset): the kernel
    /// keeps freed buffers for this service's later allocations, so the new
    /// version's own buffers fit in its `dma-kib` again.
    pub fn free_inherited(handle: i32) -> Result<(), Error> {
        // SAFETY: no memory is touched.
        check(unsafe { raw::dma_free(handle) })
    }

    /// The buffer's physical address, for the device.
    #[must_use]
    pub fn physical(&self) -> u64 {
        self.physical
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `bytes` into the buffer at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let offset = i32::try_from(offset).map_err(|_| Error::OutOfBounds)?;
        // SAFETY: `bytes` is live for the call and only read by the kernel.
        check(unsafe { raw::dma_write(self.handle, offset, bytes.as_ptr(), bytes.len()) })
    }

    /// Fills `bytes` from the buffer at `offset`.
    pub fn read(&self, offset: usize, bytes: &mut [u8]) -> Result<(), Error> {
        let offset = i32::try_from(offset).map_err(|_| Error::OutOfBounds)?;
        // SAFETY: `bytes` is live and writable for the call.
        check(unsafe { raw::dma_read(self.handle, offset, bytes.as_mut_ptr(), bytes.len()) })
    }
}

impl Drop for Dma {
    fn drop(&mut self) {
        // SAFETY: no memory is touched; the handle is this buffer's.
        unsafe { raw::dma_free(self.handle) };
    }
}

/// Reads the 32-bit configuration register at `offset` of PCI function
/// `address` (`bus << 8 | device << 3 | function`).
pub fn pci_read(address: u16, offset: u8) -> Result<u32, Error> {
    // SAFETY: no memory is touched; the kernel checks the grant.
    let value = check_wide(unsafe { raw::pci_read(i32::from(address), i32::from(offset)) })?;
    u32::try_from(value).map_err(|_| Error::InvalidArgument)
}

/// Writes the command register ([`PCI_COMMAND`]) of a PCI function granted
/// by name: only [`COMMAND_DRIVER_BITS`] (I/O space, memory space, bus
/// master and INTx disable) may change. Any other offset or bit:
/// `Error::NotPermitted`.
pub fn pci_write(address: u16, offset: u8, value: u32) -> Result<(), Error> {
    // SAFETY: no memory is touched; the kernel checks the grant.
    check(unsafe { raw::pci_write(i32::from(address), i32::from(offset), value.cast_signed()) })
}

fn info_record<T: serde::de::DeserializeOwned>(kind: i32, index: u32) -> Result<T, Error> {
    let mut buffer = [0u8; 512];
    let index = i32::try_from(index).map_err(|_| Error::NotFound)?;
    // SAFETY: `buffer` is live and writable for the call.
    let len = check_value(unsafe { raw::info(kind, index, buffer.as_mut_ptr(), buffer.len()) })?;
    let record = buffer.get(..len as usize).ok_or(Error::BufferTooSmall)?;
    postcard::from_bytes(record).map_err(|_| Error::InvalidArgument)
}

/// The system's counters.
pub fn system_info() -> Result<SystemInfo, Error> {
    info_record(info::SYSTEM, 0)
}

/// Service number `index` (from 0); `NotFound` past the last.
pub fn service_info(index: u32) -> Result<ServiceInfo, Error> {
    info_record(info::SERVICE, index)
}

/// Endpoint number `index` (from 0); `NotFound` past the last.
pub fn endpoint_info(index: u32) -> Result<EndpointInfo, Error> {
    info_record(info::ENDPOINT, index)
}

/// Whether the kernel's trace ring records, and what it holds.
pub fn trace_info() -> Result<TraceInfo, Error> {
    info_record(info::TRACE, 0)
}
