//! What every host function stands on: the state a service's host functions
//! see ([`HostState`]), the kernel call a host function suspends its caller
//! in ([`Syscall`]), charging fuel for work done in the kernel, and access to
//! the caller's memory. The functions themselves come in families:
//! [`abi`] (`atoll::*`), [`driver`] (ports, interrupts, DMA, PCI) and
//! [`shim`] (what the user-space WASI shim needs beyond the ABI).
//!
//! Each host function is a thin adapter. It checks its arguments against the
//! caller's memory through [`crate::guest`] and answers argument errors at once
//! with an error code. Calls that need only the caller (`log`, `lookup`,
//! `time`, `startup`) are served right there. `send`, `reply`, and a `receive` that finds
//! a message complete in place through [`Messages`] (the kernel's side, a
//! trait so that this module does not depend on the kernel) when the kernel
//! can be borrowed. Calls that must wait (`call`, a `receive` on an empty
//! queue, `sleep`), that act on services (`control`, `swap`, `info`), and any
//! call made while the kernel is busy copy what they carry into a
//! kernel-owned [`Syscall`] and suspend the caller: the interpreter returns to
//! the kernel, which performs the call with every service in reach and later
//! resumes the caller with the result. A suspended service costs no kernel
//! stack. The shim's `exit` (WASI `proc_exit`) ends its caller with wasmi's
//! exit trap ([`wasmi::Error::i32_exit`]), which carries the status.

pub(crate) mod abi;
pub(crate) mod driver;
pub(crate) mod shim;

use crate::Platform;
use crate::guest::GuestSlice;
use crate::heap::Heap;
use crate::ipc::ServiceId;
use alloc::rc::Weak;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::{Error, MAX_MESSAGE_LEN, MEMORY_EXPORT};
use core::cell::RefCell;
use wasmi::{Caller, Extern, Linker, ResourceLimiter, StoreLimits};
// wasmi does not re-export the error type of its `ResourceLimiter` trait.
use wasmi_core::LimiterError;

/// Defines the host functions of a service module in `linker`: the ABI's
/// and the driver functions.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    abi::define(linker)?;
    driver::define(linker)
}

/// Defines the host functions of the WASI shim in `linker`: the ABI's but
/// the driver functions (a shim drives no device), and the shim's own.
pub(crate) fn define_shim(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    abi::define(linker)?;
    shim::define(linker)
}

/// The kernel's side of the kernel calls that need not block, for the host
/// functions to complete in place (no trap, no resume): `send` (never
/// blocks), `reply` (never blocks; written straight into the parked caller)
/// and `receive` with a message waiting. Implemented by the kernel; a trait,
/// so that the host functions do not depend on the kernel.
pub(crate) trait Messages {
    /// `send` of `message` (in service `id`'s memory; the kernel copies it)
    /// on `handle`: the result code.
    fn fast_send(&mut self, id: ServiceId, handle: i32, message: &[u8]) -> i32;
    /// `receive` on `handle` into `buffer` and `info` of `memory` (service
    /// `id`'s own), waiting `timeout_ns` (0: not at all): the result, or
    /// `None` if it must wait.
    fn fast_receive(
        &mut self,
        id: ServiceId,
        handle: i32,
        memory: &mut [u8],
        slices: (GuestSlice, GuestSlice),
        timeout_ns: i64,
    ) -> Option<i32>;
    /// `reply` to `token` with `message` (in the replier's memory): the result.
    fn fast_reply(&mut self, id: ServiceId, token: u32, message: &[u8]) -> i32;
    /// Starts a kernel entry (before any of the above): the kernel reads
    /// its clock at most once per entry.
    fn enter(&mut self);
}

/// The kernel's side of a `call` completed by a direct switch: the server
/// that waits in `receive` for it runs at once, inside the caller's host
/// function, and its reply goes straight back, so that the caller is not
/// suspended. A trait (implemented by the kernel's `RefCell`, which it
/// borrows only between the server's steps) for the same reason as
/// [`Messages`].
pub(crate) trait Switch {
    /// `call` of `message` on `handle`, with its reply buffer `reply`
    /// (checked writable), both in `memory`, service `id`'s own: the kernel
    /// copies the message if it takes the call, and writes the reply into
    /// `reply` if it comes.
    fn call_in_place(
        &self,
        id: ServiceId,
        handle: i32,
        memory: &mut [u8],
        message: GuestSlice,
        reply: GuestSlice,
    ) -> InPlace;
}

