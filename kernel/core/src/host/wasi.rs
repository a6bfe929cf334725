//! WASI preview1, the subset a console program needs, as host functions.
//!
//! What is here: `fd_write` to the console (stdout and stderr, each line with
//! the service's name), `fd_read` on stdin (from the console service when the
//! service uses its endpoint, else empty), `proc_exit` with its
//! status reported, the clocks, `random_get`, `args_*`/`environ_*` from
//! `system.toml`, `sched_yield`, `poll_oneoff` for clock subscriptions, and
//! the descriptor queries a libc makes at start-up. Every other preview1
//! function is a stub returning an errno (table in `atoll_abi::wasi`) that the
//! kernel logs once per service and function.
//!
//! What is not here: files and preopened directories (`wasi/files.rs`),
//! sockets (`wasi/sockets.rs`); they own descriptors 3 and up, and socket
//! subscriptions of `poll_oneoff` go to the latter. Pointers are checked through
//! [`GuestSlice`] like every other host function's; a bad one is `EFAULT`.

pub(crate) mod files;
pub(crate) mod sockets;

use super::{
    FUEL_PER_CONSOLE_BYTE, HostResult, HostState, Syscall, charge, console_lines, suspend,
};
use crate::guest::GuestSlice;
use crate::ipc::Answer;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use atoll_abi::ValueType;
use atoll_abi::console;
use atoll_abi::wasi::{FUNCTIONS, IMPORT_MODULE, Support, errno};
use wasmi::{Caller, FuncType, Linker, Val, ValType};

/// The most bytes one `fd_write` takes (a shorter write is legal; libcs loop).
const MAX_WRITE: usize = 4096;
/// The most `iovec`s or subscriptions one call may pass.
const MAX_VECTORS: usize = 1024;

/// Clock ids of preview1.
const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;

/// `filetype::character_device`.
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
/// Rights: `fd_read` (bit 1), `fd_write` (bit 6), `poll_fd_readwrite` (bit 27).
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_POLL: u64 = 1 << 27;

/// Defines the WASI functions in `linker`: the implemented ones, and a stub for
/// every other function of preview1.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    for (index, function) in FUNCTIONS.iter().enumerate() {
        let Support::Stub { fd_param } = function.support else {
            continue;
        };
        let ty = FuncType::new(
            function.params.iter().map(|ty| value_type(*ty)),
            function.results.iter().map(|ty| value_type(*ty)),
        );
        linker.func_new(
            IMPORT_MODULE,
            function.name,
            ty,
            move |mut caller: Caller<'_, HostState>, params: &[Val], results: &mut [Val]| {
                let errno = match fd_param.and_then(|position| params.get(position)) {
                    Some(Val::I32(fd)) if !(0..=2).contains(fd) => errno::BADF,
                    _ => errno::NOSYS,
                };
                warn_once(&mut caller, index, errno);
                if let Some(result) = results.first_mut() {
                    *result = Val::I32(errno);
                }
                Ok(())
            },
        )?;
    }
    linker.func_wrap(IMPORT_MODULE, "args_get", args_get)?;
    linker.func_wrap(IMPORT_MODULE, "args_sizes_get", args_sizes_get)?;
    linker.func_wrap(IMPORT_MODULE, "environ_get", environ_get)?;
    linker.func_wrap(IMPORT_MODULE, "environ_sizes_get", environ_sizes_get)?;
    linker.func_wrap(IMPORT_MODULE, "clock_res_get", clock_res_get)?;
    linker.func_wrap(IMPORT_MODULE, "clock_time_get", clock_time_get)?;
    linker.func_wrap(IMPORT_MODULE, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(IMPORT_MODULE, "fd_prestat_get", fd_prestat_get)?;
    linker.func_wrap(IMPORT_MODULE, "fd_prestat_dir_name", fd_prestat_dir_name)?;
    linker.func_wrap(IMPORT_MODULE, "fd_read", fd_read)?;
    linker.func_wrap(IMPORT_MODULE, "fd_write", fd_write)?;
    linker.func_wrap(IMPORT_MODULE, "poll_oneoff", poll_oneoff)?;
    linker.func_wrap(IMPORT_MODULE, "proc_exit", proc_exit)?;
    linker.func_wrap(IMPORT_MODULE, "sched_yield", sched_yield)?;
    linker.func_wrap(IMPORT_MODULE, "random_get", random_get)?;
    files::define(linker)?;
    Ok(())
}

