//! Driver capabilities: I/O ports, interrupt lines, DMA buffers and PCI
//! configuration, each checked against what `system.toml` granted.
//!
//! What is here: resolving a service's grants at boot (a PCI grant naming a
//! vendor becomes the matching functions' configuration space, I/O BARs and
//! interrupt line), the host functions that use them, and quiescing a
//! driver's devices when it ends. What is not here: touching hardware, which
//! the [`Platform`] does; interrupt delivery, which the scheduler does
//! (`Kernel::deliver_interrupts`).
//!
//! The model: the kernel only checks and moves bytes. A driver programs its
//! device itself, through port and configuration accesses the kernel checks
//! one by one, and gives the device physical addresses of DMA buffers the
//! kernel allocated for it (there is no IOMMU: a device can reach all memory,
//! so only drivers of trusted devices get PCI grants, and the kernel turns off
//! a driver's bus mastering before freeing its buffers).

use crate::Platform;
use crate::guest::GuestSlice;
use crate::host::charge;
use crate::service::HostState;
use alloc::vec::Vec;
use atoll_abi::driver::{Grants, MAX_IRQ, PciAddress, PortRange};
use atoll_abi::{Error, MEMORY_EXPORT};
use wasmi::{Caller, Extern, Linker};

/// A service's grants, resolved against the machine at boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub ports: Vec<PortRange>,
    pub irqs: Vec<u8>,
    /// PCI functions whose configuration space the service may use.
    pub pci: Vec<PciAddress>,
    /// The `*` grant: configuration access to every function.
    pub pci_all: bool,
    /// Functions whose bus mastering the kernel turns off when the service ends.
    pub bus_masters: Vec<PciAddress>,
    pub dma_budget: usize,
}

/// PCI configuration offsets the kernel uses.
const PCI_ID: u8 = 0x00;
const PCI_COMMAND: u8 = 0x04;
const PCI_HEADER_TYPE: u8 = 0x0c;
const PCI_BAR0: u8 = 0x10;
const PCI_INTERRUPT_LINE: u8 = 0x3c;
/// Command register bit 2: the function may master the bus (DMA).
const COMMAND_BUS_MASTER: u32 = 1 << 2;

/// Every present PCI function, with its vendor and device ids.
pub fn enumerate(platform: &dyn Platform) -> Vec<(PciAddress, u16, u16)> {
    let mut found = Vec::new();
    for bus in 0..=255u16 {
        for device in 0..32u16 {
            let first = (bus << 8) | (device << 3);
            let Some(id) = platform.pci_read(first, PCI_ID) else {
                return found;
            };
            if id & 0xffff == 0xffff {
                continue;
            }
            let multi = platform
                .pci_read(first, PCI_HEADER_TYPE)
                .is_some_and(|value| value & 0x0080_0000 != 0);
            let functions = if multi { 8 } else { 1 };
            for function in 0..functions {
                let address = first | function;
                let Some(id) = platform.pci_read(address, PCI_ID) else {
                    continue;
                };
                if id & 0xffff != 0xffff {
                    found.push((address, id as u16, (id >> 16) as u16));
                }
            }
        }
    }
    found
}

/// What earlier services' grants already hold: a PCI function, a line or a
/// port goes to one service only (the first in the description).
#[derive(Debug, Default)]
pub struct Claims {
    functions: Vec<PciAddress>,
    irqs: Vec<u8>,
    ports: Vec<PortRange>,
}

/// Resolves `grants` against the PCI functions `present`, skipping what is
/// reserved for the kernel or already claimed. Returns the grants and a line
/// for the log about each thing skipped.
pub fn resolve(
    grants: &Grants,
    present: &[(PciAddress, u16, u16)],
    platform: &dyn Platform,
    claims: &mut Claims,
) -> (Resolved, Vec<alloc::string::String>) {
    use alloc::format;
    let mut skipped = Vec::new();
    let mut resolved = Resolved {
        dma_budget: grants.dma_kib as usize * 1024,
        ..Resolved::default()
    };
    // image-builder refuses these already; the kernel does not rely on it.
    let mut add_ports = |range: PortRange, resolved: &mut Resolved, skipped: &mut Vec<_>| {
        if let Some(owner) = atoll_abi::driver::reserved(&range) {
            skipped.push(format!(
                "ports {:#x}-{:#x} overlap {owner}",
                range.first, range.last
            ));
        } else if claims.ports.iter().any(|claimed| claimed.overlaps(&range)) {
            skipped.push(format!(
                "ports {:#x}-{:#x} are granted already",
                range.first, range.last
            ));
        } else {
            claims.ports.push(range);
            resolved.ports.push(range);
        }
    };
    for &range in &grants.ports {
        add_ports(range, &mut resolved, &mut skipped);
    }
    let mut wanted_irqs: Vec<u8> = grants.irqs.clone();
    for grant in &grants.pci {
        if grant.vendor.is_none() {
            resolved.pci_all = true;
            continue;
        }
        for &(address, vendor, device) in present {
            if !grant.matches(vendor, device) || resolved.pci.contains(&address) {
                continue;
            }
            if claims.functions.contains(&address) {
                skipped.push(format!("PCI function {address:#06x} is granted already"));
                continue;
            }
            claims.functions.push(address);
            resolved.pci.push(address);
            resolved.bus_masters.push(address);
            for range in io_bars(address, platform) {
                add_ports(range, &mut resolved, &mut skipped);
            }
            if let Some(line) = platform.pci_read(address, PCI_INTERRUPT_LINE) {
                let irq = line as u8;
                if (1..=MAX_IRQ).contains(&irq) && !wanted_irqs.contains(&irq) {
                    wanted_irqs.push(irq);
                }
            }
        }
    }
    for irq in wanted_irqs {
        if !(1..=MAX_IRQ).contains(&irq) || atoll_abi::driver::RESERVED_IRQS.contains(&irq) {
            skipped.push(format!("IRQ {irq} is the kernel's"));
        } else if claims.irqs.contains(&irq) {
            skipped.push(format!(
                "IRQ {irq} is granted already (lines are not shared)"
            ));
        } else {
            claims.irqs.push(irq);
            resolved.irqs.push(irq);
        }
    }
    (resolved, skipped)
}

