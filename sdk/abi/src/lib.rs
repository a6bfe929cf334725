//! Atoll's kernel ABI, in one place for both sides.
//!
//! What is here: the import module and the host functions a service may import
//! (names and Wasm signatures), the fixed-number error codes those functions return,
//! the ABI limits, the entry-point convention, and the boot bundle that
//! image-builder hands to the kernel. The kernel, the Rust SDK and image-builder all
//! use these definitions; `docs/abi.md` is the reference page written from them.
//!
//! What is not here: any behaviour. This crate only describes: its code
//! encodes, decodes and formats what both sides exchange (records, dump
//! lines, log text, exit statuses), so that each side writes it the same way.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bundle;
pub mod console;
pub mod control;
pub mod driver;
pub mod fs;
pub mod handoff;
pub mod info;
pub mod net;
pub mod startup;
pub mod supervision;
pub mod trace;
pub mod wasi;

/// The Wasm import module that every Atoll host function lives in.
pub const IMPORT_MODULE: &str = "atoll";

/// The export the kernel calls to start a service: `() -> ()`.
pub const ENTRY_POINT: &str = "_start";

/// The optional export a server's calls are handed to by upcall:
/// `atoll_handle(received: i32, reply_cap: i32) -> i64`. While the server
/// waits in `receive` (with no timeout) and a `call` on that endpoint is
/// switched to it directly, the kernel writes the message and its
/// receive-info record where that `receive` asked, then calls this export
/// with what the `receive` returned (the message's length) and the length
/// of the caller's reply buffer, instead of resuming the `receive`. The
/// handler returns its reply's `(ptr << 32) | len` (the call is answered
/// with those bytes and the server is back in its `receive`, never having
/// left it), [`HANDLER_DEFERRED`] or [`HANDLER_DECLINED`]; anything else
/// faults the server. docs/abi.md, "Handlers".
pub const HANDLER_EXPORT: &str = "atoll_handle";

/// A handler's answer for "not now": the call stays open (its token, in the
/// receive-info record, answers it later with `reply`), and the server is
/// back in its `receive`.
pub const HANDLER_DEFERRED: i64 = -2;

/// A handler's answer for "not by upcall": the `receive` it stood in for
/// returns to the server's own loop with the message, as without a handler.
pub const HANDLER_DECLINED: i64 = -1;

/// The export holding a service's linear memory. Host functions that take a
/// pointer read and write this memory only.
pub const MEMORY_EXPORT: &str = "memory";

/// Size of one Wasm page.
pub const WASM_PAGE_SIZE: usize = 65_536;

/// The longest message `log` accepts, in bytes. Longer ones get
/// [`Error::TooLarge`] and nothing is printed.
pub const MAX_LOG_LEN: usize = 1024;

/// A Wasm value type, as far as the ABI uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    I32,
    I64,
}

/// One host function: its import name and its Wasm signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFunction {
    pub name: &'static str,
    pub params: &'static [ValueType],
    pub results: &'static [ValueType],
}

/// The longest message `send`, `call` and `reply` carry, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Size of the record `receive` writes at `info_ptr` ([`ReceiveInfo`]): a
/// little-endian `u32` reply token (0 when the message came from `send`) at
/// [`RECEIVE_INFO_TOKEN_OFFSET`], then a little-endian `u32` sender id at
/// [`RECEIVE_INFO_SENDER_OFFSET`].
pub const RECEIVE_INFO_LEN: usize = 8;
/// Where the reply token lies in the receive-info record.
pub const RECEIVE_INFO_TOKEN_OFFSET: usize = 0;
/// Where the sender id lies in the receive-info record.
pub const RECEIVE_INFO_SENDER_OFFSET: usize = 4;

/// The record `receive` writes at `info_ptr`, [`RECEIVE_INFO_LEN`] bytes. The
/// kernel writes it with [`ReceiveInfo::encode`], the Rust SDK reads it with
/// [`ReceiveInfo::decode`]; the other languages' bindings are checked against
/// the offsets above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveInfo {
    /// The token that answers the call with `reply`; 0 when the message came
    /// from `send` and no reply is due.
    pub token: u32,
    /// The sending service's id, or [`supervision::KERNEL_SENDER`] for a
    /// message from the kernel.
    pub sender: u32,
}