fn value_type(ty: ValueType) -> ValType {
    match ty {
        ValueType::I32 => ValType::I32,
        ValueType::I64 => ValType::I64,
    }
}

/// Logs, once per service and function, that a stub was called.
fn warn_once(caller: &mut Caller<'_, HostState>, index: usize, errno: i32) {
    let bit = 1u64 << (index % 64);
    let state = caller.data_mut();
    if state.wasi_warned & bit != 0 {
        return;
    }
    state.wasi_warned |= bit;
    let name = FUNCTIONS.get(index).map_or("?", |function| function.name);
    let errno = if errno == errno::BADF {
        "EBADF"
    } else {
        "ENOSYS"
    };
    state.platform.console_write(&format!(
        "atoll: {}: WASI {name} is not supported, returned {errno}\n",
        state.name
    ));
}

/// A WASI call's outcome: `Err` carries the errno.
type Errno<T> = Result<T, i32>;

fn errno_of(result: Errno<()>) -> i32 {
    result.err().unwrap_or(errno::SUCCESS)
}

/// The caller's memory, writable.
fn memory_mut<'a>(caller: &'a mut Caller<'_, HostState>) -> Errno<&'a mut [u8]> {
    let memory = crate::host::guest_memory(caller).ok_or(errno::FAULT)?;
    Ok(memory.data_mut(caller))
}

/// `len` bytes of `memory` at `ptr`, checked.
fn bytes(memory: &[u8], ptr: u32, len: usize) -> Errno<&[u8]> {
    let len = i32::try_from(len).map_err(|_| errno::FAULT)?;
    GuestSlice::new(ptr.cast_signed(), len)
        .read(memory, usize::MAX)
        .map_err(|_| errno::FAULT)
}

fn bytes_mut(memory: &mut [u8], ptr: u32, len: usize) -> Errno<&mut [u8]> {
    let len = i32::try_from(len).map_err(|_| errno::FAULT)?;
    GuestSlice::new(ptr.cast_signed(), len)
        .write(memory, usize::MAX)
        .map_err(|_| errno::FAULT)
}

fn store(memory: &mut [u8], ptr: u32, value: &[u8]) -> Errno<()> {
    bytes_mut(memory, ptr, value.len())?.copy_from_slice(value);
    Ok(())
}

fn load_u32(memory: &[u8], ptr: u32) -> Errno<u32> {
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes(memory, ptr, 4)?);
    Ok(u32::from_le_bytes(word))
}

fn load_u64(memory: &[u8], ptr: u32) -> Errno<u64> {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes(memory, ptr, 8)?);
    Ok(u64::from_le_bytes(word))
}

/// Entry `index` of an `iovec` array at `iovs`: `(buffer, length)`.
fn iovec(memory: &[u8], iovs: i32, index: usize) -> Errno<(u32, u32)> {
    let entry = at(iovs, index * 8)?;
    Ok((
        load_u32(memory, entry)?,
        load_u32(memory, at(entry.cast_signed(), 4)?)?,
    ))
}

/// Address `base + offset`, or `EFAULT` past 4 GiB.
fn at(base: i32, offset: usize) -> Errno<u32> {
    u32::try_from(offset)
        .ok()
        .and_then(|offset| base.cast_unsigned().checked_add(offset))
        .ok_or(errno::FAULT)
}

