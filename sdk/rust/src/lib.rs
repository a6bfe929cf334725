//! Write Atoll services in Rust.
//!
//! A service is a `#![no_std]` `cdylib` crate built for `wasm32-unknown-unknown`.
//! It names its entry point with [`entry!`] and talks to the kernel through the
//! functions of this crate, which wrap the raw host functions of the ABI
//! (`atoll-abi`, documented in `docs/abi.md`) and turn their status codes into
//! `Result`s. With the default features the crate also installs a global
//! allocator (so `alloc` works) and a panic handler that logs the panic message
//! and traps, which the kernel reports as that service's fault.
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! atoll_sdk::entry!(main);
//! fn main() {
//!     atoll_sdk::log("hello from a Wasm service");
//! }
//! ```
#![no_std]
#![cfg_attr(
    not(target_family = "wasm"),
    allow(
        dead_code,
        unused_imports,
        reason = "the host calls exist only on wasm32; host builds run the unit tests"
    )
)]

pub use atoll_abi::{Error, HANDLER_EXPORT, MAX_MESSAGE_LEN, MAX_MODULE_LEN};

extern crate alloc;

#[cfg(target_family = "wasm")]
pub mod args;
#[cfg(target_family = "wasm")]
pub mod driver;
#[cfg(target_family = "wasm")]
pub mod handoff;
pub mod ipc;
pub mod supervision;
pub use ipc::{
    Answer, CallError, Endpoint, Malformed, Received, ReplyToken, Request, Responder, Timeout,
    callers_gone,
};
#[cfg(target_family = "wasm")]
pub use ipc::{serve, serve_named, serve_raw};

/// The raw host functions, exactly as the kernel exports them. Prefer the safe
/// wrappers of this crate; these are for bindings and tests of the ABI itself.
pub mod raw {
    // SAFETY: these are the kernel's host functions with the signatures of
    // `atoll_abi::HOST_FUNCTIONS`; the kernel checks every pointer and length
    // against this module's memory, so a wrong argument is an error code.
    #[cfg(target_family = "wasm")]
    #[link(wasm_import_module = "atoll")]
    unsafe extern "C" {
        /// See [`atoll_abi::LOG`].
        pub fn log(ptr: *const u8, len: usize) -> i32;
        /// See [`atoll_abi::LOOKUP`].
        pub fn lookup(ptr: *const u8, len: usize) -> i32;
        /// See [`atoll_abi::SEND`].
        pub fn send(handle: i32, ptr: *const u8, len: usize) -> i32;
        /// See [`atoll_abi::CALL`].
        pub fn call(handle: i32, ptr: *const u8, len: usize, reply: *mut u8, cap: usize) -> i32;
        /// See [`atoll_abi::RECEIVE`].
        pub fn receive(
            handle: i32,
            ptr: *mut u8,
            cap: usize,
            timeout_ns: i64,
            info: *mut u8,
        ) -> i32;
        /// See [`atoll_abi::REPLY`].
        pub fn reply(token: u32, ptr: *const u8, len: usize) -> i32;
        /// See [`atoll_abi::REPLY_RECEIVE`].
        pub fn reply_receive(
            token: u32,
            reply: *const u8,
            reply_len: usize,
            status: *mut i32,
            handle: i32,
            ptr: *mut u8,
            cap: usize,
            timeout_ns: i64,
            info: *mut u8,
        ) -> i32;
        /// See [`atoll_abi::SLEEP`].
        pub fn sleep(ns: i64) -> i32;
        /// See [`atoll_abi::TIME`].
        pub fn time() -> i64;
        /// See [`atoll_abi::CONTROL`].
        pub fn control(op: i32, name: *const u8, len: usize) -> i32;
        /// See [`atoll_abi::SWAP`].
        pub fn swap(name: *const u8, name_len: usize, module: *const u8, module_len: usize) -> i32;
        /// See [`atoll_abi::PORT_IN`].
        pub fn port_in(port: i32, width: i32) -> i64;
        /// See [`atoll_abi::PORT_OUT`].
        pub fn port_out(port: i32, width: i32, value: i32) -> i32;
        /// See [`atoll_abi::IRQ_ACK`].
        pub fn irq_ack(irq: i32) -> i32;
        /// See [`atoll_abi::DMA_ALLOC`].
        pub fn dma_alloc(len: i32) -> i32;
        /// See [`atoll_abi::DMA_ADDRESS`].
        pub fn dma_address(handle: i32) -> i64;
        /// See [`atoll_abi::DMA_READ`].
        pub fn dma_read(handle: i32, offset: i32, ptr: *mut u8, len: usize) -> i32;
        /// See [`atoll_abi::DMA_WRITE`].
        pub fn dma_write(handle: i32, offset: i32, ptr: *const u8, len: usize) -> i32;
        /// See [`atoll_abi::DMA_FREE`].
        pub fn dma_free(handle: i32) -> i32;
        /// See [`atoll_abi::PCI_READ`].
        pub fn pci_read(address: i32, offset: i32) -> i64;
        /// See [`atoll_abi::PCI_WRITE`].
        pub fn pci_write(address: i32, offset: i32, value: i32) -> i32;
        /// See [`atoll_abi::INFO`].
        pub fn info(kind: i32, index: i32, ptr: *mut u8, cap: usize) -> i32;
        /// See [`atoll_abi::STARTUP`].
        pub fn startup(ptr: *mut u8, cap: usize) -> i32;
    }
}