/// The I/O port ranges a function decodes (its I/O BARs), sized the standard
/// way: write all ones, read back the mask, restore. Runs at boot, before any
/// driver touches the device.
fn io_bars(address: PciAddress, platform: &dyn Platform) -> Vec<PortRange> {
    let mut ranges = Vec::new();
    for index in 0..6u8 {
        let offset = PCI_BAR0 + index * 4;
        let Some(bar) = platform.pci_read(address, offset) else {
            break;
        };
        if bar & 1 == 0 {
            continue; // memory BAR (not granted: no MMIO mapping for services)
        }
        platform.pci_write(address, offset, u32::MAX);
        let mask = platform.pci_read(address, offset).unwrap_or(0);
        platform.pci_write(address, offset, bar);
        let size = (!(mask & 0xffff_fffc)).wrapping_add(1) & 0xffff;
        let base = (bar & 0xffff_fffc) as u16;
        if size == 0 || base == 0 {
            continue;
        }
        if let Some(last) = base.checked_add(size as u16 - 1) {
            let range = PortRange { first: base, last };
            if atoll_abi::driver::reserved(&range).is_none() {
                ranges.push(range);
            }
        }
    }
    ranges
}

/// Turns off bus mastering of the service's PCI functions: called when a
/// driver ends, before its DMA buffers can be freed.
pub fn quiesce(resolved: &Resolved, platform: &dyn Platform) {
    for &address in &resolved.bus_masters {
        if let Some(command) = platform.pci_read(address, PCI_COMMAND) {
            platform.pci_write(address, PCI_COMMAND, command & !COMMAND_BUS_MASTER);
        }
    }
}

/// A DMA buffer: heap memory that never moves while it lives.
pub(crate) struct DmaBuffer {
    /// Over-allocated by a page so that a page-aligned window fits.
    storage: Vec<u8>,
    start: usize,
    len: usize,
    physical: u64,
}

impl DmaBuffer {
    fn bytes_mut(&mut self) -> &mut [u8] {
        let end = self.start + self.len;
        self.storage.get_mut(self.start..end).unwrap_or(&mut [])
    }
}

/// A service's DMA buffers. Freed buffers are retired, not returned to the
/// heap: the device may still hold their addresses. Retired buffers are
/// reused by the same service's later allocations and go back to the heap
/// only with the whole pool, which the kernel drops after turning the
/// service's bus mastering off (restart, stop, end). A hot swap hands the
/// pool, handles and all, to the new version.
#[derive(Default)]
pub struct DmaPool {
    /// Handle `h` is `live[h - 1]`.
    live: Vec<Option<DmaBuffer>>,
    retired: Vec<DmaBuffer>,
    /// Bytes of live and retired buffers: what counts against the budget.
    bytes: usize,
}

/// What a service holds of driver resources (in its [`HostState`]).
#[derive(Default)]
pub(crate) struct DriverState {
    pub(crate) grants: alloc::sync::Arc<Resolved>,
    pub(crate) dma: DmaPool,
}

impl DriverState {
    pub(crate) fn dma_bytes(&self) -> usize {
        self.dma.bytes
    }
}