/// Writes a NUL-terminated string list as `*_get` does: pointers at `list`,
/// strings at `buffer`.
fn write_strings(
    caller: &mut Caller<'_, HostState>,
    strings: &[String],
    list: i32,
    buffer: i32,
) -> Errno<()> {
    let strings = strings.to_vec();
    let memory = memory_mut(caller)?;
    let mut offset = 0usize;
    for (index, string) in strings.iter().enumerate() {
        let address = at(buffer, offset)?;
        store(memory, at(list, index * 4)?, &address.to_le_bytes())?;
        store(memory, address, string.as_bytes())?;
        store(memory, at(buffer, offset + string.len())?, &[0])?;
        offset += string.len() + 1;
    }
    Ok(())
}

/// Writes the count and total size (with NULs) of a string list.
fn write_sizes(
    caller: &mut Caller<'_, HostState>,
    strings: &[String],
    count_ptr: i32,
    size_ptr: i32,
) -> Errno<()> {
    let count = u32::try_from(strings.len()).map_err(|_| errno::TOO_BIG)?;
    let size: usize = strings.iter().map(|string| string.len() + 1).sum();
    let size = u32::try_from(size).map_err(|_| errno::TOO_BIG)?;
    let memory = memory_mut(caller)?;
    store(memory, count_ptr.cast_unsigned(), &count.to_le_bytes())?;
    store(memory, size_ptr.cast_unsigned(), &size.to_le_bytes())
}

fn args_get(mut caller: Caller<'_, HostState>, argv: i32, buffer: i32) -> i32 {
    let args = caller.data().args.clone();
    errno_of(write_strings(&mut caller, &args, argv, buffer))
}

fn args_sizes_get(mut caller: Caller<'_, HostState>, count: i32, size: i32) -> i32 {
    let args = caller.data().args.clone();
    errno_of(write_sizes(&mut caller, &args, count, size))
}

fn environ_get(mut caller: Caller<'_, HostState>, environ: i32, buffer: i32) -> i32 {
    let env = caller.data().env.clone();
    errno_of(write_strings(&mut caller, &env, environ, buffer))
}

fn environ_sizes_get(mut caller: Caller<'_, HostState>, count: i32, size: i32) -> i32 {
    let env = caller.data().env.clone();
    errno_of(write_sizes(&mut caller, &env, count, size))
}

/// The time on clock `id` in nanoseconds.
fn clock_now(state: &HostState, id: i32) -> Errno<u64> {
    let now = state.platform.now_ns();
    match id {
        CLOCK_MONOTONIC => Ok(now),
        CLOCK_REALTIME => Ok(state.platform.boot_wall_clock_ns().saturating_add(now)),
        // Process and thread CPU time: not kept per service.
        2 | 3 => Err(errno::NOTSUP),
        _ => Err(errno::INVAL),
    }
}

fn clock_res_get(mut caller: Caller<'_, HostState>, id: i32, resolution: i32) -> i32 {
    errno_of((|| {
        clock_now(caller.data(), id)?;
        let memory = memory_mut(&mut caller)?;
        store(memory, resolution.cast_unsigned(), &1u64.to_le_bytes())
    })())
}

fn clock_time_get(mut caller: Caller<'_, HostState>, id: i32, _precision: i64, time: i32) -> i32 {
    errno_of((|| {
        let now = clock_now(caller.data(), id)?;
        let memory = memory_mut(&mut caller)?;
        store(memory, time.cast_unsigned(), &now.to_le_bytes())
    })())
}

fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, stat: i32) -> i32 {
    let rights = match fd {
        0 => RIGHT_FD_READ | RIGHT_POLL,
        1 | 2 => RIGHT_FD_WRITE | RIGHT_POLL,
        _ => return files::fd_fdstat_get(caller, fd, stat),
    };
    let mut record = [0u8; 24];
    record[0] = FILETYPE_CHARACTER_DEVICE;
    record[8..16].copy_from_slice(&rights.to_le_bytes());
    errno_of(
        memory_mut(&mut caller).and_then(|memory| store(memory, stat.cast_unsigned(), &record)),
    )
}

