//! Driver capabilities: I/O ports, interrupt lines, DMA buffers and PCI
//! configuration, each checked against what `system.toml` granted.
//!
//! What is here: resolving a service's grants at boot (a PCI grant naming a
//! vendor becomes the matching functions' configuration space, I/O BARs and
//! interrupt line; bridges, chipset functions and functions with unassigned
//! BARs are never granted; the chipset's own port blocks are reserved), the
//! host functions that use them, and quiescing a driver's devices when it
//! ends. What is not here: touching hardware, which the [`Platform`] does;
//! interrupt delivery, which the scheduler does
//! (`Kernel::deliver_interrupts`).
//!
//! The model: the kernel only checks and moves bytes. A driver programs its
//! device itself, through port and configuration accesses the kernel checks
//! one by one (configuration writes: the command register only), and gives
//! the device physical addresses of DMA buffers the kernel allocated for it.
//! There is no IOMMU: a device with bus mastering on can write any physical
//! memory, so a PCI grant trusts the driver (and the device) with all of
//! memory; the kernel only makes sure a driver that ends leaves no DMA
//! running into memory it frees (bus mastering off before its buffers go).

use crate::Platform;
use crate::heap::Heap;
use alloc::vec::Vec;
use atoll_abi::Error;
use atoll_abi::driver::{
    COMMAND_BUS_MASTER, COMMAND_IO, COMMAND_MEMORY, Grants, MAX_IRQ, PCI_COMMAND, PciAddress,
    PortRange,
};

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

impl Resolved {
    /// Whether these grants let a service reach any device: ports,
    /// interrupts, PCI configuration or DMA.
    #[must_use]
    pub fn reaches_devices(&self) -> bool {
        !self.ports.is_empty()
            || !self.irqs.is_empty()
            || !self.pci.is_empty()
            || self.pci_all
            || !self.bus_masters.is_empty()
            || self.dma_budget > 0
    }
}

/// PCI configuration offsets the kernel uses (and the command register's,
/// the ABI's: [`PCI_COMMAND`]).
const PCI_ID: u8 = 0x00;
const PCI_CLASS: u8 = 0x08;
const PCI_HEADER_TYPE: u8 = 0x0c;
const PCI_BAR0: u8 = 0x10;
const PCI_INTERRUPT_LINE: u8 = 0x3c;
/// Base classes never granted, whatever a grant names: bridges (host, ISA,
/// PCI-to-PCI, CardBus, "other", which on QEMU's i440fx is the PIIX4 power
/// management function) and base system peripherals (PIC, DMA controller,
/// timer, RTC, IOMMU). They hold the machine, not a device.
const CHIPSET_CLASSES: [u8; 2] = [0x06, 0x08];

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
/// port goes to one service only (the first in the description). Also the
/// ports this machine's chipset decodes where the firmware put them (the
/// ACPI power-management and SMBus blocks), which no grant may reach.
#[derive(Debug, Default)]
pub struct Claims {
    functions: Vec<PciAddress>,
    irqs: Vec<u8>,
    ports: Vec<PortRange>,
    machine: Vec<(PortRange, &'static str)>,
}

/// Chipset functions whose configuration names a block of ports: (vendor,
/// device, register, base mask, length, enable register and bit, what).
/// The PIIX4 power-management function (QEMU's i440fx, 00:01.3): PMBA at
/// 0x40 (bits 15:6, 64 ports), enabled by PMREGMISC bit 0; SMBBA at 0x90
/// (bits 15:4, 16 ports), enabled by SMBHSTCFG (0xd2) bit 0. The ICH9 LPC
/// bridge (QEMU's q35, 00:1f.0): PMBASE at 0x40 (bits 15:7, 128 ports),
/// enabled by ACPI_CNTL (0x44) bit 7.
const CHIPSET_PORT_BLOCKS: [(u16, u16, u8, u32, u16, &str); 3] = [
    (
        0x8086,
        0x7113,
        0x40,
        0xffc0,
        64,
        "the ACPI power-management block",
    ),
    (0x8086, 0x7113, 0x90, 0xfff0, 16, "the SMBus controller"),
    (
        0x8086,
        0x2918,
        0x40,
        0xff80,
        128,
        "the ACPI power-management block",
    ),
];

impl Claims {
    /// Claims holding nothing yet, with the port blocks of the chipset
    /// functions `present` reserved. Returns a log line for each such block.
    /// (A block is reserved even when its enable bit is off: a driver could
    /// not turn it on, but the firmware or a later kernel might.)
    pub fn new(
        present: &[(PciAddress, u16, u16)],
        platform: &dyn Platform,
    ) -> (Claims, Vec<alloc::string::String>) {
        let mut claims = Claims::default();
        let mut lines = Vec::new();
        for &(address, vendor, device) in present {
            for &(block_vendor, block_device, register, mask, len, what) in &CHIPSET_PORT_BLOCKS {
                if (vendor, device) != (block_vendor, block_device) {
                    continue;
                }
                let Some(value) = platform.pci_read(address, register) else {
                    continue;
                };
                let first = (value & mask) as u16;
                if first == 0 {
                    continue;
                }
                let Some(last) = first.checked_add(len - 1) else {
                    continue;
                };
                let range = PortRange { first, last };
                lines.push(alloc::format!(
                    "reserved {what} at ports {first:#x}-{last:#x} (PCI function {address:#06x}, {vendor:04x}:{device:04x})"
                ));
                claims.machine.push((range, what));
            }
        }
        (claims, lines)
    }