const PAGE: usize = 4096;

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
    let result = (|| -> Result<i32, Error> {
        let len = usize::try_from(len).map_err(|_| Error::InvalidArgument)?;
        if len == 0 {
            return Err(Error::InvalidArgument);
        }
        let rounded = len.div_ceil(PAGE) * PAGE;
        let state = caller.data_mut();
        let budget = state.driver.grants.dma_budget;
        if budget == 0 {
            return Err(Error::NotPermitted);
        }
        let pool = &mut state.driver.dma;
        // A retired buffer large enough is reused (zeroed); it is already
        // counted against the budget.
        let buffer = match pool.retired.iter().position(|buffer| buffer.len >= rounded) {
            Some(index) => {
                let mut buffer = pool.retired.swap_remove(index);
                buffer.bytes_mut().fill(0);
                buffer
            }
            None => {
                if pool.bytes.saturating_add(rounded) > budget {
                    return Err(Error::TooLarge);
                }
                let needed = rounded
                    .saturating_add(PAGE)
                    .saturating_add(crate::service::KERNEL_HEAP_RESERVE);
                if state.platform.heap_available() < needed {
                    return Err(Error::TooLarge);
                }
                // Free heap may be fragmented: ask, do not assume.
                let mut storage: Vec<u8> = Vec::new();
                storage
                    .try_reserve_exact(rounded + PAGE)
                    .map_err(|_| Error::TooLarge)?;
                storage.resize(rounded + PAGE, 0);
                let base = storage.as_ptr() as usize;
                let start = base.next_multiple_of(PAGE) - base;
                let physical = state
                    .platform
                    .physical_address(base + start)
                    .ok_or(Error::NotPermitted)?;
                let pool = &mut state.driver.dma;
                pool.bytes += rounded;
                DmaBuffer {
                    storage,
                    start,
                    len: rounded,
                    physical,
                }
            }
        };
        let pool = &mut state.driver.dma;
        let slot = match pool.live.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                pool.live.push(None);
                pool.live.len() - 1
            }
        };
        if let Some(entry) = pool.live.get_mut(slot) {
            *entry = Some(buffer);
        }
        i32::try_from(slot + 1).map_err(|_| Error::TooLarge)
    })();
    charge(&mut caller, len.max(0) as u64 / 64);
    result.unwrap_or_else(Error::code)
}

impl DmaPool {
    /// The live buffer of `handle` (handle `h` names `live[h - 1]`).
    fn slot(&mut self, handle: i32) -> Result<&mut Option<DmaBuffer>, Error> {
        usize::try_from(handle)
            .ok()
            .and_then(|handle| handle.checked_sub(1))
            .and_then(|index| self.live.get_mut(index))
            .ok_or(Error::BadHandle)
    }

    fn buffer(&mut self, handle: i32) -> Result<&mut DmaBuffer, Error> {
        self.slot(handle)?.as_mut().ok_or(Error::BadHandle)
    }
}

fn dma_address(mut caller: Caller<'_, HostState>, handle: i32) -> i64 {
    match caller.data_mut().driver.dma.buffer(handle) {
        Ok(buffer) => i64::try_from(buffer.physical).unwrap_or(i64::MAX),
        Err(error) => i64::from(error.code()),
    }
}

/// The window `offset..offset+len` of a buffer, checked.
fn window(buffer_len: usize, offset: i32, len: i32) -> Result<core::ops::Range<usize>, Error> {
    let offset = usize::try_from(offset).map_err(|_| Error::OutOfBounds)?;
    let len = usize::try_from(len).map_err(|_| Error::OutOfBounds)?;
    let end = offset.checked_add(len).ok_or(Error::OutOfBounds)?;
    if end > buffer_len {
        return Err(Error::OutOfBounds);
    }
    Ok(offset..end)
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
        let memory = caller
            .get_export(MEMORY_EXPORT)
            .and_then(Extern::into_memory)
            .ok_or(Error::NoMemory)?;
        let (memory, state) = memory.data_and_store_mut(&mut caller);
        let buffer = state.driver.dma.buffer(handle)?;
        let range = window(buffer.len, offset, len)?;
        let device = buffer
            .bytes_mut()
            .get_mut(range)
            .ok_or(Error::OutOfBounds)?;
        let service = GuestSlice::new(ptr, len).write(memory, usize::MAX)?;
        match direction {
            Direction::ToService => service.copy_from_slice(device),
            Direction::ToBuffer => device.copy_from_slice(service),
        }
        Ok(())
    })();
    charge(&mut caller, len.max(0) as u64 / 64);
    result.map_or_else(Error::code, |()| 0)
}

fn dma_free(mut caller: Caller<'_, HostState>, handle: i32) -> i32 {
    let pool = &mut caller.data_mut().driver.dma;
    match pool.slot(handle).map(Option::take) {
        Ok(Some(buffer)) => {
            // Retired, not freed: the device may still write it.
            pool.retired.push(buffer);
            0
        }
        _ => Error::BadHandle.code(),
    }
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

fn pci_write(caller: Caller<'_, HostState>, address: i32, offset: i32, value: i32) -> i32 {
    let result = pci_access(caller.data(), address, offset).and_then(|(address, offset)| {
        // The `*` grant reads only: writes need a grant naming the function.
        if !caller.data().driver.grants.pci.contains(&address) {
            return Err(Error::NotPermitted);
        }
        // Identity and base address registers stay as the firmware set them:
        // the kernel granted ports from them at boot.
        if offset < PCI_COMMAND || (PCI_BAR0..0x28).contains(&offset) {
            return Err(Error::NotPermitted);
        }
        caller
            .data()
            .platform
            .pci_write(address, offset, value.cast_unsigned());
        Ok(())
    });
    result.map_or_else(Error::code, |()| 0)
}
