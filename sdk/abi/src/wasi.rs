//! The WASI preview1 subset: which `wasi_snapshot_preview1` functions exist,
//! with their Wasm signatures, and which the WASI shim implements; and the
//! kernel functions the shim has beyond the ABI ([`SHIM_FUNCTIONS`]).
//!
//! Unmodified `wasip1` programs (C with wasi-libc, Go with `GOOS=wasip1`, Rust
//! `wasm32-wasip1`) import functions from module [`IMPORT_MODULE`] instead of
//! Atoll's own (not beside them). The kernel binds those imports to the
//! exports of the same names of the WASI shim (`wasm-services/wasi-shim`),
//! which runs in the program's service. Every function of preview1 links:
//! the ones marked [`Support::Implemented`] do what WASI says; every other
//! one is a stub that returns an errno ([`Support::Stub`]) and makes the
//! shim log one line the first time each service calls it. image-builder
//! lists a module's stubbed imports as a warning. An import from any other
//! module is an error.
//!
//! What is not here: the behaviour (the shim) and the errno meanings beyond
//! the few the shim returns.

use crate::HostFunction;
use crate::ValueType::{self, I32, I64};

/// The Wasm import module of WASI preview1.
pub const IMPORT_MODULE: &str = "wasi_snapshot_preview1";

/// WASI errno values the shim returns (from the preview1 witx).
pub mod errno {
    /// No error.
    pub const SUCCESS: i32 = 0;
    /// Argument list too long.
    pub const TOO_BIG: i32 = 1;
    /// Bad file descriptor: the descriptor does not exist.
    pub const BADF: i32 = 8;
    /// Bad address: a pointer outside the caller's memory.
    pub const FAULT: i32 = 21;
    /// Invalid argument.
    pub const INVAL: i32 = 28;
    /// Resource unavailable, try again (the console has another reader).
    pub const AGAIN: i32 = 6;
    /// I/O error (the console went away, or answered out of protocol).
    pub const IO: i32 = 29;
    /// Function not supported.
    pub const NOSYS: i32 = 52;
    /// Not supported (e.g. a clock the kernel does not have).
    pub const NOTSUP: i32 = 58;
    /// Permission denied (a write where the preopen is read-only).
    pub const ACCES: i32 = 2;
    /// Busy (the preopen itself cannot be removed or renamed).
    pub const BUSY: i32 = 10;
    /// The file exists.
    pub const EXIST: i32 = 20;
    /// Not valid UTF-8 (a path).
    pub const ILSEQ: i32 = 25;
    /// A directory where a file was expected.
    pub const ISDIR: i32 = 31;
    /// Too many open descriptors.
    pub const MFILE: i32 = 33;
    /// A name or path too long.
    pub const NAMETOOLONG: i32 = 37;
    /// No such file or directory.
    pub const NOENT: i32 = 44;
    /// No space left on the volume.
    pub const NOSPC: i32 = 51;
    /// Not a directory.
    pub const NOTDIR: i32 = 54;
    /// Directory not empty.
    pub const NOTEMPTY: i32 = 55;
    /// A value too large for its type (a position past 2^63).
    pub const OVERFLOW: i32 = 61;
    /// Seek on something that cannot (stdio).
    pub const SPIPE: i32 = 70;
    /// A rename across two file services.
    pub const XDEV: i32 = 75;
    /// The descriptor lacks the right, or a path leaves its preopen (`..`).
    pub const NOTCAPABLE: i32 = 76;
    /// A listening socket's port is taken.
    pub const ADDRINUSE: i32 = 3;
    /// The peer reset the connection, or the TCP/IP service restarted.
    pub const CONNRESET: i32 = 15;
    /// No network link.
    pub const NETDOWN: i32 = 38;
    /// The TCP/IP service is out of sockets or buffers.
    pub const NOBUFS: i32 = 42;
    /// Not possible in the socket's state (e.g. after `sock_shutdown`).
    pub const NOTCONN: i32 = 53;
    /// A socket call on a descriptor that is not a socket.
    pub const NOTSOCK: i32 = 57;
    /// A write after the sending half was shut down.
    pub const PIPE: i32 = 64;
}