impl ReceiveInfo {
    /// The record's bytes, as `receive` writes them.
    #[must_use]
    pub const fn encode(&self) -> [u8; RECEIVE_INFO_LEN] {
        let [t0, t1, t2, t3] = self.token.to_le_bytes();
        let [s0, s1, s2, s3] = self.sender.to_le_bytes();
        [t0, t1, t2, t3, s0, s1, s2, s3]
    }

    /// The record `receive` wrote.
    #[must_use]
    pub const fn decode(bytes: &[u8; RECEIVE_INFO_LEN]) -> ReceiveInfo {
        let [t0, t1, t2, t3, s0, s1, s2, s3] = *bytes;
        ReceiveInfo {
            token: u32::from_le_bytes([t0, t1, t2, t3]),
            sender: u32::from_le_bytes([s0, s1, s2, s3]),
        }
    }

    /// Whether the sender waits in `call` for an answer.
    #[must_use]
    pub const fn is_call(&self) -> bool {
        self.token != 0
    }

    /// Whether the message comes from the kernel (a supervision event or an
    /// interrupt notification).
    #[must_use]
    pub const fn from_kernel(&self) -> bool {
        self.sender == supervision::KERNEL_SENDER
    }
}

/// The largest module the kernel takes at run time, in bytes: through `swap`
/// and through the host control channel's swap request (16 MiB). The
/// supervisor refuses bigger files before reading them.
pub const MAX_MODULE_LEN: usize = 16 * 1024 * 1024;

/// Default number of messages an endpoint queues before `send`/`call` fail
/// with [`Error::QueueFull`].
pub const DEFAULT_QUEUE_DEPTH: u32 = 16;

/// The deepest queue a system description may ask for.
pub const MAX_QUEUE_DEPTH: u32 = 1024;

use ValueType::{I32, I64};

/// `log(ptr: i32, len: i32) -> i32`: writes the UTF-8 text at `ptr..ptr+len` of the
/// caller's memory as one line on the console, prefixed with the service's name.
/// Returns 0, or a negative [`Error`].
pub const LOG: HostFunction = HostFunction {
    name: "log",
    params: &[I32, I32],
    results: &[I32],
};

/// `lookup(name_ptr: i32, name_len: i32) -> i32`: the handle (> 0) of the endpoint
/// called `name` that the caller provides or uses, per the system description.
pub const LOOKUP: HostFunction = HostFunction {
    name: "lookup",
    params: &[I32, I32],
    results: &[I32],
};

