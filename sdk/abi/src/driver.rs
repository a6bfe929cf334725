//! Driver capabilities: what `system.toml` may grant a service beyond IPC.
//!
//! A driver is an ordinary service with grants: I/O port ranges (`io-ports`),
//! interrupt lines (`irqs`), PCI functions by vendor and device id (`pci`), and
//! a budget of DMA memory (`dma-kib`). A PCI grant also grants the function's
//! I/O BARs as port ranges and its interrupt line. Everything else a driver
//! touches is refused with an error code.
//!
//! Interrupts arrive as **notifications**: a message from
//! [`crate::supervision::KERNEL_SENDER`] on the driver's first provided
//! endpoint whose body is one byte, the IRQ number. The line is masked when the
//! interrupt fires and stays masked (so at most one notification per line is
//! outstanding) until the driver calls `irq_ack`.

use serde::{Deserialize, Serialize};

/// The PCI command register: the one configuration register a driver may
/// write (`pci_write`), and in it only [`COMMAND_DRIVER_BITS`].
pub const PCI_COMMAND: u8 = 0x04;
/// Command register bits: I/O and memory decoding, bus mastering (DMA), and
/// the INTx disable bit.
pub const COMMAND_IO: u32 = 1 << 0;
pub const COMMAND_MEMORY: u32 = 1 << 1;
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u32 = 1 << 10;
/// The command bits a driver may change; the rest of the command register
/// (special cycles, memory write and invalidate, parity and SERR# reporting,
/// fast back-to-back) stays as the firmware set it.
pub const COMMAND_DRIVER_BITS: u32 =
    COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;

/// A PCI function, as the kernel grants it: `bus << 8 | device << 3 | function`.
pub type PciAddress = u16;

/// A PCI grant: functions with this vendor id (`None`: any) and device id
/// (`None`: any). A grant naming a vendor also grants the matching functions'
/// I/O BARs and interrupt lines; the wildcard `*` grants configuration access
/// to every function and nothing else (for an enumeration service).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciGrant {
    pub vendor: Option<u16>,
    pub device: Option<u16>,
}

impl PciGrant {
    /// Whether a function with these ids is granted.
    #[must_use]
    pub fn matches(&self, vendor: u16, device: u16) -> bool {
        self.vendor.is_none_or(|granted| granted == vendor)
            && self.device.is_none_or(|granted| granted == device)
    }
}

/// An inclusive range of I/O ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Whether `width` bytes from `port` lie inside the range.
    #[must_use]
    pub fn contains(&self, port: u16, width: u16) -> bool {
        let Some(end) = port.checked_add(width.saturating_sub(1)) else {
            return false;
        };
        port >= self.first && end <= self.last
    }

    /// Whether the two ranges share a port.
    #[must_use]
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Ports no grant may include: the kernel's own devices (the PICs and their
/// edge/level control, the PIT and its gate, the CMOS clock, the debug-exit
/// port, COM2, the host control channel, and PCI configuration with the
/// reset control register at 0xcf9), and chipset functions whose misuse
/// reaches past any one device: the ISA DMA controllers and page registers
/// (DMA into any of the low 16 MiB), the keyboard controller and port 0x92
/// (CPU reset, A20 gate), QEMU's firmware configuration interface (its DMA
/// interface writes any physical memory) and QEMU's ACPI registers (power
/// off, device eject). The ACPI power-management block and the SMBus
/// controller sit where the firmware put them: the ranges below are where
/// SeaBIOS (0x600, 0x700) and OVMF (0xb000, 0xb100) put them on QEMU's
/// i440fx machine (measured with QEMU 7.2); the kernel also reads the
/// chipset's base registers at boot and refuses what they name
/// (`atoll_core::driver`). COM1 is shared: the kernel writes its own log
/// there and a console driver may own it.
pub const RESERVED_PORTS: &[(PortRange, &str)] = &[
    (range(0x00, 0x1f), "the ISA DMA controller (channels 0-3)"),
    (range(0x20, 0x21), "the master PIC"),
    (range(0x40, 0x43), "the PIT"),
    (range(0x60, 0x60), "the keyboard controller (data)"),
    (range(0x61, 0x61), "the PIT gate"),
    (
        range(0x64, 0x64),
        "the keyboard controller (command: CPU reset)",
    ),
    (range(0x70, 0x71), "the CMOS clock"),
    (range(0x80, 0x8f), "the ISA DMA page registers"),
    (
        range(0x92, 0x92),
        "system control port A (fast A20 and CPU reset)",
    ),
    (range(0xa0, 0xa1), "the slave PIC"),
    (range(0xc0, 0xdf), "the ISA DMA controller (channels 4-7)"),
    (range(0xf4, 0xf7), "QEMU's debug exit"),
    (range(0x2f8, 0x2ff), "COM2, the host control channel"),
    (range(0x4d0, 0x4d1), "the PICs' edge/level control"),
    (
        range(0x510, 0x51b),
        "QEMU's firmware configuration (fw_cfg, with DMA)",
    ),
    (
        range(0x600, 0x67f),
        "the ACPI power-management block (SeaBIOS)",
    ),
    (range(0x700, 0x70f), "the SMBus controller (SeaBIOS)"),
    (range(0xa00, 0xa17), "QEMU's ACPI memory hotplug registers"),
    (
        range(0xae00, 0xafff),
        "QEMU's ACPI hotplug and GPE registers",
    ),
    (
        range(0xb000, 0xb03f),
        "the ACPI power-management block (OVMF)",
    ),
    (range(0xb100, 0xb10f), "the SMBus controller (OVMF)"),
    (range(0xcf8, 0xcff), "PCI configuration and reset control"),
];

/// The ports `first..=last`.
const fn range(first: u16, last: u16) -> PortRange {
    PortRange { first, last }
}

/// Interrupt lines the kernel keeps: 0 (its timer), 2 (the PIC cascade), and
/// 7 and 15 (where the PICs signal spurious interrupts).
pub const RESERVED_IRQS: &[u8] = &[0, 2, 7, 15];

/// The highest legacy interrupt line.
pub const MAX_IRQ: u8 = 15;

/// The most DMA memory one service may be granted, in KiB.
pub const MAX_DMA_KIB: u32 = 64 * 1024;

/// The name of the reserved range `range` overlaps, if any.
#[must_use]
pub fn reserved(range: &PortRange) -> Option<&'static str> {
    RESERVED_PORTS
        .iter()
        .find(|(reserved, _)| reserved.overlaps(range))
        .map(|(_, name)| *name)
}

/// All of a service's driver grants, as the bundle carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub ports: alloc::vec::Vec<PortRange>,
    pub irqs: alloc::vec::Vec<u8>,
    pub pci: alloc::vec::Vec<PciGrant>,
    pub dma_kib: u32,
}

impl Grants {
    /// Whether the service was granted anything at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.irqs.is_empty() && self.pci.is_empty() && self.dma_kib == 0
    }
}