/// Nanoseconds since boot on the kernel's monotonic clock.
#[cfg(target_family = "wasm")]
#[must_use]
pub fn time() -> u64 {
    // SAFETY: `time` takes no arguments and touches no memory.
    u64::try_from(unsafe { raw::time() }).unwrap_or(0)
}

/// The real-time clock: nanoseconds since 1970-01-01 UTC (the kernel's
/// clock read at boot, from [`startup`], plus [`time`]); `None` if the
/// machine has no clock.
#[cfg(target_family = "wasm")]
#[must_use]
pub fn wall_clock_ns() -> Option<u64> {
    use core::sync::atomic::{AtomicU64, Ordering};
    /// The wall clock at boot, once read (`u64::MAX`: not yet).
    static BOOT: AtomicU64 = AtomicU64::new(u64::MAX);
    let mut boot = BOOT.load(Ordering::Relaxed);
    if boot == u64::MAX {
        boot = startup().boot_wall_clock_ns;
        BOOT.store(boot, Ordering::Relaxed);
    }
    (boot != 0 && boot != u64::MAX).then(|| boot.saturating_add(time()))
}

/// The service's start-up record: its arguments and environment from
/// `system.toml`, its WASI preopens and listening sockets, the wall clock
/// at boot, a seed. Empty if the kernel's record does not decode.
#[cfg(target_family = "wasm")]
#[must_use]
pub fn startup() -> atoll_abi::startup::Startup {
    // SAFETY: a length of 0 writes nothing.
    let len = unsafe { raw::startup(core::ptr::null_mut(), 0) };
    let Ok(len) = usize::try_from(len) else {
        return Default::default();
    };
    let mut record = alloc::vec![0u8; len];
    // SAFETY: the kernel writes at most `record.len()` bytes into it.
    let written = unsafe { raw::startup(record.as_mut_ptr(), record.len()) };
    if usize::try_from(written) != Ok(len) {
        return Default::default();
    }
    postcard::from_bytes(&record).unwrap_or_default()
}

/// Blocks for at least `ns` nanoseconds; other services run meanwhile.
#[cfg(target_family = "wasm")]
pub fn sleep(ns: u64) {
    // SAFETY: `sleep` touches no memory.
    unsafe { raw::sleep(i64::try_from(ns).unwrap_or(i64::MAX)) };
}

/// Turns a host function's status into a `Result`.
fn check(status: i32) -> Result<(), Error> {
    check_value(status).map(|_| ())
}

/// Turns a host function's non-negative result or negative error code into a
/// `Result`.
fn check_value(status: i32) -> Result<u32, Error> {
    if status >= 0 {
        return Ok(status.cast_unsigned());
    }
    // A code this SDK does not know comes from a newer kernel; the nearest
    // meaning is "invalid argument".
    Err(Error::from_code(status).unwrap_or(Error::InvalidArgument))
}

