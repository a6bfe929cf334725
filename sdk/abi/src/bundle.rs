//! The boot bundle: what image-builder packs and the kernel unpacks.
//!
//! Layout: 8 magic bytes, a little-endian `u32` format version, then the
//! postcard encoding of [`Wired`]: the [`Bundle`] as described, with every
//! endpoint name resolved when it was encoded, so that the kernel reads
//! indices and resolves nothing. The bootloader hands the whole thing to the
//! kernel as its ramdisk. Service modules are borrowed from the ramdisk bytes when
//! decoding, so unpacking copies no module.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The first bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"ATOLLBDL";

/// The bundle format this crate writes and reads. Bumped on any change of
/// [`Wired`] (and what it contains).
pub const FORMAT_VERSION: u32 = 11;

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

/// A bundle as the kernel reads it: the [`Bundle`], the system's endpoints,
/// and each service's [`Wiring`] (in service order), computed by [`encode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wired<'a> {
    #[serde(borrow)]
    pub bundle: Bundle<'a>,
    /// Every endpoint of the system, by name: those provided, in the order
    /// of their providers, then those used and provided by nobody (their
    /// users get `PeerGone`). A [`Handle`] indexes this list.
    #[serde(borrow)]
    pub endpoints: Vec<&'a str>,
    pub wiring: Vec<Wiring>,
}

impl Wired<'_> {
    /// Whether the wiring fits the services, as [`encode`] writes it: one
    /// [`Wiring`] per service, every handle within the endpoint table, each
    /// endpoint provided by at most one service, and one handle, in range,
    /// per preopen and listening socket. The kernel then hands out exactly
    /// the handles the description gave.
    #[must_use]
    pub fn consistent(&self) -> bool {
        let mut provided = alloc::vec![None; self.endpoints.len()];
        self.wiring.len() == self.bundle.services.len()
            && self
                .bundle
                .services
                .iter()
                .zip(&self.wiring)
                .enumerate()
                .all(|(index, (image, wiring))| {
                    let handle_ok = |&handle: &i32| {
                        usize::try_from(handle)
                            .is_ok_and(|handle| (1..=wiring.handles.len()).contains(&handle))
                    };
                    wiring.preopens.len() == image.preopens.len()
                        && wiring.listen.len() == image.listen.len()
                        && wiring.preopens.iter().chain(&wiring.listen).all(handle_ok)
                        && wiring.handles.iter().all(|handle| {
                            let Some(slot) = usize::try_from(handle.endpoint)
                                .ok()
                                .and_then(|endpoint| provided.get_mut(endpoint))
                            else {
                                return false;
                            };
                            !handle.provider || *slot.get_or_insert(index) == index
                        })
                })
    }
}

/// One service's endpoint names, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wiring {
    /// The service's handles, in the order of the ABI's handle numbers
    /// (handle 1 first): the endpoints it provides, then those it uses. An
    /// endpoint provided twice stays its first provider's (image-builder
    /// refuses such a system): the second gets no handle for it.
    pub handles: Vec<Handle>,
    /// The handle of each of its preopens' endpoints, in order.
    pub preopens: Vec<i32>,
    /// The handle of each of its listening sockets' endpoints, in order.
    pub listen: Vec<i32>,
}

/// A service's right to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    /// Index into [`Wired::endpoints`].
    pub endpoint: u32,
    /// The service provides the endpoint (and alone may receive from it).
    pub provider: bool,
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
    /// The body decodes but its wiring does not fit its services (see
    /// [`Wired::consistent`]): no [`encode`] writes such a bundle.
    Inconsistent,
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
            DecodeError::Inconsistent => {
                write!(
                    formatter,
                    "bundle's endpoint wiring does not fit its services"
                )
            }
        }
    }
}

/// Why a bundle cannot be encoded.
#[derive(Debug)]
pub enum EncodeError {
    /// A preopen or listening socket of `service` names an endpoint the
    /// service neither provides nor uses.
    NotUsed {
        service: String,
        endpoint: String,
    },
    Postcard(postcard::Error),
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::NotUsed { service, endpoint } => write!(
                formatter,
                "service {service}: a preopen or listening socket is on endpoint `{endpoint}`, which it neither provides nor uses"
            ),
            EncodeError::Postcard(error) => write!(formatter, "{error}"),
        }
    }
}