    /// What the kernel keeps of `range`, if anything: a fixed reserved range
    /// or a block of this machine's chipset.
    fn reserved(&self, range: &PortRange) -> Option<&'static str> {
        atoll_abi::driver::reserved(range).or_else(|| {
            self.machine
                .iter()
                .find(|(reserved, _)| reserved.overlaps(range))
                .map(|(_, what)| *what)
        })
    }
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
    // image-builder refuses the fixed ranges already; the kernel does not
    // rely on it.
    let add_ports =
        |range: PortRange, resolved: &mut Resolved, skipped: &mut Vec<_>, claims: &mut Claims| {
            if let Some(owner) = claims.reserved(&range) {
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
        add_ports(range, &mut resolved, &mut skipped, claims);
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
            let io_ranges = match grantable(address, platform, claims) {
                Ok(ranges) => ranges,
                Err(reason) => {
                    skipped.push(format!(
                        "PCI function {address:#06x} ({vendor:04x}:{device:04x}) {reason}"
                    ));
                    continue;
                }
            };
            claims.functions.push(address);
            resolved.pci.push(address);
            resolved.bus_masters.push(address);
            for range in io_ranges {
                add_ports(range, &mut resolved, &mut skipped, claims);
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

/// Whether the function at `address` may be granted at all, and if so the
/// port ranges of its I/O BARs. Only an ordinary device may: header type 0
/// (a bridge's header holds bus numbers, forwarding windows and a secondary
/// bus reset), not a chipset class, every BAR it implements assigned by the
/// firmware (an unassigned BAR would decode at address 0 once a driver turns
/// decoding on) and no I/O BAR on ports the kernel keeps.
fn grantable(
    address: PciAddress,
    platform: &dyn Platform,
    claims: &Claims,
) -> Result<Vec<PortRange>, alloc::string::String> {
    use alloc::format;
    let header = platform
        .pci_read(address, PCI_HEADER_TYPE)
        .map_or(0xff, |value| (value >> 16) as u8 & 0x7f);
    if header != 0 {
        return Err(format!("is a bridge (header type {header}): never granted"));
    }
    let class = platform
        .pci_read(address, PCI_CLASS)
        .map_or(0xff, |value| (value >> 24) as u8);
    if CHIPSET_CLASSES.contains(&class) {
        return Err(format!(
            "is a chipset function (class {class:#04x}): never granted"
        ));
    }
    let mut ranges = Vec::new();
    for bar in bars(address, platform)? {
        if let Bar::Io(range) = bar {
            if let Some(owner) = claims.reserved(&range) {
                return Err(format!(
                    "decodes ports {:#x}-{:#x}, which overlap {owner}: not granted",
                    range.first, range.last
                ));
            }
            ranges.push(range);
        }
    }
    Ok(ranges)
}

/// A base address register the function implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bar {
    /// I/O space: the ports it decodes.
    Io(PortRange),
    /// Memory space (32- or 64-bit; not granted: services map no MMIO).
    Memory,
}

/// The BARs of a type-0 function, sized the standard way (write all ones,
/// read back the mask, restore) with I/O and memory decoding off meanwhile,
/// so that the all-ones address is never decoded. A 64-bit memory BAR takes
/// two registers: the second is its upper half, not a BAR of its own. Runs
/// at boot, before any driver touches the device. An implemented BAR the
/// firmware left at 0 is an error.
fn bars(address: PciAddress, platform: &dyn Platform) -> Result<Vec<Bar>, alloc::string::String> {
    use alloc::format;
    let command = platform.pci_read(address, PCI_COMMAND).unwrap_or(0) & 0xffff;
    platform.pci_write(
        address,
        PCI_COMMAND,
        command & !(COMMAND_IO | COMMAND_MEMORY),
    );
    let size = |offset: u8| -> (u32, u32) {
        let value = platform.pci_read(address, offset).unwrap_or(0);
        platform.pci_write(address, offset, u32::MAX);
        let mask = platform.pci_read(address, offset).unwrap_or(0);
        platform.pci_write(address, offset, value);
        (value, mask)
    };
    let mut found = Vec::new();
    let mut result = Ok(());
    let mut index = 0u8;
    while index < 6 {
        let offset = PCI_BAR0 + index * 4;
        let (value, mask) = size(offset);
        if value & 1 == 1 {
            let size_mask = mask & 0xffff_fffc;
            if size_mask != 0 {
                let size = (!size_mask).wrapping_add(1) & 0xffff;
                let base = value & 0xffff_fffc;
                let range = u16::try_from(base)
                    .ok()
                    .filter(|&base| base != 0 && size != 0)
                    .and_then(|first| {
                        let last = first.checked_add(u16::try_from(size - 1).ok()?)?;
                        Some(PortRange { first, last })
                    });
                match range {
                    Some(range) => found.push(Bar::Io(range)),
                    None => {
                        result = Err(format!(
                            "has I/O BAR {index} unassigned or out of range ({value:#x}): not granted"
                        ));
                        break;
                    }
                }
            }
            index += 1;
            continue;
        }
        let wide = (value >> 1) & 0b11 == 0b10;
        let (upper, upper_mask) = if wide {
            if index == 5 {
                result = Err(format!(
                    "has a 64-bit BAR {index} without an upper half: not granted"
                ));
                break;
            }
            size(offset + 4)
        } else {
            (0, 0)
        };
        if mask & 0xffff_fff0 != 0 || upper_mask != 0 {
            if value & 0xffff_fff0 == 0 && upper == 0 {
                result = Err(format!("has memory BAR {index} unassigned: not granted"));
                break;
            }
            found.push(Bar::Memory);
        }
        index += if wide { 2 } else { 1 };
    }
    platform.pci_write(address, PCI_COMMAND, command);
    result.map(|()| found)
}

/// Turns off bus mastering of the service's PCI functions: called when a
/// driver ends, before its DMA buffers can be freed.
pub fn quiesce(resolved: &Resolved, platform: &dyn Platform) {
    for &address in &resolved.bus_masters {
        if let Some(command) = platform.pci_read(address, PCI_COMMAND) {
            // The low half only: the status half is write-one-to-clear.
            platform.pci_write(address, PCI_COMMAND, command & 0xffff & !COMMAND_BUS_MASTER);
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
    /// While a new version restores its state in a hot swap: which handles
    /// were live before (`Some`). Freeing is refused meanwhile, so a swap that
    /// fails leaves the old version every buffer it had.
    restoring: Option<Vec<bool>>,
}

/// What a service holds of driver resources (in its host state).
#[derive(Default)]
pub(crate) struct DriverState {
    pub(crate) grants: alloc::sync::Arc<Resolved>,
    pub(crate) dma: DmaPool,
}

const PAGE: usize = 4096;

impl DmaPool {
    /// Bytes of live and retired buffers.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Allocates a zeroed, page-aligned buffer of at least `len` bytes within
    /// `budget`, reusing the smallest retired one large enough. Returns its handle.
    pub(crate) fn alloc(
        &mut self,
        len: usize,
        budget: usize,
        heap: &Heap,
        platform: &dyn Platform,
    ) -> Result<i32, Error> {
        if len == 0 {
            return Err(Error::InvalidArgument);
        }
        if budget == 0 {
            return Err(Error::NotPermitted);
        }
        let rounded = len.div_ceil(PAGE).saturating_mul(PAGE);
        // The smallest retired buffer large enough is reused (zeroed); it is
        // already counted against the budget. Smallest, so that a driver
        // allocating again what it (or the version it replaced) freed finds
        // each size where it was: first fit could give a small ring the big
        // packet buffers' block and leave the budget short for them.
        let best = self
            .retired
            .iter()
            .enumerate()
            .filter(|(_, buffer)| buffer.len >= rounded)
            .min_by_key(|(_, buffer)| buffer.len)
            .map(|(index, _)| index);
        let buffer = match best {
            Some(index) => {
                let mut buffer = self.retired.swap_remove(index);
                buffer.bytes_mut().fill(0);
                buffer
            }
            None => {
                if self.bytes.saturating_add(rounded) > budget {
                    return Err(Error::TooLarge);
                }
                heap.admit(rounded.saturating_add(PAGE))?;
                // Free heap may be fragmented: ask, do not assume.
                let mut storage: Vec<u8> = Vec::new();
                storage
                    .try_reserve_exact(rounded + PAGE)
                    .map_err(|_| Error::OutOfMemory)?;
                storage.resize(rounded + PAGE, 0);
                let base = storage.as_ptr() as usize;
                let start = base.next_multiple_of(PAGE) - base;
                let physical = platform
                    .physical_address(base + start)
                    .ok_or(Error::NotPermitted)?;
                self.bytes += rounded;
                DmaBuffer {
                    storage,
                    start,
                    len: rounded,
                    physical,
                }
            }
        };
        let slot = match self.live.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.live.push(None);
                self.live.len() - 1
            }
        };
        if let Some(entry) = self.live.get_mut(slot) {
            *entry = Some(buffer);
        }
        i32::try_from(slot + 1).map_err(|_| Error::TooLarge)
    }

    /// Retires buffer `handle` (the device may still write it).
    pub(crate) fn free(&mut self, handle: i32) -> Result<(), Error> {
        if self.restoring.is_some() {
            // The swap is not committed yet: the old version may get it back.
            return Err(Error::NotPermitted);
        }
        let buffer = self.slot(handle)?.take().ok_or(Error::BadHandle)?;
        self.retired.push(buffer);
        Ok(())
    }

    /// The physical address of buffer `handle`.
    pub(crate) fn physical(&mut self, handle: i32) -> Result<u64, Error> {
        Ok(self.buffer(handle)?.physical)
    }

    /// Bytes `offset..offset+len` of buffer `handle`, checked.
    pub(crate) fn window(
        &mut self,
        handle: i32,
        offset: i32,
        len: i32,
    ) -> Result<&mut [u8], Error> {
        let buffer = self.buffer(handle)?;
        let offset = usize::try_from(offset).map_err(|_| Error::OutOfBounds)?;
        let len = usize::try_from(len).map_err(|_| Error::OutOfBounds)?;
        let end = offset.checked_add(len).ok_or(Error::OutOfBounds)?;
        buffer
            .bytes_mut()
            .get_mut(offset..end)
            .ok_or(Error::OutOfBounds)
    }

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

    /// Starts a state restore: remembers which handles are live.
    pub(crate) fn begin_restore(&mut self) {
        self.restoring = Some(self.live.iter().map(Option::is_some).collect());
    }

    /// Ends a state restore. If it failed, the buffers allocated during it
    /// are retired (never freed: the failed version may have given the device
    /// their addresses), so the old version gets back exactly its handles.
    pub(crate) fn end_restore(&mut self, succeeded: bool) {
        let Some(before) = self.restoring.take() else {
            return;
        };
        if succeeded {
            return;
        }
        for (index, entry) in self.live.iter_mut().enumerate() {
            if !before.get(index).copied().unwrap_or(false)
                && let Some(buffer) = entry.take()
            {
                self.retired.push(buffer);
            }
        }
    }
}
