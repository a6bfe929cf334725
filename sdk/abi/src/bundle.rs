//! The boot bundle: what image-builder packs and the kernel unpacks.
//!
//! Layout: 8 magic bytes, a little-endian `u32` format version, then the
//! postcard encoding of [`Bundle`]. The bootloader hands the whole thing to the
//! kernel as its ramdisk. Service modules are borrowed from the ramdisk bytes when
//! decoding, so unpacking copies no module.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The first bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"ATOLLBDL";

/// The bundle format this crate writes and reads. Bumped on any change of [`Bundle`].
pub const FORMAT_VERSION: u32 = 10;

/// Where the bootloader maps the kernel in virtual memory. Fixed, so that GDB can
/// load the kernel's symbols at a known offset (`symbol-file kernel.elf -o KERNEL_BASE`).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

const HEADER_LEN: usize = MAGIC.len() + 4;

/// Default linear-memory cap of a service: 16 MiB.
pub const DEFAULT_MEMORY_LIMIT: u32 = 16 * 1024 * 1024;

/// Default hot-swap probation: a new version that faults within 2 s is rolled back.
pub const DEFAULT_SWAP_PROBATION_MS: u64 = 2_000;

/// Default CPU slice of a service, in fuel units (about one per Wasm operator).
pub const DEFAULT_FUEL_SLICE: u64 = 100_000;

/// Everything the kernel boots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle<'a> {
    pub kernel: KernelSettings,
    #[serde(borrow)]
    pub services: Vec<ServiceImage<'a>>,
    /// The WASI shim (`wasm-services/wasi-shim`): present when a service
    /// imports WASI preview1. The kernel links each WASI program to its own
    /// instance of it (docs/design.md, "WASI in user space").
    #[serde(borrow)]
    pub wasi_shim: Option<&'a [u8]>,
}

/// System-wide settings from the `[system]` and `[kernel]` tables of `system.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSettings {
    /// The system's name, printed at boot.
    pub system_name: String,
    /// Power off (exit QEMU with success) once every service has stopped,
    /// instead of idling. Test systems set this.
    pub exit_when_idle: bool,
    /// A CPU fault the kernel provokes in itself after boot, to test its
    /// exception reporting. Never set in a real system.
    pub inject_fault: Option<InjectedFault>,
}

/// Faults the kernel can provoke in itself for testing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InjectedFault {
    /// `int3`: vector 3.
    Breakpoint,
    /// `div` by zero: vector 0.
    DivideError,
    /// `ud2`: vector 6.
    InvalidOpcode,
    /// A read from an unmapped address: vector 14.
    PageFault,
    /// Unbounded recursion into the guard page below the kernel stack: a page fault
    /// that cannot be delivered on the same stack, so a double fault (vector 8)
    /// on its own stack.
    StackOverflow,
    /// A Rust panic in the kernel.
    Panic,
    /// An SSE division by zero with that exception unmasked in MXCSR: vector 19
    /// (#XM; it would be #UD if CR4.OSXMMEXCPT were not set).
    SimdFloatingPoint,
}

impl InjectedFault {
    /// Every fault, with the name used in `system.toml`.
    pub const ALL: &'static [(InjectedFault, &'static str)] = &[
        (InjectedFault::Breakpoint, "breakpoint"),
        (InjectedFault::DivideError, "divide-error"),
        (InjectedFault::InvalidOpcode, "invalid-opcode"),
        (InjectedFault::PageFault, "page-fault"),
        (InjectedFault::StackOverflow, "stack-overflow"),
        (InjectedFault::Panic, "panic"),
        (InjectedFault::SimdFloatingPoint, "simd-floating-point"),
    ];

    /// The fault with this `system.toml` name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<InjectedFault> {
        InjectedFault::ALL
            .iter()
            .find(|(_, fault_name)| *fault_name == name)
            .map(|(fault, _)| *fault)
    }
}

/// One service: its name, its validated module, its limits and its capabilities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceImage<'a> {
    pub name: &'a str,
    pub module: &'a [u8],
    pub limits: ServiceLimits,
    /// Endpoints this service provides (and alone may receive from).
    #[serde(borrow)]
    pub provides: Vec<&'a str>,
    /// Endpoints of other services this service may send to and call.
    #[serde(borrow)]
    pub uses: Vec<&'a str>,
    /// This service is the system's supervisor (at most one is).
    pub supervisor: bool,
    /// How the supervisor should treat this service when it ends.
    pub restart: crate::supervision::RestartPolicy,
    /// Command-line arguments (the ABI's `startup` record; a WASI program's
    /// `args_get`); the first is the service's name.
    #[serde(borrow)]
    pub args: Vec<&'a str>,
    /// Environment variables (`startup`; a WASI program's `environ_get`), as
    /// `KEY=value`.
    #[serde(borrow)]
    pub env: Vec<&'a str>,
    /// Driver capabilities: ports, interrupts, PCI functions, DMA budget.
    pub grants: crate::driver::Grants,
    /// Directories a WASI program finds preopened (descriptors 3, 4, ... in
    /// this order), each served by a file service the service `uses`.
    #[serde(borrow)]
    pub preopens: Vec<Preopen<'a>>,
    /// Listening TCP sockets a WASI program finds open, numbered after the
    /// preopens (descriptor 3 when there are none).
    #[serde(borrow)]
    pub listen: Vec<Listen<'a>>,
}

