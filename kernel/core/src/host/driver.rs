//! The driver host functions: ports, interrupt acknowledgement, DMA buffers
//! and PCI configuration, each checked against the service's grants
//! ([`crate::grants`]) before the platform touches hardware.

use super::{HostState, charge};
use crate::guest::GuestSlice;
use atoll_abi::Error;
use atoll_abi::driver::{COMMAND_DRIVER_BITS, PCI_COMMAND};
use wasmi::{Caller, Linker};

/// Defines the driver host functions in `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    use atoll_abi::IMPORT_MODULE as M;
    linker.func_wrap(M, atoll_abi::PORT_IN.name, port_in)?;
    linker.func_wrap(M, atoll_abi::PORT_OUT.name, port_out)?;
    linker.func_wrap(M, atoll_abi::IRQ_ACK.name, irq_ack)?;
    linker.func_wrap(M, atoll_abi::DMA_ALLOC.name, dma_alloc)?;
    linker.func_wrap(M, atoll_abi::DMA_ADDRESS.name, dma_address)?;
    linker.func_wrap(M, atoll_abi::DMA_READ.name, dma_read)?;
    linker.func_wrap(M, atoll_abi::DMA_WRITE.name, dma_write)?;
    linker.func_wrap(M, atoll_abi::DMA_FREE.name, dma_free)?;
    linker.func_wrap(M, atoll_abi::PCI_READ.name, pci_read)?;
    linker.func_wrap(M, atoll_abi::PCI_WRITE.name, pci_write)?;
    Ok(())
}

/// A checked port access: `(port, width)` if it lies in a granted range.
fn port_access(state: &HostState, port: i32, width: i32) -> Result<(u16, u8), Error> {
    let port = u16::try_from(port).map_err(|_| Error::InvalidArgument)?;
    let width = match width {
        1 => 1u8,
        2 => 2,
        4 => 4,
        _ => return Err(Error::InvalidArgument),
    };
    let granted = state
        .driver
        .grants
        .ports
        .iter()
        .any(|range| range.contains(port, u16::from(width)));
    if granted {
        Ok((port, width))
    } else {
        Err(Error::NotPermitted)
    }
}

fn port_in(caller: Caller<'_, HostState>, port: i32, width: i32) -> i64 {
    match port_access(caller.data(), port, width) {
        Ok((port, width)) => i64::from(caller.data().platform.port_in(port, width)),
        Err(error) => i64::from(error.code()),
    }
}

fn port_out(caller: Caller<'_, HostState>, port: i32, width: i32, value: i32) -> i32 {
    match port_access(caller.data(), port, width) {
        Ok((port, width)) => {
            caller
                .data()
                .platform
                .port_out(port, width, value.cast_unsigned());
            0
        }
        Err(error) => error.code(),
    }
}

fn irq_ack(caller: Caller<'_, HostState>, irq: i32) -> i32 {
    let Ok(irq) = u8::try_from(irq) else {
        return Error::NotPermitted.code();
    };
    if !caller.data().driver.grants.irqs.contains(&irq) {
        return Error::NotPermitted.code();
    }
    caller.data().platform.irq_unmask(irq);
    0
}

fn dma_alloc(mut caller: Caller<'_, HostState>, len: i32) -> i32 {
    let state = caller.data_mut();
    let budget = state.driver.grants.dma_budget;
    let result = usize::try_from(len)
        .map_err(|_| Error::InvalidArgument)
        .and_then(|len| {
            let platform = state.platform.as_ref();
            state.driver.dma.alloc(len, budget, &state.heap, platform)
        });
    charge(&mut caller, len.max(0) as u64 / super::BYTES_PER_FUEL);
    result.unwrap_or_else(Error::code)
}

fn dma_address(mut caller: Caller<'_, HostState>, handle: i32) -> i64 {
    match caller.data_mut().driver.dma.physical(handle) {
        Ok(physical) => i64::try_from(physical).unwrap_or(i64::MAX),
        Err(error) => i64::from(error.code()),
    }
}

/// Which way a DMA copy goes.
#[derive(Clone, Copy)]
enum Direction {
    /// Buffer to linear memory (`dma_read`).
    ToService,
    /// Linear memory to buffer (`dma_write`).
    ToBuffer,
}

