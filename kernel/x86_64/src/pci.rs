//! Port I/O for drivers and PCI configuration mechanism #1 (ports 0xcf8/0xcfc).
//!
//! The kernel core has already checked every access against the asking
//! service's grants (`atoll_core::driver`); these functions only perform it.
//! What they cannot check is what a device does with an access: port and
//! configuration accesses are memory safe only as far as the devices behind
//! them are, which is the trust a driver grant gives (docs/abi.md#drivers).

use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Reads `width` (1, 2 or 4) bytes from `port`.
pub fn port_in(port: u16, width: u8) -> u32 {
    // SAFETY: a port read touches no memory Rust knows about, but it may
    // have device side effects (consume a UART byte, acknowledge an
    // interrupt, start a transfer). What this relies on: the core passes
    // only ports of the asking driver's grants, which exclude the kernel's
    // own devices and the chipset functions that can reach memory or reset
    // the CPU (atoll_abi::driver::RESERVED_PORTS, checked by image-builder
    // and again by the core, plus the ACPI blocks the core reserves from
    // the PCI configuration at boot); and that the system description
    // granted the remaining ports to a driver trusted with the device
    // behind them. Nothing here can verify either.
    unsafe {
        match width {
            1 => u32::from(Port::<u8>::new(port).read()),
            2 => u32::from(Port::<u16>::new(port).read()),
            _ => Port::<u32>::new(port).read(),
        }
    }
}

/// Writes the low `width` bytes of `value` to `port`.
pub fn port_out(port: u16, width: u8, value: u32) {
    // SAFETY: as for `port_in`: a port of the driver's grants, trusted by
    // the system description. A write can do more than a read (start DMA
    // on a device the driver has turned bus mastering on for); that too is
    // the trust the grant gives, not something checked here.
    unsafe {
        match width {
            1 => Port::<u8>::new(port).write(value as u8),
            2 => Port::<u16>::new(port).write(value as u16),
            _ => Port::<u32>::new(port).write(value),
        }
    }
}

fn select(address: u16, offset: u8) {
    let word = 0x8000_0000 | (u32::from(address) << 8) | u32::from(offset & 0xfc);
    // SAFETY: selecting a configuration register has no effect by itself;
    // ports 0xcf8-0xcff are reserved from every grant, so no driver can
    // change the selection between this write and the data access, which
    // the callers make with interrupts off on the kernel's only CPU.
    unsafe { Port::<u32>::new(CONFIG_ADDRESS).write(word) };
}

/// Reads a configuration register. Interrupts are off between selecting and
/// reading so that no other access can intervene (there is one CPU).
pub fn config_read(address: u16, offset: u8) -> u32 {
    x86_64::instructions::interrupts::without_interrupts(|| {
        select(address, offset);
        // SAFETY: reading the selected configuration register has no memory
        // effect. Standard header and capability registers have no read side
        // effects; a device-specific register (0x40 on) might, which is part
        // of the trust a PCI grant (or the enumeration grant `*`) gives.
        unsafe { Port::<u32>::new(CONFIG_DATA).read() }
    })
}

/// Writes a configuration register.
pub fn config_write(address: u16, offset: u8, value: u32) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        select(address, offset);
        // SAFETY: relies on the callers. The core writes only (a) BARs of
        // functions it is about to grant, at boot, with decoding off and
        // each value restored, (b) the command register, to turn bus
        // mastering off; and lets a driver write only the command register
        // of a function its grant names, and there only the I/O, memory,
        // bus-master and INTx-disable bits. Such a write is not harmless:
        // bus mastering lets the device write any physical memory (there is
        // no IOMMU). That rests on the system description trusting the
        // driver and its device, and on the firmware having assigned the
        // BARs where they overlap nothing (the core refuses unassigned ones).
        unsafe { Port::<u32>::new(CONFIG_DATA).write(value) };
    });
}