/// The preopened directories (`files.rs`); any other descriptor answers
/// `EBADF`, which ends a libc's scan for them.
fn fd_prestat_get(caller: Caller<'_, HostState>, fd: i32, prestat: i32) -> i32 {
    files::fd_prestat_get(caller, fd, prestat)
}

fn fd_prestat_dir_name(caller: Caller<'_, HostState>, fd: i32, path: i32, len: i32) -> i32 {
    files::fd_prestat_dir_name(caller, fd, path, len)
}

/// stdin: read from the console service when the service `uses` its
/// endpoint (the first non-empty `iovec` is filled; a short read is what a
/// terminal gives), otherwise empty (end of file).
fn fd_read(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    count: i32,
    read: i32,
) -> HostResult {
    if fd >= files::FIRST {
        return files::fd_read(caller, fd, iovs, count, read);
    }
    if fd != 0 {
        return Ok(errno::BADF);
    }
    let console = caller
        .data()
        .endpoint_names
        .iter()
        .position(|name| name == console::ENDPOINT);
    let platform = alloc::sync::Arc::clone(&caller.data().platform);
    let plan = (|| -> Errno<Option<(i32, GuestSlice, GuestSlice)>> {
        let memory = memory_mut(&mut caller)?;
        let read_slice = GuestSlice::new(read, 4);
        read_slice.read(memory, 4).map_err(|_| errno::FAULT)?;
        let Some(console) = console else {
            // No console service: the platform's own stdin, if it has one
            // (the hosted core's), else end of file.
            let (base, len) = (0..count.cast_unsigned().min(MAX_VECTORS as u32))
                .map(|index| iovec(memory, iovs, index as usize))
                .find(|found| !matches!(found, Ok((_, 0))))
                .transpose()?
                .unwrap_or((0, 0));
            let input = if len == 0 {
                Vec::new()
            } else {
                platform.stdin_read(len as usize).unwrap_or_default()
            };
            let input = input.get(..input.len().min(len as usize)).unwrap_or(&[]);
            store(memory, base, input)?;
            let total = u32::try_from(input.len()).map_err(|_| errno::IO)?;
            store(memory, read.cast_unsigned(), &total.to_le_bytes())?;
            return Ok(None);
        };
        let count = usize::try_from(count.cast_unsigned()).map_err(|_| errno::INVAL)?;
        if count > MAX_VECTORS {
            return Err(errno::INVAL);
        }
        for index in 0..count {
            let (base, len) = iovec(memory, iovs, index)?;
            if len == 0 {
                continue;
            }
            let len = len.min(MAX_STDIN_READ);
            let buffer = GuestSlice::new(base.cast_signed(), len.cast_signed());
            buffer.read(memory, usize::MAX).map_err(|_| errno::FAULT)?;
            let handle = i32::try_from(console + 1).map_err(|_| errno::IO)?;
            return Ok(Some((handle, buffer, read_slice)));
        }
        // Nothing to fill: a read of 0 bytes.
        store(memory, read.cast_unsigned(), &0u32.to_le_bytes())?;
        Ok(None)
    })();
    match plan {
        Err(errno) => Ok(errno),
        Ok(None) => Ok(errno::SUCCESS),
        Ok(Some((handle, buffer, count))) => {
            let read = console::Request::Read {
                max: u32::try_from(buffer.len()).unwrap_or(MAX_STDIN_READ),
            };
            let Ok(message) = postcard::to_allocvec(&read) else {
                return Ok(errno::IO);
            };
            let answer = Answer::Stdin { buffer, count };
            suspend(
                caller,
                Syscall::Call {
                    handle,
                    message,
                    answer,
                },
            )
        }
    }
}