/// Resolves `bundle`'s endpoint names (see [`Wired`]).
fn wire<'a>(bundle: &Bundle<'a>) -> Result<(Vec<&'a str>, Vec<Wiring>), EncodeError> {
    let mut endpoints: Vec<&'a str> = Vec::new();
    let mut providers = Vec::new();
    for (index, image) in bundle.services.iter().enumerate() {
        for &name in &image.provides {
            if !endpoints.contains(&name) {
                endpoints.push(name);
                providers.push(index);
            }
        }
    }
    let mut wiring = Vec::with_capacity(bundle.services.len());
    for (index, image) in bundle.services.iter().enumerate() {
        let mut names = Vec::new();
        let mut handles = Vec::new();
        let provided = image.provides.iter().map(|name| (name, true));
        for (&name, provider) in provided.chain(image.uses.iter().map(|name| (name, false))) {
            let endpoint = match endpoints.iter().position(|&known| known == name) {
                Some(at) if provider && providers.get(at) != Some(&index) => continue,
                Some(at) => at,
                None => {
                    endpoints.push(name);
                    endpoints.len() - 1
                }
            };
            names.push(name);
            handles.push(Handle {
                endpoint: u32::try_from(endpoint).unwrap_or(u32::MAX),
                provider,
            });
        }
        let handle = |endpoint: &str| {
            let at = names.iter().position(|&name| name == endpoint);
            at.and_then(|at| i32::try_from(at + 1).ok())
                .ok_or_else(|| EncodeError::NotUsed {
                    service: String::from(image.name),
                    endpoint: String::from(endpoint),
                })
        };
        wiring.push(Wiring {
            preopens: image
                .preopens
                .iter()
                .map(|p| handle(p.endpoint))
                .collect::<Result<_, _>>()?,
            listen: image
                .listen
                .iter()
                .map(|l| handle(l.endpoint))
                .collect::<Result<_, _>>()?,
            handles,
        });
    }
    Ok((endpoints, wiring))
}

/// Encodes a bundle with its header, its endpoint names resolved.
pub fn encode(bundle: &Bundle<'_>) -> Result<Vec<u8>, EncodeError> {
    /// [`Wired`], borrowing the bundle.
    #[derive(Serialize)]
    struct Encoded<'b, 'a> {
        bundle: &'b Bundle<'a>,
        endpoints: &'b [&'a str],
        wiring: &'b [Wiring],
    }
    let (endpoints, wiring) = wire(bundle)?;
    let mut bytes = Vec::from(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let encoded = Encoded {
        bundle,
        endpoints: &endpoints,
        wiring: &wiring,
    };
    postcard::to_extend(&encoded, bytes).map_err(EncodeError::Postcard)
}

/// Decodes a bundle, borrowing module bytes from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Wired<'_>, DecodeError> {
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
    let wired: Wired<'_> = postcard::from_bytes(body).map_err(|_| DecodeError::Malformed)?;
    if !wired.consistent() {
        return Err(DecodeError::Inconsistent);
    }
    Ok(wired)
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
                uses: vec!["log", "kv", "fs", "net"],
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
        assert_eq!(decode(&bytes).unwrap().bundle, sample());
    }

    #[test]
    fn endpoint_names_are_resolved_into_handles() {
        let mut bundle = sample();
        let mut other = bundle.services[0].clone();
        other.name = "other";
        // `echo` again (stays hello's), then `fs`, which hello uses.
        other.provides = vec!["echo", "fs"];
        other.uses = vec!["echo"];
        other.preopens.clear();
        other.listen.clear();
        bundle.services.push(other);
        let bytes = encode(&bundle).unwrap();
        let wired = decode(&bytes).unwrap();
        assert_eq!(wired.endpoints, ["echo", "fs", "log", "kv", "net"]);
        let handle = |endpoint, provider| Handle { endpoint, provider };
        let hello = &wired.wiring[0];
        assert_eq!(
            hello.handles,
            [
                handle(0, true),
                handle(2, false),
                handle(3, false),
                handle(1, false),
                handle(4, false)
            ]
        );
        assert_eq!(
            (hello.preopens.as_slice(), hello.listen.as_slice()),
            (&[4][..], &[5][..])
        );
        assert_eq!(wired.wiring[1].handles, [handle(1, true), handle(0, false)]);
        // A preopen on an endpoint the service does not use is refused.
        bundle.services[0].uses.retain(|&name| name != "fs");
        assert!(matches!(
            encode(&bundle),
            Err(EncodeError::NotUsed { endpoint, .. }) if endpoint == "fs"
        ));
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
    fn wiring_that_does_not_fit_its_services_is_refused() {
        let bytes = encode(&sample()).unwrap();
        let good = decode(&bytes).unwrap();
        let raw = |wired: &Wired<'_>| {
            let mut bytes = Vec::from(MAGIC);
            bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            postcard::to_extend(wired, bytes).unwrap()
        };
        assert_eq!(decode(&raw(&good)).as_ref(), Ok(&good));
        let broken: [&dyn Fn(&mut Wired<'_>); 6] = [
            &|wired| wired.wiring.clear(),
            &|wired| wired.wiring[0].handles[1].endpoint = 99,
            &|wired| wired.wiring[0].preopens[0] = 0,
            &|wired| wired.wiring[0].listen[0] = 6,
            &|wired| wired.wiring[0].listen.clear(),
            // A second service providing hello's endpoint.
            &|wired| {
                wired.bundle.services.push(wired.bundle.services[0].clone());
                let mut twin = wired.wiring[0].clone();
                (twin.preopens, twin.listen) = (vec![1], vec![1]);
                wired.wiring.push(twin);
            },
        ];
        for (index, breaking) in broken.iter().enumerate() {
            let mut wired = good.clone();
            breaking(&mut wired);
            assert_eq!(
                decode(&raw(&wired)),
                Err(DecodeError::Inconsistent),
                "case {index}"
            );
        }
    }

    #[test]
    fn fault_names_round_trip() {
        for (fault, name) in InjectedFault::ALL {
            assert_eq!(InjectedFault::from_name(name), Some(*fault));
        }
        assert_eq!(InjectedFault::from_name("nope"), None);
    }
}
