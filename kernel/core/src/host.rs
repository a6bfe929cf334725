//! The host functions of the ABI, as wasmi sees them.
//!
//! Each function is a thin adapter. It checks its arguments against the caller's
//! memory through [`crate::guest`] and answers argument errors at once with an
//! error code. Calls that need only the caller (`log`, `lookup`, `time`) are
//! served right here. Calls that involve other services (`send`, `call`,
//! `receive`, `reply`, `sleep`) copy what they carry into a kernel-owned
//! [`Syscall`] and suspend the caller: the interpreter returns to the kernel,
//! which performs the call with every service in reach and later resumes the
//! caller with the result. A suspended service costs no kernel stack.

use crate::guest::GuestSlice;
use crate::service::HostState;
use alloc::vec::Vec;
use atoll_abi::{
    Error, IMPORT_MODULE, MAX_LOG_LEN, MAX_MESSAGE_LEN, MEMORY_EXPORT, RECEIVE_INFO_LEN,
};
use wasmi::{Caller, Extern, Linker};

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
    /// WASI `fd_read` on stdin: a console `Read` call whose answer is decoded
    /// into `buffer`, its length written at `count`.
    ReadStdin {
        handle: i32,
        message: Vec<u8>,
        buffer: GuestSlice,
        count: GuestSlice,
    },
}

/// The host error that suspends a service in a kernel call. Carries nothing:
/// the call itself is in [`HostState::pending`].
#[derive(Debug)]
pub(crate) struct Suspend;

impl core::fmt::Display for Suspend {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str("suspended in a kernel call")
    }
}

impl wasmi::errors::HostError for Suspend {}

pub(crate) type HostResult = Result<i32, wasmi::Error>;

/// Defines every host function of [`atoll_abi::HOST_FUNCTIONS`] in `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(IMPORT_MODULE, atoll_abi::LOG.name, log)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::LOOKUP.name, lookup)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::SEND.name, send)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::CALL.name, call)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::RECEIVE.name, receive)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::REPLY.name, reply)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::SLEEP.name, sleep)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::TIME.name, time)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::CONTROL.name, control)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::SWAP.name, swap)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::INFO.name, info)?;
    crate::driver::define(linker)
}

/// The caller's linear memory as bytes.
fn memory<'a>(caller: &'a Caller<'_, HostState>) -> Result<&'a [u8], Error> {
    let memory = caller
        .get_export(MEMORY_EXPORT)
        .and_then(Extern::into_memory)
        .ok_or(Error::NoMemory)?;
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
    let left = caller.get_fuel().unwrap_or(0);
    let _ = caller.set_fuel(left.saturating_sub(fuel));
    let state = caller.data_mut();
    state.fuel_debt = state.fuel_debt.saturating_add(fuel.saturating_sub(left));
}

/// Charges for copying `bytes` bytes.
fn charge_copy(caller: &mut Caller<'_, HostState>, bytes: usize) {
    charge(caller, bytes as u64 / BYTES_PER_FUEL);
}