/// The most stdin bytes one `fd_read` asks the console for (its answer must
/// fit a message).
const MAX_STDIN_READ: u32 = 3072;

/// Puts the console's answer to a stdin read into the reader's memory: the
/// input bytes (a terminal's `\r` becomes `\n`) into `buffer`, their count
/// at `count`. Returns the WASI errno `fd_read` resumes with.
pub(crate) fn deliver_stdin(
    mut write: impl FnMut(GuestSlice, &[u8]) -> Result<(), atoll_abi::Error>,
    buffer: GuestSlice,
    count: GuestSlice,
    answer: &[u8],
) -> i32 {
    match postcard::from_bytes::<console::Response>(answer) {
        Ok(console::Response::Input(input)) => {
            let text: Vec<u8> = input
                .iter()
                .take(buffer.len())
                .map(|&byte| if byte == b'\r' { b'\n' } else { byte })
                .collect();
            let total = u32::try_from(text.len()).unwrap_or(0).to_le_bytes();
            if write(buffer, &text).is_err() || write(count, &total).is_err() {
                return errno::FAULT;
            }
            errno::SUCCESS
        }
        Ok(console::Response::Busy) => errno::AGAIN,
        _ => errno::IO,
    }
}

fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    count: i32,
    written: i32,
) -> HostResult {
    if fd >= files::FIRST {
        return files::fd_write(caller, fd, iovs, count, written);
    }
    if fd != 1 && fd != 2 {
        return Ok(errno::BADF);
    }
    let gathered = (|| -> Errno<Vec<u8>> {
        let count = usize::try_from(count.cast_unsigned()).map_err(|_| errno::INVAL)?;
        if count > MAX_VECTORS {
            return Err(errno::INVAL);
        }
        let memory = memory_mut(&mut caller)?;
        let mut gathered = Vec::new();
        for index in 0..count {
            let (base, len) = iovec(memory, iovs, index)?;
            let len = len as usize;
            let room = MAX_WRITE - gathered.len();
            gathered.extend_from_slice(bytes(memory, base, len.min(room))?);
            if gathered.len() == MAX_WRITE {
                break;
            }
        }
        let total = u32::try_from(gathered.len()).map_err(|_| errno::INVAL)?;
        store(memory, written.cast_unsigned(), &total.to_le_bytes())?;
        Ok(gathered)
    })();
    Ok(match gathered {
        Ok(bytes) => {
            let stream = if fd == 1 { 0 } else { 1 };
            let printed = buffer_output(caller.data_mut(), stream, &bytes);
            charge(&mut caller, printed as u64 * FUEL_PER_CONSOLE_BYTE);
            errno::SUCCESS
        }
        Err(errno) => errno,
    })
}

/// The longest partial line kept for a stream: a longer one is printed as
/// it stands.
const MAX_PARTIAL_LINE: usize = 4096;

/// Adds `bytes` to output stream `stream` (0 stdout, 1 stderr) of the
/// service and prints the lines it completes, whole: a program's line comes
/// out as one console line however many `fd_write`s made it. Returns the
/// bytes printed.
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
    for stream in 0..2 {
        let Some(buffer) = state.output.get_mut(stream) else {
            continue;
        };
        if buffer.is_empty() {
            continue;
        }
        let rest = core::mem::take(buffer);
        console_lines(state, &String::from_utf8_lossy(&rest));
    }
}

/// Subscription and event record sizes and tags.
const SUBSCRIPTION_LEN: usize = 48;
const EVENT_LEN: usize = 32;
const EVENT_CLOCK: u8 = 0;
const EVENT_FD_READ: u8 = 1;
const EVENT_FD_WRITE: u8 = 2;
/// `subclockflags::subscription_clock_abstime`.
const ABSTIME: u16 = 1;

/// One event to report.
struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
}

