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

/// Ports the kernel keeps for itself: the PICs, the PIT and its gate, the CMOS
/// clock, the debug-exit port, COM2 (the host control channel) and PCI
/// configuration. No grant may include them. (COM1 is shared: the kernel
/// writes its own log there and a console driver may own it.)
pub const RESERVED_PORTS: &[(PortRange, &str)] = &[
    (
        PortRange {
            first: 0x20,
            last: 0x21,
        },
        "the master PIC",
    ),
    (
        PortRange {
            first: 0xa0,
            last: 0xa1,
        },
        "the slave PIC",
    ),
    (
        PortRange {
            first: 0x40,
            last: 0x43,
        },
        "the PIT",
    ),
    (
        PortRange {
            first: 0x61,
            last: 0x61,
        },
        "the PIT gate",
    ),
    (
        PortRange {
            first: 0x70,
            last: 0x71,
        },
        "the CMOS clock",
    ),
    (
        PortRange {
            first: 0xf4,
            last: 0xf7,
        },
        "QEMU's debug exit",
    ),
    (
        PortRange {
            first: 0x2f8,
            last: 0x2ff,
        },
        "COM2, the host control channel",
    ),
    (
        PortRange {
            first: 0xcf8,
            last: 0xcff,
        },
        "PCI configuration",
    ),
];

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
