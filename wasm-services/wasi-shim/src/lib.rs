//! wasi-shim: WASI preview1 for unmodified `wasip1` programs (C with
//! wasi-libc, Rust `wasm32-wasip1`, Go `GOOS=wasip1`), as a Wasm module.
//!
//! The kernel instantiates a WASI program in the same wasmi store as this
//! module and binds the program's `wasi_snapshot_preview1` imports to the
//! exports of the same names here (`wasm.rs`). The shim thus runs as part of
//! the program's service: same fuel, same endpoint handles. Where the kernel
//! once had to turn each file or socket call into a state machine (it cannot
//! block), the shim makes ordinary blocking calls: a 64 KiB `fd_read` is a
//! loop of 3 KiB `Read`s, a staged write a loop of `Stage` pieces.
//!
//! What is here: the WASI logic, written against two traits so that it runs
//! on the host under test: [`Memory`], the program's linear memory (the shim
//! has its own; the program's is reached only through the kernel's
//! `program_read`/`program_write`), and [`Kernel`], the kernel's functions
//! the shim uses. [`Shim`] holds the program's state and has one method per
//! preview1 function. `program.rs` reads and checks the program's arguments,
//! `stdio.rs` has the process-wide functions (arguments, clocks, random,
//! stdin/stdout/stderr, `poll_oneoff`, the stubs), `files.rs` the descriptor
//! table and files, `sockets.rs` the listening sockets and connections.
//!
//! What is not here: the kernel's side of the contract (module `atoll-shim`,
//! `atoll_abi::wasi::SHIM_FUNCTIONS`, and the ABI's `startup`), the file system (the FAT service), the
//! TCP/IP stack (the netstack service).
//!
//! Design rules: every pointer and length the program passes is checked
//! through [`Memory`] (a bad one is `EFAULT`), nothing is allocated by a size
//! the program chose without a bound first, and no `unwrap` or unchecked
//! index touches anything the program controls. The errno of every case is
//! the one the kernel's own implementation gave (`docs/abi.md`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

mod files;
mod program;
mod sockets;
mod stdio;
#[cfg(test)]
mod tests;
#[cfg(target_family = "wasm")]
mod wasm;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use atoll_abi::startup::Startup;
use atoll_abi::wasi::errno;
use atoll_abi::{Error, MAX_MESSAGE_LEN};
use files::Files;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use program::Memory;

/// A WASI call's outcome: `Err` carries the errno.
pub type Errno<T> = Result<T, i32>;

/// The kernel's functions the shim uses: the `atoll` ABI through the SDK on
/// wasm32, fakes in the host tests.
pub trait Kernel {
    /// `call`: sends `request` to endpoint `handle`, blocks until the reply,
    /// which goes into `reply`; its length.
    fn call(&mut self, handle: i32, request: &[u8], reply: &mut [u8]) -> Result<usize, Error>;
    /// `time`: nanoseconds since boot.
    fn time(&mut self) -> u64;
    /// `sleep`: at least `ns` nanoseconds; 0 lets other services run.
    fn sleep(&mut self, ns: u64);
    /// `log`: one console line with the service's name.
    fn log(&mut self, text: &str);
    /// `print`: bytes for the program's stdout (1) or stderr (2).
    fn print(&mut self, stream: i32, bytes: &[u8]);
    /// `stdin_read`: up to `into.len()` bytes of the platform's own stdin;
    /// how many (0 at its end).
    fn stdin_read(&mut self, into: &mut [u8]) -> usize;
    /// `lookup`: the handle of an endpoint the service uses, if it has it.
    fn lookup(&mut self, name: &str) -> Option<i32>;
}

