//! The WASI shim's kernel functions (module `atoll-shim`, linked for the shim
//! only): what a user-space WASI preview1 implementation cannot do with the
//! ordinary ABI (which includes `startup`, the program's description from
//! `system.toml`). WASI itself is not here: an unmodified WASI program's
//! `wasi_snapshot_preview1` imports are the exports of its own instance of
//! the shim (`wasm-services/wasi-shim`), which turns them into ordinary calls
//! to the file, TCP/IP and console services. The kernel adds only:
//!
//! - `program_read` / `program_write`: copies between the program's memory
//!   and the shim's, both checked like every guest slice;
//! - `print`: the program's stdout and stderr, printed a whole line at a time
//!   with the service's name, the unfinished line when the service ends;
//! - `stdin_read`: the platform's own stdin (the hosted core's);
//! - `exit`: `proc_exit`, as wasmi's exit trap, which carries the status.

use super::{FUEL_PER_CONSOLE_BYTE, HostState, charge, charge_copy, console_lines, memory};
use crate::guest::GuestSlice;
use alloc::string::String;
use alloc::vec::Vec;
use atoll_abi::Error;
use atoll_abi::wasi::{EXIT, PRINT, PROGRAM_READ, PROGRAM_WRITE, SHIM_IMPORT_MODULE, STDIN_READ};
use wasmi::{Caller, Linker};

/// Defines the shim's kernel functions in `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(SHIM_IMPORT_MODULE, PROGRAM_READ.name, program_read)?;
    linker.func_wrap(SHIM_IMPORT_MODULE, PROGRAM_WRITE.name, program_write)?;
    linker.func_wrap(SHIM_IMPORT_MODULE, PRINT.name, print)?;
    linker.func_wrap(SHIM_IMPORT_MODULE, STDIN_READ.name, stdin_read)?;
    linker.func_wrap(SHIM_IMPORT_MODULE, EXIT.name, exit)?;
    Ok(())
}

/// Bytes copied per step between the two memories (they belong to one store,
/// which lends out one memory's bytes at a time).
const STEP: usize = 1024;
/// The most bytes one `print` or `stdin_read` takes.
const MAX_CONSOLE: usize = atoll_abi::MAX_MESSAGE_LEN;
/// The longest partial line kept for a stream: a longer one is printed as
/// it stands.
const MAX_PARTIAL_LINE: usize = 4096;

/// Which way [`copy`] goes.
#[derive(Clone, Copy)]
enum Direction {
    FromProgram,
    ToProgram,
}

fn program_read(caller: Caller<'_, HostState>, program: i32, len: i32, shim: i32) -> i32 {
    copy(caller, Direction::FromProgram, program, shim, len)
}

fn program_write(caller: Caller<'_, HostState>, program: i32, shim: i32, len: i32) -> i32 {
    copy(caller, Direction::ToProgram, program, shim, len)
}

/// Copies `len` bytes between the program's memory at `program` and the
/// shim's at `shim`, after checking both ranges whole (nothing is written if
/// either is out of bounds).
fn copy(
    mut caller: Caller<'_, HostState>,
    direction: Direction,
    program: i32,
    shim: i32,
    len: i32,
) -> i32 {
    let result = (|| -> Result<usize, Error> {
        let program_memory = caller.data().program_memory.ok_or(Error::NoMemory)?;
        let shim_memory = super::guest_memory(&caller).ok_or(Error::NoMemory)?;
        let (program, shim) = (GuestSlice::new(program, len), GuestSlice::new(shim, len));
        program.read(program_memory.data(&caller), usize::MAX)?;
        shim.read(shim_memory.data(&caller), usize::MAX)?;
        let (from, to, source, target) = match direction {
            Direction::FromProgram => (program_memory, shim_memory, program, shim),
            Direction::ToProgram => (shim_memory, program_memory, shim, program),
        };
        let mut buffer = [0u8; STEP];
        let mut done = 0;
        while done < source.len() {
            let step = STEP.min(source.len() - done);
            let chunk = buffer.get_mut(..step).ok_or(Error::OutOfBounds)?;
            chunk.copy_from_slice(source.part(done, step).read(from.data(&caller), step)?);
            target
                .part(done, step)
                .put(to.data_mut(&mut caller), chunk)?;
            done += step;
        }
        Ok(source.len())
    })();
    match result {
        Ok(copied) => {
            charge_copy(&mut caller, copied);
            0
        }
        Err(error) => error.code(),
    }
}

fn print(mut caller: Caller<'_, HostState>, stream: i32, ptr: i32, len: i32) -> i32 {
    let Some(stream) = stream
        .checked_sub(1)
        .filter(|stream| (0..2).contains(stream))
    else {
        return Error::InvalidArgument.code();
    };
    let bytes = match memory(&caller)
        .and_then(|memory| GuestSlice::new(ptr, len).read(memory, MAX_CONSOLE))
    {
        Ok(bytes) => Vec::from(bytes),
        Err(error) => return error.code(),
    };
    let printed = buffer_output(caller.data_mut(), stream as usize, &bytes);
    charge(&mut caller, printed as u64 * FUEL_PER_CONSOLE_BYTE);
    0
}

/// Adds `bytes` to output stream `stream` (0 stdout, 1 stderr) of the
/// service and prints the lines it completes, whole: a program's line comes
/// out as one console line however many writes made it. Returns the bytes
/// printed.
fn buffer_output(state: &mut HostState, stream: usize, bytes: &[u8]) -> usize {
    let Some(buffer) = state.output.get_mut(stream) else {
        return 0;
    };
    buffer.extend_from_slice(bytes);
    let cut = match buffer.iter().rposition(|&byte| byte == b'\n') {
        Some(newline) => newline + 1,
        None if buffer.len() >= MAX_PARTIAL_LINE => buffer.len(),
        None => return 0,
    };
    let lines: Vec<u8> = buffer.drain(..cut).collect();
    console_lines(state, &String::from_utf8_lossy(&lines))
}

/// Prints what the service's stdout and stderr hold of an unfinished line
/// (when it ends).
pub(crate) fn flush_output(state: &mut HostState) {
    for rest in core::mem::take(&mut state.output) {
        if !rest.is_empty() {
            console_lines(state, &String::from_utf8_lossy(&rest));
        }
    }
}

fn stdin_read(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> i32 {
    let result = (|| -> Result<usize, Error> {
        let memory = super::guest_memory(&caller).ok_or(Error::NoMemory)?;
        let target = GuestSlice::new(ptr, len);
        target.read(memory.data(&caller), usize::MAX)?;
        let max = target.len().min(MAX_CONSOLE);
        if max == 0 {
            return Ok(0);
        }
        let input = caller.data().platform.stdin_read(max).unwrap_or_default();
        let input = input.get(..input.len().min(max)).unwrap_or(&[]);
        target.put(memory.data_mut(&mut caller), input)?;
        Ok(input.len())
    })();
    match result {
        Ok(read) => {
            charge_copy(&mut caller, read);
            read as i32
        }
        Err(error) => error.code(),
    }
}

fn exit(_caller: Caller<'_, HostState>, status: i32) -> Result<(), wasmi::Error> {
    Err(wasmi::Error::i32_exit(status))
}