/// How the WASI shim provides a WASI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented as WASI specifies (within the limits in `docs/abi.md`).
    Implemented,
    /// A stub returning [`errno::NOSYS`], or [`errno::BADF`] when its
    /// descriptor argument (parameter `fd_param`) is neither 0, 1, 2 nor an
    /// open descriptor.
    Stub { fd_param: Option<usize> },
}

/// One WASI preview1 function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasiFunction {
    pub name: &'static str,
    pub params: &'static [ValueType],
    pub results: &'static [ValueType],
    pub support: Support,
}

const fn implemented(
    name: &'static str,
    params: &'static [ValueType],
    results: &'static [ValueType],
) -> WasiFunction {
    WasiFunction {
        name,
        params,
        results,
        support: Support::Implemented,
    }
}

/// A stub whose descriptor is parameter `fd_param` (if it has one).
const fn stub(
    name: &'static str,
    params: &'static [ValueType],
    fd_param: Option<usize>,
) -> WasiFunction {
    WasiFunction {
        name,
        params,
        results: &[I32],
        support: Support::Stub { fd_param },
    }
}

/// Every function of WASI preview1, in the order of the witx.
pub const FUNCTIONS: &[WasiFunction] = &[
    implemented("args_get", &[I32, I32], &[I32]),
    implemented("args_sizes_get", &[I32, I32], &[I32]),
    implemented("environ_get", &[I32, I32], &[I32]),
    implemented("environ_sizes_get", &[I32, I32], &[I32]),
    implemented("clock_res_get", &[I32, I32], &[I32]),
    implemented("clock_time_get", &[I32, I64, I32], &[I32]),
    stub("fd_advise", &[I32, I64, I64, I32], Some(0)),
    stub("fd_allocate", &[I32, I64, I64], Some(0)),
    implemented("fd_close", &[I32], &[I32]),
    implemented("fd_datasync", &[I32], &[I32]),
    implemented("fd_fdstat_get", &[I32, I32], &[I32]),
    implemented("fd_fdstat_set_flags", &[I32, I32], &[I32]),
    stub("fd_fdstat_set_rights", &[I32, I64, I64], Some(0)),
    implemented("fd_filestat_get", &[I32, I32], &[I32]),
    implemented("fd_filestat_set_size", &[I32, I64], &[I32]),
    stub("fd_filestat_set_times", &[I32, I64, I64, I32], Some(0)),
    implemented("fd_pread", &[I32, I32, I32, I64, I32], &[I32]),
    implemented("fd_prestat_get", &[I32, I32], &[I32]),
    implemented("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    implemented("fd_pwrite", &[I32, I32, I32, I64, I32], &[I32]),
    implemented("fd_read", &[I32, I32, I32, I32], &[I32]),
    implemented("fd_readdir", &[I32, I32, I32, I64, I32], &[I32]),
    implemented("fd_renumber", &[I32, I32], &[I32]),
    implemented("fd_seek", &[I32, I64, I32, I32], &[I32]),
    implemented("fd_sync", &[I32], &[I32]),
    implemented("fd_tell", &[I32, I32], &[I32]),
    implemented("fd_write", &[I32, I32, I32, I32], &[I32]),
    implemented("path_create_directory", &[I32, I32, I32], &[I32]),
    implemented("path_filestat_get", &[I32, I32, I32, I32, I32], &[I32]),
    stub(
        "path_filestat_set_times",
        &[I32, I32, I32, I32, I64, I64, I32],
        Some(0),
    ),
    stub("path_link", &[I32, I32, I32, I32, I32, I32, I32], Some(0)),
    implemented(
        "path_open",
        &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
        &[I32],
    ),
    stub("path_readlink", &[I32, I32, I32, I32, I32, I32], Some(0)),
    implemented("path_remove_directory", &[I32, I32, I32], &[I32]),
    implemented("path_rename", &[I32, I32, I32, I32, I32, I32], &[I32]),
    stub("path_symlink", &[I32, I32, I32, I32, I32], Some(2)),
    implemented("path_unlink_file", &[I32, I32, I32], &[I32]),
    implemented("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    implemented("proc_exit", &[I32], &[]),
    stub("proc_raise", &[I32], None),
    implemented("sched_yield", &[], &[I32]),
    implemented("random_get", &[I32, I32], &[I32]),
    implemented("sock_accept", &[I32, I32, I32], &[I32]),
    implemented("sock_recv", &[I32, I32, I32, I32, I32, I32], &[I32]),
    implemented("sock_send", &[I32, I32, I32, I32, I32], &[I32]),
    implemented("sock_shutdown", &[I32, I32], &[I32]),
];

/// Looks up a WASI function by its import name.
#[must_use]
pub fn function(name: &str) -> Option<&'static WasiFunction> {
    FUNCTIONS.iter().find(|function| function.name == name)
}

/// Position of a function in [`FUNCTIONS`] (for per-function bookkeeping).
#[must_use]
pub fn index(name: &str) -> Option<usize> {
    FUNCTIONS.iter().position(|function| function.name == name)
}

/// The most `args` plus `env` bytes a service's description may carry.
pub const MAX_ARGS_ENV_LEN: usize = 64 * 1024;

/// The module of the WASI shim's own kernel functions (below). They are linked
/// for the shim only: a service module that imports them does not load.
pub const SHIM_IMPORT_MODULE: &str = "atoll-shim";

/// `program_read(program_ptr: i32, len: i32, into_ptr: i32) -> i32`: copies
/// `len` bytes of the program's memory at `program_ptr` into the shim's
/// memory at `into_ptr`. 0, or `OutOfBounds` if either range is outside its
/// memory (the WASI call then answers `EFAULT`).
pub const PROGRAM_READ: HostFunction = HostFunction {
    name: "program_read",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `program_write(program_ptr: i32, from_ptr: i32, len: i32) -> i32`: copies
/// `len` bytes of the shim's memory at `from_ptr` into the program's memory at
/// `program_ptr`. 0 or `OutOfBounds`.
pub const PROGRAM_WRITE: HostFunction = HostFunction {
    name: "program_write",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `print(stream: i32, ptr: i32, len: i32) -> i32`: adds the bytes to the
/// program's stdout (`stream` 1) or stderr (2). The kernel prints each line
/// the bytes complete as one console line with the service's name (invalid
/// UTF-8 replaced), and what is left of a line when the service ends.
/// Returns 0, or `InvalidArgument` for another stream.
pub const PRINT: HostFunction = HostFunction {
    name: "print",
    params: &[I32, I32, I32],
    results: &[I32],
};

/// `stdin_read(ptr: i32, len: i32) -> i32`: up to `len` bytes of the
/// platform's own stdin (the hosted core's; empty in QEMU) into the shim's
/// memory at `ptr`; the number read, 0 at its end. For a program whose system
/// has no `console` endpoint for it.
pub const STDIN_READ: HostFunction = HostFunction {
    name: "stdin_read",
    params: &[I32, I32],
    results: &[I32],
};

/// `exit(status: i32)`: ends the service with `status` (WASI `proc_exit`);
/// does not return.
pub const EXIT: HostFunction = HostFunction {
    name: "exit",
    params: &[I32],
    results: &[],
};

/// The shim's kernel functions, in module [`SHIM_IMPORT_MODULE`].
pub const SHIM_FUNCTIONS: &[HostFunction] = &[PROGRAM_READ, PROGRAM_WRITE, PRINT, STDIN_READ, EXIT];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_unique() {
        assert_eq!(FUNCTIONS.len(), 46);
        for (position, function) in FUNCTIONS.iter().enumerate() {
            assert_eq!(index(function.name), Some(position), "{}", function.name);
            if let Support::Stub {
                fd_param: Some(fd_param),
            } = function.support
            {
                assert_eq!(
                    function.params.get(fd_param),
                    Some(&I32),
                    "{}",
                    function.name
                );
            }
        }
        assert!(FUNCTIONS.len() <= 64, "per-service warned set is a u64");
    }
}