/// `log(ptr, len) -> status`
fn log(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> i32 {
    match log_checked(&caller, GuestSlice::new(ptr, len)) {
        Ok(written) => {
            charge(&mut caller, written as u64 * FUEL_PER_CONSOLE_BYTE);
            0
        }
        Err(error) => error.code(),
    }
}

/// Writes the text; returns the bytes written to the console.
fn log_checked(caller: &Caller<'_, HostState>, text: GuestSlice) -> Result<usize, Error> {
    let bytes = text.read(memory(caller)?, MAX_LOG_LEN)?;
    let text = core::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8)?;
    Ok(console_lines(caller.data(), text))
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

/// `lookup(name_ptr, name_len) -> handle | error`
fn lookup(caller: Caller<'_, HostState>, ptr: i32, len: i32) -> i32 {
    let found = || -> Result<i32, Error> {
        let name = GuestSlice::new(ptr, len).read(memory(&caller)?, MAX_LOG_LEN)?;
        let index = caller
            .data()
            .endpoint_names
            .iter()
            .position(|known| known.as_bytes() == name)
            .ok_or(Error::NotFound)?;
        i32::try_from(index + 1).map_err(|_| Error::NotFound)
    };
    found().unwrap_or_else(Error::code)
}

/// `send(handle, ptr, len) -> status`
fn send(mut caller: Caller<'_, HostState>, handle: i32, ptr: i32, len: i32) -> HostResult {
    checked(|| {
        let message = copy_message(&caller, ptr, len)?;
        charge_copy(&mut caller, message.len());
        Ok(suspend(caller, Syscall::Send { handle, message }))
    })
}

/// `call(handle, ptr, len, reply_ptr, reply_cap) -> reply length | error`
fn call(
    mut caller: Caller<'_, HostState>,
    handle: i32,
    ptr: i32,
    len: i32,
    reply_ptr: i32,
    reply_cap: i32,
) -> HostResult {
    checked(|| {
        let message = copy_message(&caller, ptr, len)?;
        let reply = writable(&caller, reply_ptr, reply_cap)?;
        charge_copy(&mut caller, message.len());
        Ok(suspend(
            caller,
            Syscall::Call {
                handle,
                message,
                reply,
            },
        ))
    })
}

/// `receive(handle, ptr, cap, timeout_ns, info_ptr) -> length | error`
fn receive(
    caller: Caller<'_, HostState>,
    handle: i32,
    ptr: i32,
    cap: i32,
    timeout_ns: i64,
    info_ptr: i32,
) -> HostResult {
    checked(|| {
        let buffer = writable(&caller, ptr, cap)?;
        let info = writable(&caller, info_ptr, RECEIVE_INFO_LEN as i32)?;
        Ok(suspend(
            caller,
            Syscall::Receive {
                handle,
                buffer,
                info,
                timeout_ns,
            },
        ))
    })
}

/// `reply(token, ptr, len) -> status`
fn reply(mut caller: Caller<'_, HostState>, token: i32, ptr: i32, len: i32) -> HostResult {
    checked(|| {
        let message = copy_message(&caller, ptr, len)?;
        charge_copy(&mut caller, message.len());
        Ok(suspend(
            caller,
            Syscall::Reply {
                token: token.cast_unsigned(),
                message,
            },
        ))
    })
}

/// `sleep(ns) -> 0`
fn sleep(caller: Caller<'_, HostState>, ns: i64) -> HostResult {
    let ns = u64::try_from(ns).unwrap_or(0);
    suspend(caller, Syscall::Sleep { ns })
}

/// `time() -> ns`
fn time(caller: Caller<'_, HostState>) -> i64 {
    i64::try_from(caller.data().platform.now_ns()).unwrap_or(i64::MAX)
}

/// A service name from the caller's memory.
fn read_name(
    caller: &Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<alloc::string::String, Error> {
    let name = GuestSlice::new(ptr, len).read(memory(caller)?, MAX_LOG_LEN)?;
    let name = core::str::from_utf8(name).map_err(|_| Error::InvalidUtf8)?;
    Ok(alloc::string::String::from(name))
}

/// `control(op, name_ptr, name_len) -> status`
fn control(caller: Caller<'_, HostState>, op: i32, ptr: i32, len: i32) -> HostResult {
    checked(|| {
        let name = read_name(&caller, ptr, len)?;
        Ok(suspend(caller, Syscall::Control { op, name }))
    })
}

/// `swap(name_ptr, name_len, module_ptr, module_len) -> status`
fn swap(
    caller: Caller<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    module_ptr: i32,
    module_len: i32,
) -> HostResult {
    checked(|| {
        let name = read_name(&caller, name_ptr, name_len)?;
        let module = GuestSlice::new(module_ptr, module_len);
        // Only checked here; the kernel copies it once it has checked the
        // caller's right to swap, and charges for the copy.
        module.read(memory(&caller)?, atoll_abi::MAX_MODULE_LEN)?;
        Ok(suspend(caller, Syscall::Swap { name, module }))
    })
}

/// `info(kind, index, ptr, cap) -> length | error`
fn info(caller: Caller<'_, HostState>, kind: i32, index: i32, ptr: i32, cap: i32) -> HostResult {
    checked(|| {
        let buffer = writable(&caller, ptr, cap)?;
        Ok(suspend(
            caller,
            Syscall::Info {
                kind,
                index,
                buffer,
            },
        ))
    })
}