fn dma_read(caller: Caller<'_, HostState>, handle: i32, offset: i32, ptr: i32, len: i32) -> i32 {
    dma_copy(caller, Direction::ToService, handle, offset, ptr, len)
}

fn dma_write(caller: Caller<'_, HostState>, handle: i32, offset: i32, ptr: i32, len: i32) -> i32 {
    dma_copy(caller, Direction::ToBuffer, handle, offset, ptr, len)
}

/// Copies `len` bytes between buffer `handle` at `offset` and the caller's
/// memory at `ptr`, both windows checked first.
fn dma_copy(
    mut caller: Caller<'_, HostState>,
    direction: Direction,
    handle: i32,
    offset: i32,
    ptr: i32,
    len: i32,
) -> i32 {
    let result = (|| -> Result<(), Error> {
        let memory = crate::host::guest_memory(&caller).ok_or(Error::NoMemory)?;
        let (memory, state) = memory.data_and_store_mut(&mut caller);
        let device = state.driver.dma.window(handle, offset, len)?;
        let service = GuestSlice::new(ptr, len).write(memory, usize::MAX)?;
        match direction {
            Direction::ToService => service.copy_from_slice(device),
            Direction::ToBuffer => device.copy_from_slice(service),
        }
        Ok(())
    })();
    charge(&mut caller, len.max(0) as u64 / super::BYTES_PER_FUEL);
    result.map_or_else(Error::code, |()| 0)
}

fn dma_free(mut caller: Caller<'_, HostState>, handle: i32) -> i32 {
    caller
        .data_mut()
        .driver
        .dma
        .free(handle)
        .map_or_else(Error::code, |()| 0)
}

/// A checked configuration access: the function is granted and the register
/// is aligned and inside the 256-byte header.
fn pci_access(state: &HostState, address: i32, offset: i32) -> Result<(u16, u8), Error> {
    let address = u16::try_from(address).map_err(|_| Error::InvalidArgument)?;
    let offset = u8::try_from(offset).map_err(|_| Error::InvalidArgument)?;
    if offset % 4 != 0 {
        return Err(Error::InvalidArgument);
    }
    let grants = &state.driver.grants;
    if grants.pci_all || grants.pci.contains(&address) {
        Ok((address, offset))
    } else {
        Err(Error::NotPermitted)
    }
}

fn pci_read(caller: Caller<'_, HostState>, address: i32, offset: i32) -> i64 {
    let result = pci_access(caller.data(), address, offset).and_then(|(address, offset)| {
        caller
            .data()
            .platform
            .pci_read(address, offset)
            .ok_or(Error::NotPermitted)
    });
    match result {
        Ok(value) => i64::from(value),
        Err(error) => i64::from(error.code()),
    }
}

/// Writes a configuration register of a function granted by name. Only the
/// command register is writable, and in it only [`COMMAND_DRIVER_BITS`]
/// (the status half is write-one-to-clear and clears error bits only).
/// Everything else is refused: identity, BARs (the kernel granted ports from
/// them), the expansion ROM BAR, cache line and BIST, the interrupt line the
/// kernel resolved, and every capability (MSI and MSI-X address and data,
/// power management and function-level reset, which would reset the BARs)
/// and device-specific register from 0x40 on.
fn pci_write(caller: Caller<'_, HostState>, address: i32, offset: i32, value: i32) -> i32 {
    let result = pci_access(caller.data(), address, offset).and_then(|(address, offset)| {
        // The `*` grant reads only: writes need a grant naming the function.
        if !caller.data().driver.grants.pci.contains(&address) || offset != PCI_COMMAND {
            return Err(Error::NotPermitted);
        }
        let platform = &caller.data().platform;
        let current = platform
            .pci_read(address, PCI_COMMAND)
            .ok_or(Error::NotPermitted)?;
        let value = value.cast_unsigned();
        if (value ^ current) & 0xffff & !COMMAND_DRIVER_BITS != 0 {
            return Err(Error::NotPermitted);
        }
        platform.pci_write(address, PCI_COMMAND, value);
        Ok(())
    });
    result.map_or_else(Error::code, |()| 0)
}
