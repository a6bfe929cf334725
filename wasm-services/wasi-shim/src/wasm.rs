//! The shim as a Wasm module: its exports, one per function of
//! `atoll_abi::wasi::FUNCTIONS` with that name and Wasm signature, and the
//! [`Kernel`] and [`Memory`] the logic runs on here: the SDK's calls and the
//! kernel's `atoll-shim` functions (`atoll_abi::wasi::SHIM_FUNCTIONS`).
//!
//! What is here: the only unsafe code of the crate (the imports and the
//! exports' `no_mangle`), and the program's state, made at its first WASI
//! call from the kernel's `startup` record (through the SDK). The module has no entry point:
//! the program's `_start` runs, and calls in here.
//!
//! What is not here: any WASI behaviour (the other modules).
#![allow(unsafe_code, reason = "the kernel's imports and the WASI exports")]

use crate::{Kernel, Memory, Shim};
use atoll_abi::Error;
use atoll_abi::wasi::errno;
use atoll_sdk::Endpoint;
use core::cell::RefCell;

// SAFETY: the kernel's `atoll-shim` functions with the signatures of
// `atoll_abi::wasi::SHIM_FUNCTIONS`; the kernel checks every pointer and
// length against the memory it names (the shim's or the program's), so a
// wrong argument is an error code, never a stray write.
#[link(wasm_import_module = "atoll-shim")]
unsafe extern "C" {
    #[link_name = "program_read"]
    fn shim_program_read(program_ptr: u32, len: usize, into: *mut u8) -> i32;
    #[link_name = "program_write"]
    fn shim_program_write(program_ptr: u32, from: *const u8, len: usize) -> i32;
    #[link_name = "print"]
    fn shim_print(stream: i32, ptr: *const u8, len: usize) -> i32;
    #[link_name = "stdin_read"]
    fn shim_stdin_read(ptr: *mut u8, len: usize) -> i32;
    #[link_name = "exit"]
    fn shim_exit(status: i32);
}

/// The kernel, through the SDK and the shim's own functions.
struct Atoll;

impl Kernel for Atoll {
    fn call(&mut self, handle: i32, request: &[u8], reply: &mut [u8]) -> Result<usize, Error> {
        Endpoint::from_handle(handle)
            .call(request, reply)
            .map(<[u8]>::len)
    }

    fn time(&mut self) -> u64 {
        atoll_sdk::time()
    }

    fn sleep(&mut self, ns: u64) {
        atoll_sdk::sleep(ns);
    }

    fn log(&mut self, text: &str) {
        atoll_sdk::log(text);
    }

    fn print(&mut self, stream: i32, bytes: &[u8]) {
        // SAFETY: `bytes` is a live buffer the kernel only reads.
        let _ = unsafe { shim_print(stream, bytes.as_ptr(), bytes.len()) };
    }

    fn stdin_read(&mut self, into: &mut [u8]) -> usize {
        // SAFETY: the kernel writes at most `into.len()` bytes into `into`.
        let read = unsafe { shim_stdin_read(into.as_mut_ptr(), into.len()) };
        usize::try_from(read).map_or(0, |read| read.min(into.len()))
    }

    fn lookup(&mut self, name: &str) -> Option<i32> {
        Endpoint::lookup(name).ok().map(Endpoint::handle)
    }
}

/// The program's memory, through `program_read` and `program_write`.
struct Program;

impl Memory for Program {
    fn read(&self, ptr: u32, into: &mut [u8]) -> crate::Errno<()> {
        // SAFETY: the kernel writes exactly `into.len()` bytes into `into`,
        // or nothing.
        match unsafe { shim_program_read(ptr, into.len(), into.as_mut_ptr()) } {
            0 => Ok(()),
            _ => Err(errno::FAULT),
        }
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> crate::Errno<()> {
        // SAFETY: the kernel only reads `bytes`.
        match unsafe { shim_program_write(ptr, bytes.as_ptr(), bytes.len()) } {
            0 => Ok(()),
            _ => Err(errno::FAULT),
        }
    }
}

/// The program's state, made at its first WASI call.
struct State(RefCell<Option<Shim<Atoll, Program>>>);

// SAFETY: wasm32-unknown-unknown has one thread; the exports are its only
// users and never run inside one another (the kernel's functions never call
// back into the shim).
unsafe impl Sync for State {}

static STATE: State = State(RefCell::new(None));

/// Runs `call` on the program's state.
fn with(call: impl FnOnce(&mut Shim<Atoll, Program>) -> i32) -> i32 {
    let Ok(mut state) = STATE.0.try_borrow_mut() else {
        return errno::IO;
    };
    let shim = state.get_or_insert_with(|| Shim::new(atoll_sdk::startup(), Atoll, Program));
    call(shim)
}

/// Exports of implemented functions: each hands its arguments to the
/// [`Shim`] method of the same name.
macro_rules! implemented {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) -> i32 {
            with(|shim| shim.$name($($arg),*))
        }
    )*};
}