/// Writes `fired` to the event array at `events` and their number at `count`.
fn write_events(memory: &mut [u8], events: u32, count: u32, fired: &[Event]) -> Errno<()> {
    for (index, event) in fired.iter().enumerate() {
        let mut record = [0u8; EVENT_LEN];
        record[0..8].copy_from_slice(&event.userdata.to_le_bytes());
        record[8..10].copy_from_slice(&event.error.to_le_bytes());
        record[10] = event.kind;
        store(
            memory,
            at(events.cast_signed(), index * EVENT_LEN)?,
            &record,
        )?;
    }
    let total = u32::try_from(fired.len()).map_err(|_| errno::INVAL)?;
    store(memory, count, &total.to_le_bytes())
}

/// What `poll_oneoff` does: report events (after sleeping until the time
/// given), or ask the TCP/IP service about sockets.
enum Polled {
    Events(Vec<Event>, u64),
    Sockets(Vec<sockets::Subscription>, Vec<u64>, Option<u32>),
}

/// `poll_oneoff`: clock subscriptions sleep; descriptor subscriptions on
/// stdin/stdout/stderr and files are ready at once (stdin at end of file),
/// on sockets they wait in the TCP/IP service (`sockets.rs`) when nothing
/// else is ready, others fail with `EBADF` in their event.
fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    subscriptions: i32,
    events: i32,
    count: i32,
    event_count: i32,
) -> HostResult {
    let now = caller.data().platform.now_ns();
    // Realtime deadlines become monotonic ones by subtracting the wall-clock
    // time at boot.
    let boot_wall_clock = caller.data().platform.boot_wall_clock_ns();
    let plan = (|| -> Errno<Polled> {
        let count = count.cast_unsigned() as usize;
        if count == 0 || count > MAX_VECTORS {
            return Err(errno::INVAL);
        }
        let (memory, state) = files::split(&mut caller)?;
        let mut waiting = Vec::new();
        // Bounds of the whole output array, before anything is written.
        bytes(memory, events.cast_unsigned(), count * EVENT_LEN)?;
        let mut ready = Vec::new();
        let mut clocks = Vec::new();
        for index in 0..count {
            let base = at(subscriptions, index * SUBSCRIPTION_LEN)?;
            let record = bytes(memory, base, SUBSCRIPTION_LEN)?;
            let userdata = load_u64(record, 0)?;
            match record.get(8).copied() {
                Some(EVENT_CLOCK) => {
                    let id = load_u32(record, 16)?.cast_signed();
                    let timeout = load_u64(record, 24)?;
                    let flags = u16::from(record.get(40).copied().unwrap_or(0));
                    let deadline = if flags & ABSTIME != 0 {
                        let offset = if id == CLOCK_REALTIME {
                            boot_wall_clock
                        } else {
                            0
                        };
                        timeout.saturating_sub(offset)
                    } else {
                        now.saturating_add(timeout)
                    };
                    if id != CLOCK_REALTIME && id != CLOCK_MONOTONIC {
                        ready.push(Event {
                            userdata,
                            error: errno::INVAL as u16,
                            kind: EVENT_CLOCK,
                        });
                    } else {
                        clocks.push((deadline, userdata));
                    }
                }
                Some(kind @ (EVENT_FD_READ | EVENT_FD_WRITE)) => {
                    let fd = load_u32(record, 16)?.cast_signed();
                    let found = if fd >= files::FIRST {
                        sockets::readiness(&state.files, fd)
                    } else if (kind == EVENT_FD_READ && fd == 0)
                        || (kind == EVENT_FD_WRITE && (fd == 1 || fd == 2))
                    {
                        Ok(false)
                    } else {
                        Err(errno::BADF)
                    };
                    match found {
                        Ok(true) => waiting.push(sockets::Subscription {
                            userdata,
                            fd,
                            write: kind == EVENT_FD_WRITE,
                        }),
                        Ok(false) => ready.push(Event {
                            userdata,
                            error: 0,
                            kind,
                        }),
                        Err(code) => ready.push(Event {
                            userdata,
                            error: u16::try_from(code).unwrap_or(u16::MAX),
                            kind,
                        }),
                    }
                }
                _ => return Err(errno::INVAL),
            }
        }
        if !ready.is_empty() {
            // Clocks already expired are reported with the ready descriptors.
            ready.extend(clocks.iter().filter(|(deadline, _)| *deadline <= now).map(
                |(_, userdata)| Event {
                    userdata: *userdata,
                    error: 0,
                    kind: EVENT_CLOCK,
                },
            ));
            return Ok(Polled::Events(ready, now));
        }
        let soonest = clocks.iter().map(|(deadline, _)| *deadline).min();
        let earliest = soonest.unwrap_or(now);
        let fired = clocks
            .iter()
            .filter(|(deadline, _)| *deadline <= earliest)
            .map(|(_, userdata)| Event {
                userdata: *userdata,
                error: 0,
                kind: EVENT_CLOCK,
            })
            .collect::<Vec<_>>();
        if !waiting.is_empty() {
            // The clocks become the wait's timeout, in whole milliseconds
            // (rounded up).
            let timeout = soonest.map(|deadline| {
                let ns = deadline.saturating_sub(now);
                u32::try_from(ns.div_ceil(1_000_000)).unwrap_or(u32::MAX)
            });
            let userdata = fired.iter().map(|event| event.userdata).collect();
            return Ok(Polled::Sockets(waiting, userdata, timeout));
        }
        Ok(Polled::Events(fired, earliest))
    })();
    let (fired, until) = match plan {
        Ok(Polled::Events(fired, until)) => (fired, until),
        Ok(Polled::Sockets(waiting, clocks, timeout)) => {
            return files::run(caller, |files, _| {
                sockets::plan_poll(
                    files,
                    waiting,
                    clocks,
                    timeout,
                    events.cast_unsigned(),
                    event_count.cast_unsigned(),
                )
            });
        }
        Err(errno) => return Ok(errno),
    };
    // The events are written now; the service only sees them once it is
    // resumed, after the sleep.
    let written = memory_mut(&mut caller).and_then(|memory| {
        write_events(
            memory,
            events.cast_unsigned(),
            event_count.cast_unsigned(),
            &fired,
        )
    });
    if let Err(errno) = written {
        return Ok(errno);
    }
    if until <= now {
        return Ok(errno::SUCCESS);
    }
    // `sleep` resumes with 0, which is ESUCCESS.
    suspend(caller, Syscall::Sleep { ns: until - now })
}