/// One listening socket of a WASI program: TCP port `port` of the TCP/IP
/// service on endpoint `endpoint` (one of the service's `uses`), which the
/// program's WASI shim asks to listen at its first use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen<'a> {
    pub endpoint: &'a str,
    pub port: u16,
    /// The descriptor starts non-blocking (`FDFLAGS_NONBLOCK`), and so do the
    /// connections accepted on it: what Go's runtime expects of an inherited
    /// listener; Rust std expects a blocking one.
    pub nonblocking: bool,
}

/// One preopened directory of a WASI program: `guest` (what the program sees,
/// e.g. `/` or `/docs`) is directory `directory` of the file service on
/// endpoint `endpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen<'a> {
    /// The name the program sees (`fd_prestat_dir_name`): absolute, no `.`
    /// or `..` components, no trailing `/` except for `/` itself.
    pub guest: &'a str,
    /// The file service's endpoint; one of the service's `uses`.
    pub endpoint: &'a str,
    /// The directory inside the file service, from its root (`/` for all of it).
    pub directory: &'a str,
    /// Reads only: creating, writing, renaming and removing answer `EACCES`.
    pub read_only: bool,
}

/// Per-service resource limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLimits {
    /// Maximum size of the service's linear memory, in bytes (of its two
    /// memories together, for a WASI program and its shim).
    pub memory_bytes: u32,
    /// Fuel the service may burn before it is preempted.
    pub fuel_slice: u64,
    /// Messages each endpoint the service provides may queue.
    pub queue_depth: u32,
    /// After a hot swap, how long a fault of the new version rolls the old one
    /// back, in milliseconds.
    pub swap_probation_ms: u64,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            memory_bytes: DEFAULT_MEMORY_LIMIT,
            fuel_slice: DEFAULT_FUEL_SLICE,
            queue_depth: crate::DEFAULT_QUEUE_DEPTH,
            swap_probation_ms: DEFAULT_SWAP_PROBATION_MS,
        }
    }
}

/// Why a byte string is not a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header.
    Truncated,
    /// The first bytes are not [`MAGIC`].
    BadMagic,
    /// Written by another format version.
    UnsupportedVersion(u32),
    /// The postcard body does not decode.
    Malformed,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Truncated => write!(formatter, "bundle shorter than its header"),
            DecodeError::BadMagic => write!(formatter, "not an Atoll bundle (bad magic)"),
            DecodeError::UnsupportedVersion(version) => write!(
                formatter,
                "bundle format version {version}, this kernel reads {FORMAT_VERSION}"
            ),
            DecodeError::Malformed => write!(formatter, "bundle body does not decode"),
        }
    }
}

/// Encodes a bundle with its header.
pub fn encode(bundle: &Bundle<'_>) -> Result<Vec<u8>, postcard::Error> {
    let mut bytes = Vec::from(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    postcard::to_extend(bundle, bytes)
}

/// Decodes a bundle, borrowing module bytes from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Bundle<'_>, DecodeError> {
    let (header, body) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(DecodeError::Truncated)?;
    let (magic, version) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version_bytes: [u8; 4] = version.try_into().map_err(|_| DecodeError::Truncated)?;
    let version = u32::from_le_bytes(version_bytes);
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    postcard::from_bytes(body).map_err(|_| DecodeError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn sample() -> Bundle<'static> {
        Bundle {
            kernel: KernelSettings {
                system_name: "test".to_string(),
                exit_when_idle: true,
                inject_fault: Some(InjectedFault::PageFault),
            },
            services: vec![ServiceImage {
                name: "hello",
                module: b"\0asm\x01\0\0\0",
                limits: ServiceLimits::default(),
                provides: vec!["echo"],
                uses: vec!["log", "kv"],
                supervisor: false,
                restart: crate::supervision::RestartPolicy::default(),
                args: vec!["hello", "--verbose"],
                env: vec!["LANG=C"],
                grants: crate::driver::Grants {
                    ports: vec![crate::driver::PortRange {
                        first: 0x3f8,
                        last: 0x3ff,
                    }],
                    irqs: vec![4],
                    pci: vec![crate::driver::PciGrant {
                        vendor: Some(0x1af4),
                        device: None,
                    }],
                    dma_kib: 64,
                },
                preopens: vec![Preopen {
                    guest: "/docs",
                    endpoint: "fs",
                    directory: "/DOCS",
                    read_only: true,
                }],
                listen: vec![Listen {
                    endpoint: "net",
                    port: 8081,
                    nonblocking: true,
                }],
            }],
            wasi_shim: Some(b"\0asm\x01\0\0\0"),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn rejects_bad_input() {
        let mut bytes = encode(&sample()).unwrap();
        assert_eq!(decode(&bytes[..5]), Err(DecodeError::Truncated));
        assert_eq!(
            decode(&bytes[..bytes.len() - 3]),
            Err(DecodeError::Malformed)
        );
        bytes[8] = 9;
        assert_eq!(decode(&bytes), Err(DecodeError::UnsupportedVersion(9)));
        bytes[0] = b'X';
        assert_eq!(decode(&bytes), Err(DecodeError::BadMagic));
    }

    #[test]
    fn fault_names_round_trip() {
        for (fault, name) in InjectedFault::ALL {
            assert_eq!(InjectedFault::from_name(name), Some(*fault));
        }
        assert_eq!(InjectedFault::from_name("nope"), None);
    }
}
