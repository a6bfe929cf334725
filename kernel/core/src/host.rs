//! The host functions of the ABI, as wasmi sees them.
//!
//! Each function is a thin adapter: it fetches the caller's memory, checks its
//! arguments through [`crate::guest`], does its work and returns 0 or a negative
//! [`atoll_abi::Error`] code. [`define`] puts them all into a linker; a module whose
//! imports do not match these exactly fails to instantiate.

use crate::guest::GuestSlice;
use crate::service::HostState;
use alloc::string::String;
use atoll_abi::{Error, IMPORT_MODULE, MAX_LOG_LEN, MEMORY_EXPORT};
use wasmi::{Caller, Extern, Linker};

/// Defines every host function of [`atoll_abi::HOST_FUNCTIONS`] in `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(IMPORT_MODULE, atoll_abi::LOG.name, log)?;
    Ok(())
}

/// The result of a host function as the Wasm `i32` it returns.
fn status(result: Result<(), Error>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(error) => error.code(),
    }
}

/// `log(ptr, len) -> status`
fn log(caller: Caller<'_, HostState>, ptr: i32, len: i32) -> i32 {
    status(log_checked(&caller, GuestSlice::new(ptr, len)))
}

fn log_checked(caller: &Caller<'_, HostState>, text: GuestSlice) -> Result<(), Error> {
    let memory = caller
        .get_export(MEMORY_EXPORT)
        .and_then(Extern::into_memory)
        .ok_or(Error::NoMemory)?;
    let bytes = text.read(memory.data(caller), MAX_LOG_LEN)?;
    let text = core::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8)?;
    let state = caller.data();
    let mut line = String::with_capacity(state.name.len() + text.len() + 4);
    line.push('[');
    line.push_str(&state.name);
    line.push_str("] ");
    line.push_str(text.trim_end_matches('\n'));
    line.push('\n');
    state.platform.console_write(&line);
    Ok(())
}