/// How a `call` offered to [`Switch::call_in_place`] went.
pub(crate) enum InPlace {
    /// Not made (no server waiting for it, a switch already running, the
    /// kernel busy): the caller takes the slow path.
    NotTaken,
    /// Made and answered: the caller resumes with this value (the reply's
    /// length, written into its reply buffer, or an error code).
    Answered(i32),
    /// Made, not answered yet (the server was preempted or blocked on
    /// something else): the caller must wait ([`Syscall::AwaitReply`]).
    Waiting,
}

/// A service's way into the kernel: its id and the kernel's state.
pub(crate) type KernelLink = (ServiceId, Weak<RefCell<dyn Messages>>);

/// Offers `call` to the kernel's direct switch ([`Switch`]).
fn call_in_place(
    state: &HostState,
    handle: i32,
    memory: &mut [u8],
    (message, reply): (GuestSlice, GuestSlice),
) -> InPlace {
    if cfg!(any(feature = "trapped-ipc", feature = "no-switch")) {
        return InPlace::NotTaken;
    }
    let (Some((id, _)), Some(switch)) = (
        state.kernel.as_ref(),
        state.switch.as_ref().and_then(Weak::upgrade),
    ) else {
        return InPlace::NotTaken;
    };
    switch.call_in_place(*id, handle, memory, message, reply)
}

/// Runs `op` on the kernel if the host function can reach it now: not before
/// the service is in the table (boot, its start function), nor while the
/// kernel itself runs the service (a state handoff), when the kernel is busy.
/// `None`: take the slow path, a [`Syscall`].
fn with_kernel<R>(
    state: &HostState,
    op: impl FnOnce(&mut dyn Messages, ServiceId) -> R,
) -> Option<R> {
    if cfg!(feature = "trapped-ipc") {
        return None;
    }
    let (id, kernel) = state.kernel.as_ref()?;
    let kernel = kernel.upgrade()?;
    let mut kernel = kernel.try_borrow_mut().ok()?;
    kernel.enter();
    Some(op(&mut *kernel, *id))
}

/// What a host function sees of the service calling it.
pub(crate) struct HostState {
    /// The kernel, for the calls that complete in place (set once the
    /// service is in the kernel's table).
    pub(crate) kernel: Option<KernelLink>,
    /// The kernel's direct switch for `call` (set with `kernel`).
    pub(crate) switch: Option<Weak<dyn Switch>>,
    pub(crate) name: String,
    pub(crate) platform: Arc<dyn Platform>,
    /// The kernel heap's admission, for what the service's calls make the
    /// kernel hold.
    pub(crate) heap: Arc<Heap>,
    /// Endpoint names in handle order: handle `h` names `endpoint_names[h - 1]`.
    pub(crate) endpoint_names: Vec<String>,
    /// The kernel call a host function has just suspended the service for.
    pub(crate) pending: Option<Syscall>,
    /// The service's [`atoll_abi::startup::Startup`] record, encoded.
    pub(crate) startup: Arc<[u8]>,
    /// A WASI program's stdout and stderr: what they hold of a line not yet
    /// ended.
    pub(crate) output: [Vec<u8>; 2],
    /// Fuel charged for kernel work that the slice could not cover; paid
    /// from the next slices.
    pub(crate) fuel_debt: u64,
    /// Its driver grants and the DMA buffers it holds.
    pub(crate) driver: crate::grants::DriverState,
    pub(crate) limiter: Limiter,
    /// The memory the ABI's functions work on, cached once the instance
    /// exists (a lookup by name on every kernel call cost more than the
    /// call's copy): the service's, or for a WASI program its shim's.
    pub(crate) memory: Option<wasmi::Memory>,
    /// A WASI program's own memory (the shim reaches it through
    /// `program_read` and `program_write`).
    pub(crate) program_memory: Option<wasmi::Memory>,
}

/// The service's static limits, plus the kernel heap's admission: a memory or
/// table the heap cannot hold is refused like one over the limit
/// (`memory.grow` returns -1), never a kernel allocation failure.
pub(crate) struct Limiter {
    pub(crate) limits: StoreLimits,
    pub(crate) heap: Arc<Heap>,
    /// The service's memory limit, for all its memories together (a WASI
    /// program's and its shim's).
    pub(crate) memory_limit: usize,
    /// Bytes its memories hold now (counted when a growth is approved,
    /// taken back if the growth then fails).
    pub(crate) memory_total: usize,
    /// `memory_total` before the last approved growth.
    pub(crate) memory_total_before: usize,
    /// A growth was refused because the kernel heap could not hold it: not
    /// the service's fault, so what failed of it is out of memory.
    pub(crate) heap_refused: bool,
}