/// Ends the service with `status`, through wasmi's exit trap.
fn proc_exit(_caller: Caller<'_, HostState>, status: i32) -> Result<(), wasmi::Error> {
    Err(wasmi::Error::i32_exit(status))
}

fn sched_yield(caller: Caller<'_, HostState>) -> HostResult {
    suspend(caller, Syscall::Sleep { ns: 0 })
}

/// Fills the buffer from the service's generator (xorshift, seeded from the
/// platform's entropy when the service loads). Not for cryptography.
fn random_get(mut caller: Caller<'_, HostState>, buffer: i32, len: i32) -> i32 {
    let len = len.cast_unsigned() as usize;
    // Paid before the work (in full: what the slice lacks is debt).
    charge(&mut caller, len as u64 / 8);
    let mut state = caller.data().random;
    let result = memory_mut(&mut caller).and_then(|memory| {
        let target = bytes_mut(memory, buffer.cast_unsigned(), len)?;
        for chunk in target.chunks_mut(8) {
            state = next_random(state);
            let word = state.to_le_bytes();
            chunk.copy_from_slice(word.get(..chunk.len()).unwrap_or(&[]));
        }
        Ok(())
    });
    caller.data_mut().random = state;
    errno_of(result)
}

/// xorshift64* step.
fn next_random(mut state: u64) -> u64 {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