implemented! {
    args_get(argv: i32, buffer: i32);
    args_sizes_get(count: i32, size: i32);
    environ_get(environ: i32, buffer: i32);
    environ_sizes_get(count: i32, size: i32);
    clock_res_get(id: i32, resolution: i32);
    clock_time_get(id: i32, precision: i64, time: i32);
    fd_close(fd: i32);
    fd_datasync(fd: i32);
    fd_fdstat_get(fd: i32, stat: i32);
    fd_fdstat_set_flags(fd: i32, flags: i32);
    fd_filestat_get(fd: i32, out: i32);
    fd_filestat_set_size(fd: i32, size: i64);
    fd_pread(fd: i32, iovs: i32, count: i32, offset: i64, out: i32);
    fd_prestat_get(fd: i32, out: i32);
    fd_prestat_dir_name(fd: i32, path: i32, len: i32);
    fd_pwrite(fd: i32, iovs: i32, count: i32, offset: i64, out: i32);
    fd_read(fd: i32, iovs: i32, count: i32, out: i32);
    fd_readdir(fd: i32, buffer: i32, len: i32, cookie: i64, out: i32);
    fd_renumber(from: i32, to: i32);
    fd_seek(fd: i32, offset: i64, whence: i32, out: i32);
    fd_sync(fd: i32);
    fd_tell(fd: i32, out: i32);
    fd_write(fd: i32, iovs: i32, count: i32, out: i32);
    path_create_directory(fd: i32, path: i32, len: i32);
    path_filestat_get(fd: i32, flags: i32, path: i32, len: i32, out: i32);
    path_open(
        fd: i32,
        dirflags: i32,
        path: i32,
        len: i32,
        oflags: i32,
        rights_base: i64,
        rights_inheriting: i64,
        fdflags: i32,
        out: i32
    );
    path_remove_directory(fd: i32, path: i32, len: i32);
    path_rename(fd: i32, old: i32, old_len: i32, new_fd: i32, new: i32, new_len: i32);
    path_unlink_file(fd: i32, path: i32, len: i32);
    poll_oneoff(subscriptions: i32, events: i32, count: i32, event_count: i32);
    sched_yield();
    random_get(buffer: i32, len: i32);
    sock_accept(fd: i32, flags: i32, out: i32);
    sock_recv(fd: i32, iovs: i32, count: i32, flags: i32, out: i32, out_flags: i32);
    sock_send(fd: i32, iovs: i32, count: i32, flags: i32, out: i32);
    sock_shutdown(fd: i32, how: i32);
}

/// Exports of stubs: `ENOSYS`, or `EBADF` for a descriptor argument (the
/// one named before `;` in the list) that is not stdio and not open.
macro_rules! stubs {
    ($($name:ident($($arg:ident: $ty:ty),*) $(fd $fd:ident)?;)*) => {$(
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) -> i32 {
            $(let _ = $arg;)*
            let fd: Option<i32> = None $(.or(Some($fd)))?;
            with(|shim| shim.stub(stringify!($name), fd))
        }
    )*};
}

stubs! {
    fd_advise(fd: i32, offset: i64, len: i64, advice: i32) fd fd;
    fd_allocate(fd: i32, offset: i64, len: i64) fd fd;
    fd_fdstat_set_rights(fd: i32, base: i64, inheriting: i64) fd fd;
    fd_filestat_set_times(fd: i32, access: i64, modify: i64, flags: i32) fd fd;
    path_filestat_set_times(
        fd: i32,
        flags: i32,
        path: i32,
        len: i32,
        access: i64,
        modify: i64,
        fst_flags: i32
    ) fd fd;
    path_link(
        fd: i32,
        flags: i32,
        old: i32,
        old_len: i32,
        new_fd: i32,
        new: i32,
        new_len: i32
    ) fd fd;
    path_readlink(fd: i32, path: i32, len: i32, buffer: i32, buffer_len: i32, out: i32) fd fd;
    path_symlink(old: i32, old_len: i32, fd: i32, new: i32, new_len: i32) fd fd;
    proc_raise(signal: i32);
}

/// `proc_exit`: ends the service with `status` (the kernel's `exit` does
/// not return).
#[unsafe(no_mangle)]
pub extern "C" fn proc_exit(status: i32) {
    // SAFETY: `exit` takes a plain value and ends the service.
    unsafe { shim_exit(status) };
    core::arch::wasm32::unreachable()
}