/// Bytes the interpreter holds per table element (a reference, with slack).
const TABLE_ELEMENT_BYTES: usize = 16;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        // The memory is a Vec grown with `try_reserve`: while it moves, the
        // new buffer (up to twice the old one, by amortised doubling) and the
        // old one are both held.
        let needed = desired.max(current.saturating_mul(2));
        if self.heap.admit(needed).is_err() {
            self.heap_refused = true;
            return Ok(false);
        }
        let total = self
            .memory_total
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_limit {
            return Ok(false);
        }
        let grown = self.limits.memory_growing(current, desired, maximum)?;
        if grown {
            self.memory_total_before = self.memory_total;
            self.memory_total = total;
        }
        Ok(grown)
    }

    fn memory_grow_failed(
        &mut self,
        _error: &wasmi::errors::MemoryError,
    ) -> Result<(), LimiterError> {
        // Approved, then not done (out of fuel, or no room): wasmi calls
        // this right after the approval, before any other growth.
        self.memory_total = self.memory_total_before;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let needed = desired
            .max(current.saturating_mul(2))
            .saturating_mul(TABLE_ELEMENT_BYTES);
        if self.heap.admit(needed).is_err() {
            self.heap_refused = true;
            return Ok(false);
        }
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A generator seed for service `name`: never 0 (xorshift's fixed point), and
/// different for services loaded at the same instant.
pub(crate) fn seed(platform_seed: u64, name: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (platform_seed ^ hash) | 1
}

/// A kernel call, with its arguments checked and its message copied out of the
/// caller's memory.
#[derive(Debug, PartialEq, Eq)]
pub enum Syscall {
    Send {
        handle: i32,
        message: Vec<u8>,
    },
    Call {
        handle: i32,
        message: Vec<u8>,
        /// The caller's reply buffer (checked writable).
        reply: GuestSlice,
    },
    Receive {
        handle: i32,
        buffer: GuestSlice,
        info: GuestSlice,
        /// < 0: forever; 0: do not wait.
        timeout_ns: i64,
    },
    Reply {
        token: u32,
        message: Vec<u8>,
    },
    /// `reply_receive` while the kernel was busy: the reply, its outcome
    /// written at `status` (checked writable), then the receive.
    ReplyReceive {
        token: u32,
        message: Vec<u8>,
        status: GuestSlice,
        handle: i32,
        buffer: GuestSlice,
        info: GuestSlice,
        timeout_ns: i64,
    },
    /// A `call` the kernel made in place ([`InPlace::Waiting`]): the caller
    /// is already parked waiting for the reply.
    AwaitReply,
    Sleep {
        ns: u64,
    },
    Control {
        op: i32,
        name: alloc::string::String,
    },
    /// The module stays in the caller's memory until the kernel has checked
    /// that the caller may swap at all.
    Swap {
        name: alloc::string::String,
        module: GuestSlice,
    },
    Info {
        kind: i32,
        index: i32,
        buffer: GuestSlice,
    },
}

/// The timeout of `reply_receive`'s receive after its answer gave
/// `replied`: if the answer was not given but its token is still good (any
/// error but `PeerGone` and `BadHandle`: too long for the caller, outside
/// memory, no room), the receive does not wait, so that the server can
/// answer again at once; a caller with no other way out must not wait on
/// a server parked for the next message.
pub(crate) fn receive_timeout_after(replied: i32, timeout_ns: i64) -> i64 {
    let spent = [atoll_abi::Error::PeerGone, atoll_abi::Error::BadHandle]
        .iter()
        .any(|error| error.code() == replied);
    if replied < 0 && !spent { 0 } else { timeout_ns }
}

/// The host error that suspends a service in a kernel call. Carries nothing:
/// the call itself is in [`HostState::pending`] (wasmi hands a resumable
/// call's error back only by reference).
#[derive(Debug, thiserror::Error)]
#[error("suspended in a kernel call")]
pub(crate) struct Suspend;

impl wasmi::errors::HostError for Suspend {}

pub(crate) type HostResult = Result<i32, wasmi::Error>;

/// The caller's exported memory: the handle cached at instantiation, or
/// looked up by name while the module's start function runs (before the
/// instance, and so the cache, exists).
pub(crate) fn guest_memory(caller: &Caller<'_, HostState>) -> Option<wasmi::Memory> {
    caller.data().memory.or_else(|| {
        caller
            .get_export(MEMORY_EXPORT)
            .and_then(Extern::into_memory)
    })
}

/// The caller's linear memory as bytes.
fn memory<'a>(caller: &'a Caller<'_, HostState>) -> Result<&'a [u8], Error> {
    let memory = guest_memory(caller).ok_or(Error::NoMemory)?;
    Ok(memory.data(caller))
}

/// Copies a message out of the caller's memory into a kernel-owned buffer,
/// if the kernel heap admits it ([`Error::OutOfMemory`] if not).
fn copy_message(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, Error> {
    let bytes = GuestSlice::new(ptr, len).read(memory(caller)?, MAX_MESSAGE_LEN)?;
    caller.data().heap.copy(bytes)
}

/// Checks that a buffer the kernel will write later lies in the caller's memory
/// now. (Linear memory never shrinks, so it still will.)
fn writable(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<GuestSlice, Error> {
    let slice = GuestSlice::new(ptr, len);
    slice.read(memory(caller)?, usize::MAX)?;
    Ok(slice)
}

/// Suspends the caller in `syscall`.
fn suspend(mut caller: Caller<'_, HostState>, syscall: Syscall) -> HostResult {
    caller.data_mut().pending = Some(syscall);
    Err(wasmi::Error::host(Suspend))
}

/// Runs `body`; an `Err(code)` from it becomes the call's return value.
fn checked(body: impl FnOnce() -> Result<HostResult, Error>) -> HostResult {
    body().unwrap_or_else(|error| Ok(error.code()))
}

/// Fuel charged per byte written to the console: console output is slow, and
/// a service must not buy megabytes of it for a few instructions.
const FUEL_PER_CONSOLE_BYTE: u64 = 1;
/// Bytes copied per unit of fuel, as wasmi charges `memory.copy`.
pub(crate) const BYTES_PER_FUEL: u64 = 64;

/// Charges the caller, in full, for work done on its behalf inside a host
/// function. What its slice cannot cover becomes debt, taken from its next
/// slices before it runs again ([`crate::service::Service::run_slice`]): no
/// work is free, however little fuel was left. Fuel that runs out here
/// preempts the service at its next instruction.
pub(crate) fn charge(caller: &mut Caller<'_, HostState>, fuel: u64) {
    if fuel == 0 {
        // Nothing to take (a message under 64 bytes): wasmi's fuel is not
        // read and written back unchanged on the message path.
        return;
    }
    let left = caller.get_fuel().unwrap_or(0);
    let _ = caller.set_fuel(left.saturating_sub(fuel));
    let state = caller.data_mut();
    state.fuel_debt = state.fuel_debt.saturating_add(fuel.saturating_sub(left));
}

/// Charges for copying `bytes` bytes.
fn charge_copy(caller: &mut Caller<'_, HostState>, bytes: usize) {
    charge(caller, bytes as u64 / BYTES_PER_FUEL);
}

/// Writes `text` to the console, each of its lines prefixed with the service's
/// name (so a service cannot forge another's prefix). Returns the bytes written.
pub(crate) fn console_lines(state: &HostState, text: &str) -> usize {
    let mut lines = alloc::string::String::with_capacity(text.len() + 2 * state.name.len() + 8);
    for line in text.trim_end_matches('\n').split('\n') {
        lines.push('[');
        lines.push_str(&state.name);
        lines.push_str("] ");
        push_escaped(&mut lines, line.trim_end_matches('\r'));
        lines.push('\n');
    }
    state.platform.console_write(&lines);
    lines.len()
}

/// Appends `line` with every control character but tab written as a visible
/// escape (`\x1b`, `\x08`, `\u{9b}`): a service must not move the cursor,
/// erase its `[name]` prefix or ring the bell on the console.
fn push_escaped(out: &mut alloc::string::String, line: &str) {
    use core::fmt::Write;
    for character in line.chars() {
        if character.is_control() && character != '\t' {
            let code = u32::from(character);
            let _ = if code < 0x80 {
                write!(out, "\\x{code:02x}")
            } else {
                write!(out, "\\u{{{code:x}}}")
            };
        } else {
            out.push(character);
        }
    }
}