/// Writes one line to the console, prefixed with the service's name. Fails with
/// [`Error::TooLarge`] past [`atoll_abi::MAX_LOG_LEN`] bytes.
#[cfg(target_family = "wasm")]
pub fn try_log(text: &str) -> Result<(), Error> {
    // SAFETY: `text` is a live UTF-8 buffer in this module's memory for the
    // duration of the call, and the kernel only reads it.
    check(unsafe { raw::log(text.as_ptr(), text.len()) })
}

/// Writes one line to the console; a line too long for one call is cut at
/// [`atoll_abi::MAX_LOG_LEN`] bytes (on a character boundary).
#[cfg(target_family = "wasm")]
pub fn log(text: &str) {
    let mut end = text.len().min(atoll_abi::MAX_LOG_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let _ = try_log(text.get(..end).unwrap_or(""));
}

/// Writes a formatted line to the console, without allocating.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::log_fmt(format_args!($($arg)*))
    };
}

/// Formats into a fixed buffer and logs it (the implementation of [`println!`]).
#[cfg(target_family = "wasm")]
pub fn log_fmt(args: core::fmt::Arguments<'_>) {
    let mut line = LineBuffer::new();
    let _ = core::fmt::Write::write_fmt(&mut line, args);
    log(line.as_str());
}

/// A line of at most [`atoll_abi::MAX_LOG_LEN`] bytes; longer text is cut.
struct LineBuffer {
    bytes: [u8; atoll_abi::MAX_LOG_LEN],
    len: usize,
}

impl LineBuffer {
    const fn new() -> Self {
        LineBuffer {
            bytes: [0; atoll_abi::MAX_LOG_LEN],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or(&[]);
        // Only whole UTF-8 strings are ever copied in (see `write_str`).
        core::str::from_utf8(bytes).unwrap_or("")
    }
}

impl core::fmt::Write for LineBuffer {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let room = self.bytes.len() - self.len;
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        if let (Some(target), Some(source)) = (
            self.bytes.get_mut(self.len..self.len + take),
            text.as_bytes().get(..take),
        ) {
            target.copy_from_slice(source);
            self.len += take;
        }
        Ok(())
    }
}

/// Declares the service's entry point: `entry!(main)` exports `_start`, which
/// the kernel calls once the service is loaded, and which calls `main()`; and
/// the handler export `atoll_handle`, through which calls reach the handler
/// of [`serve`] or [`serve_raw`] by upcall (if neither runs, it declines,
/// and the kernel leaves the service's own loop to take its calls).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn _start() {
            let main: fn() = $main;
            main();
        }

        /// The handler export: calls switched to this service while
        /// `serve` or `serve_raw` waits go to its handler directly.
        #[unsafe(no_mangle)]
        pub extern "C" fn atoll_handle(received: i32, reply_cap: i32) -> i64 {
            $crate::ipc::upcall(received, reply_cap)
        }
        const _: () = assert!($crate::handoff::same_name(
            "atoll_handle",
            $crate::HANDLER_EXPORT
        ));
    };
}

#[cfg(all(target_family = "wasm", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

#[cfg(all(target_family = "wasm", feature = "panic-handler"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log_fmt(format_args!("panic: {info}"));
    core::arch::wasm32::unreachable()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn statuses_map_to_errors() {
        assert_eq!(check(0), Ok(()));
        assert_eq!(check(-2), Err(Error::OutOfBounds));
        assert_eq!(check(-999), Err(Error::InvalidArgument));
    }

    #[test]
    fn line_buffer_cuts_on_char_boundaries() {
        let mut line = LineBuffer::new();
        let long = "é".repeat(atoll_abi::MAX_LOG_LEN);
        line.write_str(&long).unwrap();
        assert_eq!(line.as_str().len(), atoll_abi::MAX_LOG_LEN);
        assert!(line.as_str().chars().all(|c| c == 'é'));
    }
}
