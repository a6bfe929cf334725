//! The Atoll host functions (`atoll::*`): logging, names, messages, time,
//! supervision, `info` and `startup`. Each is a thin adapter over [`super`]'s helpers.

use super::{
    FUEL_PER_CONSOLE_BYTE, HostResult, HostState, InPlace, Syscall, call_in_place, charge,
    charge_copy, checked, console_lines, copy_message, guest_memory, memory, receive_timeout_after,
    suspend, with_kernel, writable,
};
use crate::guest::GuestSlice;
use atoll_abi::MAX_MESSAGE_LEN;
use atoll_abi::{Error, IMPORT_MODULE, MAX_LOG_LEN, RECEIVE_INFO_LEN};
use wasmi::{Caller, Linker};

/// Defines every host function of [`atoll_abi::HOST_FUNCTIONS`] in `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(IMPORT_MODULE, atoll_abi::LOG.name, log)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::LOOKUP.name, lookup)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::SEND.name, send)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::CALL.name, call)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::RECEIVE.name, receive)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::REPLY.name, reply)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::REPLY_RECEIVE.name, reply_receive)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::SLEEP.name, sleep)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::TIME.name, time)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::CONTROL.name, control)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::SWAP.name, swap)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::INFO.name, info)?;
    linker.func_wrap(IMPORT_MODULE, atoll_abi::STARTUP.name, startup)?;
    Ok(())
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
        // Copied by the kernel straight from the sender's memory if it is
        // reachable (into a spare buffer when it has one), else here, into
        // the Syscall.
        let sent = {
            let message = GuestSlice::new(ptr, len).read(memory(&caller)?, MAX_MESSAGE_LEN)?;
            with_kernel(caller.data(), |kernel, id| {
                kernel.fast_send(id, handle, message)
            })
        };
        if let Some(result) = sent {
            charge_copy(&mut caller, len.max(0) as usize);
            return Ok(Ok(result));
        }
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
        let reply = writable(&caller, reply_ptr, reply_cap)?;
        let message = GuestSlice::new(ptr, len);
        // Both checked now: the kernel cannot fail them later, in place.
        message.read(memory(&caller)?, MAX_MESSAGE_LEN)?;
        // Copied by the kernel straight from the caller's memory if it takes
        // the call in place (and the reply written straight into it), else
        // here, into the Syscall.
        let in_place = {
            let memory = guest_memory(&caller).ok_or(Error::NoMemory)?;
            let (bytes, state) = memory.data_and_store_mut(&mut caller);
            call_in_place(state, handle, bytes, (message, reply))
        };
        charge_copy(&mut caller, len.max(0) as usize);
        let message = match in_place {
            InPlace::NotTaken => copy_message(&caller, ptr, len)?,
            InPlace::Answered(value) => return Ok(Ok(value)),
            InPlace::Waiting => return Ok(suspend(caller, Syscall::AwaitReply)),
        };
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
    mut caller: Caller<'_, HostState>,
    handle: i32,
    ptr: i32,
    cap: i32,
    timeout_ns: i64,
    info_ptr: i32,
) -> HostResult {
    checked(|| {
        let buffer = GuestSlice::new(ptr, cap);
        let info = GuestSlice::new(info_ptr, RECEIVE_INFO_LEN as i32);
        let memory = crate::host::guest_memory(&caller).ok_or(Error::NoMemory)?;
        let (bytes, state) = memory.data_and_store_mut(&mut caller);
        // Both lie in its memory now (writable, as `writable` checks, with
        // the memory resolved once), so they still will when a message
        // comes: memory never shrinks.
        buffer.read(bytes, usize::MAX)?;
        info.read(bytes, usize::MAX)?;
        let received = with_kernel(state, |kernel, id| {
            kernel.fast_receive(id, handle, bytes, (buffer, info), timeout_ns)
        });
        if let Some(Some(result)) = received {
            return Ok(Ok(result));
        }
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
        // Written straight from the replier's memory into the caller's.
        let replied = {
            let message = GuestSlice::new(ptr, len).read(memory(&caller)?, MAX_MESSAGE_LEN)?;
            with_kernel(caller.data(), |kernel, id| {
                kernel.fast_reply(id, token.cast_unsigned(), message)
            })
        };
        if let Some(result) = replied {
            charge_copy(&mut caller, len.max(0) as usize);
            return Ok(Ok(result));
        }
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

/// `reply_receive(token, reply_ptr, reply_len, status_ptr, handle, ptr, cap,
/// timeout_ns, info_ptr) -> length | error`: `reply` (none for token 0),
/// its outcome written at `status_ptr`, then `receive`, in one kernel call.
#[allow(clippy::too_many_arguments)]
fn reply_receive(
    mut caller: Caller<'_, HostState>,
    token: i32,
    reply_ptr: i32,
    reply_len: i32,
    status_ptr: i32,
    handle: i32,
    ptr: i32,
    cap: i32,
    timeout_ns: i64,
    info_ptr: i32,
) -> HostResult {
    checked(|| {
        let status = GuestSlice::new(status_ptr, 4);
        let message = GuestSlice::new(reply_ptr, reply_len);
        let buffer = GuestSlice::new(ptr, cap);
        let info = GuestSlice::new(info_ptr, RECEIVE_INFO_LEN as i32);
        let token = token.cast_unsigned();
        let memory = guest_memory(&caller).ok_or(Error::NoMemory)?;
        let (bytes, state) = memory.data_and_store_mut(&mut caller);
        // All three are checked before either half: the receive may park
        // the service on its buffers, which must lie in its memory (and
        // memory never shrinks).
        for slice in [status, buffer, info] {
            slice.read(bytes, usize::MAX)?;
        }
        // The reply's own errors are its outcome, not the call's.
        let unsent = if token == 0 {
            Some(0)
        } else {
            message.read(bytes, MAX_MESSAGE_LEN).err().map(Error::code)
        };
        // Both halves in one kernel entry when the kernel can take them.
        let done = with_kernel(state, |kernel, id| {
            let replied = unsent.unwrap_or_else(|| match message.read(bytes, MAX_MESSAGE_LEN) {
                Ok(message) => kernel.fast_reply(id, token, message),
                Err(error) => error.code(),
            });
            // Checked above.
            let _ = status.put(bytes, &replied.to_le_bytes());
            let timeout_ns = receive_timeout_after(replied, timeout_ns);
            kernel.fast_receive(id, handle, bytes, (buffer, info), timeout_ns)
        });
        // After the kernel's own receive (`done`), never with a timeout of 0
        // from `receive_timeout_after` (such a receive completes in place);
        // the slow receive below handles 0 as `receive` does.
        let receive = |timeout_ns| Syscall::Receive {
            handle,
            buffer,
            info,
            timeout_ns,
        };
        match (done, unsent) {
            (Some(received), _) => {
                if unsent.is_none() {
                    charge_copy(&mut caller, reply_len.max(0) as usize);
                }
                Ok(received.map_or_else(|| suspend(caller, receive(timeout_ns)), Ok))
            }
            // The kernel is busy; nothing to reply.
            (None, Some(replied)) => {
                status.put(bytes, &replied.to_le_bytes())?;
                let timeout_ns = receive_timeout_after(replied, timeout_ns);
                Ok(suspend(caller, receive(timeout_ns)))
            }
            // The kernel is busy: both halves go the slow way, together.
            (None, None) => {
                let message = copy_message(&caller, reply_ptr, reply_len)?;
                charge_copy(&mut caller, message.len());
                Ok(suspend(
                    caller,
                    Syscall::ReplyReceive {
                        token,
                        message,
                        status,
                        handle,
                        buffer,
                        info,
                        timeout_ns,
                    },
                ))
            }
        }
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

/// `startup(ptr, len) -> length | error`: the service's start-up record.
fn startup(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> i32 {
    let record = alloc::sync::Arc::clone(&caller.data().startup);
    let Ok(size) = i32::try_from(record.len()) else {
        return Error::InvalidArgument.code();
    };
    if len < size {
        return size;
    }
    let written = (|| {
        let memory = super::guest_memory(&caller).ok_or(Error::NoMemory)?;
        GuestSlice::new(ptr, size).put(memory.data_mut(&mut caller), &record)
    })();
    charge_copy(&mut caller, record.len());
    written.map_or_else(Error::code, |()| size)
}