/// `send(handle: i32, ptr: i32, len: i32) -> i32`: queues a copy of the message
/// and returns 0 at once; never blocks ([`Error::QueueFull`] when the queue is full).
pub const SEND: HostFunction = HostFunction {
    name: "send",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `call(handle: i32, ptr: i32, len: i32, reply_ptr: i32, reply_cap: i32) -> i32`:
/// queues the message, blocks until the provider replies, writes the reply at
/// `reply_ptr` and returns its length.
pub const CALL: HostFunction = HostFunction {
    name: "call",
    params: &[I32, I32, I32, I32, I32],
    results: &[I32],
};

/// `receive(handle: i32, ptr: i32, cap: i32, timeout_ns: i64, info_ptr: i32) -> i32`:
/// takes the oldest message of an endpoint the caller provides, writes it at `ptr`
/// and its [`RECEIVE_INFO_LEN`]-byte record at `info_ptr`, and returns its length.
/// `timeout_ns` < 0 waits forever, 0 never waits.
pub const RECEIVE: HostFunction = HostFunction {
    name: "receive",
    params: &[I32, I32, I32, I64, I32],
    results: &[I32],
};

/// `reply(token: i32, ptr: i32, len: i32) -> i32`: answers the call that `receive`
/// returned `token` for, waking the caller. Each token answers once.
pub const REPLY: HostFunction = HostFunction {
    name: "reply",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `reply_receive(token: i32, reply_ptr: i32, reply_len: i32, status_ptr: i32,
/// handle: i32, ptr: i32, cap: i32, timeout_ns: i64, info_ptr: i32) -> i32`:
/// a server's turn of its loop in one kernel call (seL4's `ReplyRecv`):
/// answers `token` as [`REPLY`] does (nothing if `token` is 0) and writes
/// that outcome (0 or an error code, a little-endian `i32`) at `status_ptr`,
/// then receives as [`RECEIVE`] does and returns what it returns (without
/// waiting if the answer failed with anything but `PeerGone` or
/// `BadHandle`, so that the server can answer again). If
/// `status_ptr`, the receive buffer or the info record lies outside memory,
/// it returns [`Error::OutOfBounds`] and does neither.
pub const REPLY_RECEIVE: HostFunction = HostFunction {
    name: "reply_receive",
    params: &[I32, I32, I32, I32, I32, I32, I32, I64, I32],
    results: &[I32],
};

/// `sleep(ns: i64) -> i32`: blocks for at least `ns` nanoseconds; returns 0.
pub const SLEEP: HostFunction = HostFunction {
    name: "sleep",
    params: &[I64],
    results: &[I32],
};

/// `time() -> i64`: nanoseconds since boot on the monotonic clock.
pub const TIME: HostFunction = HostFunction {
    name: "time",
    params: &[],
    results: &[I64],
};

/// `control(op: i32, name_ptr: i32, name_len: i32) -> i32`: stops, starts or
/// restarts the service called `name` (see [`supervision`]). Only the system's
/// supervisor may call it.
pub const CONTROL: HostFunction = HostFunction {
    name: "control",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `swap(name_ptr: i32, name_len: i32, module_ptr: i32, module_len: i32) -> i32`:
/// replaces the running service called `name` with the module at
/// `module_ptr..+module_len`, at its next quiescent point (see
/// [`supervision`]). Only the system's supervisor may call it.
pub const SWAP: HostFunction = HostFunction {
    name: "swap",
    params: &[I32, I32, I32, I32],
    results: &[I32],
};

/// `port_in(port: i32, width: i32) -> i64`: reads an I/O port of `width` bytes
/// (1, 2 or 4) and returns the value zero-extended, or a negative [`Error`]:
/// `NotPermitted` unless the whole access lies in a port range granted to the
/// caller ([`driver`]).
pub const PORT_IN: HostFunction = HostFunction {
    name: "port_in",
    params: &[I32, I32],
    results: &[I64],
};

/// `port_out(port: i32, width: i32, value: i32) -> i32`: writes the low
/// `width` bytes of `value` to an I/O port granted to the caller.
pub const PORT_OUT: HostFunction = HostFunction {
    name: "port_out",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `irq_ack(irq: i32) -> i32`: unmasks interrupt line `irq`, granted to the
/// caller. Lines start masked; a driver calls this once its device is set up,
/// and again after handling each interrupt notification ([`driver`]).
pub const IRQ_ACK: HostFunction = HostFunction {
    name: "irq_ack",
    params: &[I32],
    results: &[I32],
};

/// `dma_alloc(len: i32) -> i32`: allocates a zeroed, physically contiguous,
/// page-aligned buffer of `len` bytes from the caller's `dma-kib` budget and
/// returns its handle (> 0).
pub const DMA_ALLOC: HostFunction = HostFunction {
    name: "dma_alloc",
    params: &[I32],
    results: &[I32],
};

/// `dma_address(handle: i32) -> i64`: the physical address of a DMA buffer,
/// to program into a device.
pub const DMA_ADDRESS: HostFunction = HostFunction {
    name: "dma_address",
    params: &[I32],
    results: &[I64],
};

/// `dma_read(handle: i32, offset: i32, ptr: i32, len: i32) -> i32`: copies
/// `len` bytes from the buffer at `offset` into the caller's memory at `ptr`.
pub const DMA_READ: HostFunction = HostFunction {
    name: "dma_read",
    params: &[I32, I32, I32, I32],
    results: &[I32],
};

/// `dma_write(handle: i32, offset: i32, ptr: i32, len: i32) -> i32`: copies
/// `len` bytes from the caller's memory at `ptr` into the buffer at `offset`.
pub const DMA_WRITE: HostFunction = HostFunction {
    name: "dma_write",
    params: &[I32, I32, I32, I32],
    results: &[I32],
};

/// `dma_free(handle: i32) -> i32`: returns a DMA buffer to the budget. A
/// service's buffers are also freed when it stops, restarts or is swapped.
pub const DMA_FREE: HostFunction = HostFunction {
    name: "dma_free",
    params: &[I32],
    results: &[I32],
};

/// `pci_read(address: i32, offset: i32) -> i64`: reads the 32-bit
/// configuration register at `offset` (a multiple of 4, below 256) of PCI
/// function `address` (`bus << 8 | device << 3 | function`), which must be
/// granted to the caller. Returns the value zero-extended.
pub const PCI_READ: HostFunction = HostFunction {
    name: "pci_read",
    params: &[I32, I32],
    results: &[I64],
};

/// `pci_write(address: i32, offset: i32, value: i32) -> i32`: writes the
/// command register (offset 0x04) of a function granted by name, changing
/// only I/O space, memory space, bus master and INTx disable (bits 0, 1, 2,
/// 10; the status half is write-one-to-clear). Every other register (BARs,
/// expansion ROM, capabilities such as MSI and power management) and every
/// other command bit is refused with `NotPermitted`: a driver may not move,
/// reset or power down its device, nor make it write memory through MSI.
pub const PCI_WRITE: HostFunction = HostFunction {
    name: "pci_write",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `info(kind: i32, index: i32, ptr: i32, cap: i32) -> i32`: writes a
/// postcard record about the system ([`info::SYSTEM`], `index` ignored),
/// about service number `index` ([`info::SERVICE`]), endpoint number `index`
/// ([`info::ENDPOINT`]) or the trace ring ([`info::TRACE`], `index` ignored)
/// at `ptr` and returns its length; `NotFound` past the last service or
/// endpoint. Any service may ask (like
/// `/proc`): it reveals names and counters, not data.
pub const INFO: HostFunction = HostFunction {
    name: "info",
    params: &[I32, I32, I32, I32],
    results: &[I32],
};

/// `startup(ptr: i32, len: i32) -> i32`: the service's [`startup::Startup`]
/// record (its arguments and environment from `system.toml`, its WASI
/// preopens and listening sockets, the wall clock at boot, a seed),
/// postcard-encoded, written at `ptr` if it fits in `len` bytes. Returns its
/// length either way (call with `len` 0 to learn it), or an error code.
pub const STARTUP: HostFunction = HostFunction {
    name: "startup",
    params: &[I32, I32],
    results: &[I32],
};

/// Every host function of the ABI. A module importing anything else from
/// [`IMPORT_MODULE`], or from any other module but WASI preview1's (for WASI
/// programs, [`wasi`]), is rejected at build time and at load.
pub const HOST_FUNCTIONS: &[HostFunction] = &[
    LOG,
    LOOKUP,
    SEND,
    CALL,
    RECEIVE,
    REPLY,
    REPLY_RECEIVE,
    SLEEP,
    TIME,
    CONTROL,
    SWAP,
    PORT_IN,
    PORT_OUT,
    IRQ_ACK,
    DMA_ALLOC,
    DMA_ADDRESS,
    DMA_READ,
    DMA_WRITE,
    DMA_FREE,
    PCI_READ,
    PCI_WRITE,
    INFO,
    STARTUP,
];

/// The driver functions among [`HOST_FUNCTIONS`] (ports, interrupts, DMA,
/// PCI configuration): of use only to a service with grants, and not linked
/// for a WASI shim.
pub const DRIVER_FUNCTIONS: &[HostFunction] = &[
    PORT_IN,
    PORT_OUT,
    IRQ_ACK,
    DMA_ALLOC,
    DMA_ADDRESS,
    DMA_READ,
    DMA_WRITE,
    DMA_FREE,
    PCI_READ,
    PCI_WRITE,
];

/// Looks up a host function by its import name.
#[must_use]
pub fn host_function(name: &str) -> Option<&'static HostFunction> {
    HOST_FUNCTIONS.iter().find(|function| function.name == name)
}

/// Error codes returned by host functions, as negative `i32`s. The numbers are
/// fixed: a code keeps its number forever, new codes get new numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Error {
    /// An argument is outside its documented range (e.g. a negative length).
    InvalidArgument = -1,
    /// A pointer/length pair does not lie inside the caller's linear memory.
    OutOfBounds = -2,
    /// A buffer is longer than the limit for this call.
    TooLarge = -3,
    /// Bytes that must be UTF-8 are not.
    InvalidUtf8 = -4,
    /// The service exports no linear memory named [`MEMORY_EXPORT`].
    NoMemory = -5,
    /// The handle or reply token is not one the caller holds.
    BadHandle = -6,
    /// `lookup`: the caller neither provides nor uses an endpoint of that name.
    NotFound = -7,
    /// The endpoint's queue is full; nothing was sent.
    QueueFull = -8,
    /// `receive` with timeout 0: no message is waiting.
    WouldBlock = -9,
    /// `receive`: no message arrived before the timeout.
    TimedOut = -10,
    /// The service at the other end has stopped (the endpoint's provider, or
    /// the caller a reply was meant for).
    PeerGone = -11,
    /// The message does not fit the buffer given for it; it stays queued
    /// (`receive`) or the token stays valid (`reply`).
    BufferTooSmall = -12,
    /// The handle is valid but does not allow this operation (e.g. `receive` on
    /// an endpoint the caller only uses).
    NotPermitted = -13,
    /// `swap`: the module fails validation (it would not load).
    InvalidModule = -14,
    /// The kernel cannot hold what the call needs (a queued message, a module,
    /// a DMA buffer) without eating into the heap it keeps for itself. Nothing
    /// was done; the call may succeed once memory is freed.
    OutOfMemory = -15,
}

impl Error {
    /// Every error code, for tables and round-trip checks.
    pub const ALL: &'static [Error] = &[
        Error::InvalidArgument,
        Error::OutOfBounds,
        Error::TooLarge,
        Error::InvalidUtf8,
        Error::NoMemory,
        Error::BadHandle,
        Error::NotFound,
        Error::QueueFull,
        Error::WouldBlock,
        Error::TimedOut,
        Error::PeerGone,
        Error::BufferTooSmall,
        Error::NotPermitted,
        Error::InvalidModule,
        Error::OutOfMemory,
    ];

    /// The code as returned to Wasm.
    #[must_use]
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The error with this code, if any.
    #[must_use]
    pub fn from_code(code: i32) -> Option<Error> {
        Error::ALL
            .iter()
            .copied()
            .find(|error| error.code() == code)
    }

    /// A short lowercase description.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Error::InvalidArgument => "invalid argument",
            Error::OutOfBounds => "buffer outside the caller's memory",
            Error::TooLarge => "buffer too large",
            Error::InvalidUtf8 => "text is not UTF-8",
            Error::NoMemory => "service exports no memory",
            Error::BadHandle => "bad handle",
            Error::NotFound => "no such endpoint granted",
            Error::QueueFull => "queue full",
            Error::WouldBlock => "no message waiting",
            Error::TimedOut => "timed out",
            Error::PeerGone => "peer has stopped",
            Error::BufferTooSmall => "buffer too small",
            Error::NotPermitted => "operation not permitted on this handle",
            Error::InvalidModule => "invalid module",
            Error::OutOfMemory => "kernel memory exhausted",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_functions_are_host_functions() {
        for function in DRIVER_FUNCTIONS {
            assert_eq!(
                host_function(function.name),
                Some(function),
                "{}",
                function.name
            );
        }
    }

    #[test]
    fn error_codes_round_trip_and_are_distinct() {
        for error in Error::ALL {
            assert!(error.code() < 0);
            assert_eq!(Error::from_code(error.code()), Some(*error));
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(-1000), None);
    }

    #[test]
    fn receive_info_round_trips_at_its_documented_offsets() {
        let info = ReceiveInfo {
            token: 0x0403_0201,
            sender: supervision::KERNEL_SENDER,
        };
        let bytes = info.encode();
        assert_eq!(bytes, [1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            bytes[RECEIVE_INFO_TOKEN_OFFSET..RECEIVE_INFO_TOKEN_OFFSET + 4],
            info.token.to_le_bytes()
        );
        assert_eq!(
            bytes[RECEIVE_INFO_SENDER_OFFSET..RECEIVE_INFO_SENDER_OFFSET + 4],
            info.sender.to_le_bytes()
        );
        assert_eq!(ReceiveInfo::decode(&bytes), info);
        assert!(info.is_call() && info.from_kernel());
        let sent = ReceiveInfo::decode(&[0, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(
            sent,
            ReceiveInfo {
                token: 0,
                sender: 7
            }
        );
        assert!(!sent.is_call() && !sent.from_kernel());
    }

    #[test]
    fn host_function_lookup() {
        assert_eq!(host_function("log"), Some(&LOG));
        assert_eq!(host_function("nope"), None);
    }
}