/// A WASI program's state in the shim, and the kernel and memory it works
/// with. Each preview1 function is a method of the same name and Wasm
/// signature (`stdio.rs`, `files.rs`, `sockets.rs`).
pub struct Shim<K: Kernel, M: Memory> {
    pub kernel: K,
    pub memory: M,
    /// Arguments, environment and boot wall-clock time (preopens and
    /// listeners moved into `files`).
    args: Vec<String>,
    env: Vec<String>,
    boot_wall_clock_ns: u64,
    files: Files,
    /// `random_get`'s xorshift state.
    random: u64,
    /// Stubs already logged, one bit per entry of `wasi::FUNCTIONS`.
    warned: u64,
    /// The console's handle for stdin, once looked up (`None` inside: the
    /// service does not use the console).
    console: Option<Option<i32>>,
    /// The reply buffer of every call (one message).
    reply: Vec<u8>,
}

/// The generator's state when the kernel gave a seed of 0 (which xorshift
/// would keep for ever).
const FALLBACK_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl<K: Kernel, M: Memory> Shim<K, M> {
    /// The state a program starts with: its descriptors are the preopens,
    /// then the listeners of `startup`.
    pub fn new(startup: Startup, kernel: K, memory: M) -> Shim<K, M> {
        let Startup {
            args,
            env,
            preopens,
            listeners,
            boot_wall_clock_ns,
            random_seed,
        } = startup;
        Shim {
            kernel,
            memory,
            args,
            env,
            boot_wall_clock_ns,
            files: Files::new(&preopens, &listeners),
            random: if random_seed == 0 {
                FALLBACK_SEED
            } else {
                random_seed
            },
            warned: 0,
            console: None,
            reply: vec![0; MAX_MESSAGE_LEN],
        }
    }

    /// Runs an operation that may call services; `fd` is the descriptor it
    /// works on. As in the kernel, a request that got no answer (its service
    /// ended with it), an answer out of protocol, or a failed request after
    /// the first (the operation half done) leaves that descriptor answering
    /// `EIO` from then on; a first request the kernel refused does not. A
    /// first request failing with `PeerGone` counts as unanswered: a
    /// blocking `call` cannot tell "refused, provider gone" from "taken,
    /// then the provider ended", which the kernel's own WASI told apart.
    fn operation(
        &mut self,
        fd: Option<i32>,
        operation: impl FnOnce(&mut Files, &mut M, &mut Exchange<'_, K>) -> Errno<()>,
    ) -> i32 {
        let mut exchange = Exchange {
            kernel: &mut self.kernel,
            reply: &mut self.reply,
            answered: false,
            lost: false,
        };
        let result = operation(&mut self.files, &mut self.memory, &mut exchange);
        let broken = exchange.lost || (result == Err(errno::IO) && exchange.answered);
        if broken && let Some(fd) = fd {
            self.files.break_descriptor(fd);
        }
        code(result)
    }
}

/// The requests of one WASI call to its services, and whether it got far
/// enough that a failure leaves its descriptor broken.
pub(crate) struct Exchange<'a, K: Kernel> {
    kernel: &'a mut K,
    reply: &'a mut [u8],
    /// A reply came (so the next request continues an operation).
    answered: bool,
    /// A request went unanswered or was answered out of protocol.
    lost: bool,
}

impl<K: Kernel> Exchange<'_, K> {
    /// Sends `request` to endpoint `handle` and decodes the answer; `EIO`
    /// if the call fails or the answer is not `Response`.
    pub(crate) fn ask<Request: Serialize, Response: DeserializeOwned>(
        &mut self,
        handle: i32,
        request: &Request,
    ) -> Errno<Response> {
        let message = postcard::to_allocvec(request).map_err(|_| errno::IO)?;
        match self.kernel.call(handle, &message, self.reply) {
            Ok(len) => {
                self.answered = true;
                let decoded = self
                    .reply
                    .get(..len)
                    .and_then(|reply| postcard::from_bytes(reply).ok());
                self.lost |= decoded.is_none();
                decoded.ok_or(errno::IO)
            }
            Err(error) => {
                // `PeerGone` is a service that ended, perhaps with the
                // request taken; after a first answer, any failure leaves
                // the operation half done.
                self.lost |= self.answered || error == Error::PeerGone;
                Err(errno::IO)
            }
        }
    }
}

/// The errno of an outcome.
fn code(result: Errno<()>) -> i32 {
    result.err().unwrap_or(errno::SUCCESS)
}
