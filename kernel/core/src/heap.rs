//! The kernel heap's budget: the one place that decides whether memory a
//! service asks for may be taken.
//!
//! Everything lives on one heap: the kernel's own tables, every service's
//! linear memory, its interpreter (compiled code, value and call stacks), the
//! messages queued for it and its DMA buffers. A failed allocation in the
//! kernel is fatal (Rust's `alloc` aborts), so the kernel must never attempt
//! one that can fail because of what a service did. The rule:
//!
//! - **Held allocations** a service causes (queued message copies, a module
//!   copied for `swap`, compiling and instantiating a module on restart or
//!   swap, memory and table growth, DMA buffers) are *admitted* first:
//!   [`Heap::admit`] refuses them with [`Error::OutOfMemory`] (or the service's
//!   own failure: `memory.grow` returns -1, a restart fails) unless the heap
//!   keeps [`KERNEL_HEAP_RESERVE`] free after them, plus the stack headroom of
//!   every interpreter (below). Large copies also use fallible allocation
//!   (`try_reserve`), so a fragmented heap gives the same error.
//! - **Interpreter stacks** grow lazily inside wasmi, unadmitted: the value
//!   stack fallibly (a failure is the service's trap, but a success may eat
//!   the reserve), call frames infallibly. Each loaded instance holds a
//!   [`Claim`] for the most its stacks can grow
//!   ([`INTERPRETER_STACK_BYTES`], enforced by the interpreter's
//!   configuration; a second claim while a swapped-out version is kept, and
//!   one for a handler's stack from a service's first upcall), and
//!   admission keeps that headroom free.
//! - **Transient and kernel-bounded allocations** (one kernel call's
//!   arguments, at most [`atoll_abi::MAX_MESSAGE_LEN`] or
//!   [`atoll_abi::MAX_LOG_LEN`]; `info` records; a supervisor report per
//!   ended service; one notification per interrupt line) come out of the
//!   reserve, which is sized for them many times over.
//!
//! The kernel keeps up to 32 buffers of messages already taken for the
//! next ones (`messages::message_buffer`): each was admitted with its first
//! message and is at most a message long, so reusing one admits nothing
//! again; the idle ones (at most 128 KiB) come out of the reserve, like the
//! kernel's other bounded allocations.
//!
//! What is not here: the allocator itself (the platform's) and the message
//! budget that shares the queues fairly (`Core::enqueue`, which counts each
//! queued message's buffer by its capacity).

use crate::Platform;
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::Error;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Free kernel heap kept back from everything a service can cause, for the
/// kernel's own bounded allocations.
pub const KERNEL_HEAP_RESERVE: usize = 8 * 1024 * 1024;

/// The most an interpreter's value stack may hold, in bytes: 32,768 cells,
/// room for the deepest call nesting allowed with 32 registers per frame on
/// average (wasmi's own default is about 1 MB). Every interpreter's possible
/// growth is kept free on the heap, so this bound is what a service costs
/// before it runs: at 1 MB, 200 services would keep 400 MB idle.
pub const VALUE_STACK_BYTES: usize = 256 * 1024;
/// The deepest Wasm call nesting an interpreter allows (wasmi's default).
pub const MAX_RECURSION_DEPTH: usize = 1000;
/// What one interpreter's stacks may grow to: the value stack, its call
/// frames, and slack for the vectors' doubling.
pub const INTERPRETER_STACK_BYTES: usize = VALUE_STACK_BYTES * 2 + MAX_RECURSION_DEPTH * 64;

pub use crate::preflight::compile_cost;

/// The kernel's view of its heap.
pub struct Heap {
    platform: Arc<dyn Platform>,
    /// Bytes held back by live [`Claim`]s: every loaded interpreter's stack
    /// headroom (services, their handlers' calls, and previous versions kept
    /// for a rollback) and
    /// every lazily translated program's code.
    claimed: AtomicUsize,
}

impl Heap {
    #[must_use]
    pub fn new(platform: Arc<dyn Platform>) -> Arc<Heap> {
        Arc::new(Heap {
            platform,
            claimed: AtomicUsize::new(0),
        })
    }

    /// Free bytes that must stay free whatever a service does: the reserve
    /// and every claim.
    #[must_use]
    pub fn kept_free(&self) -> usize {
        self.claimed
            .load(Ordering::Relaxed)
            .saturating_add(KERNEL_HEAP_RESERVE)
    }

    /// Whether `bytes` more may be held on a service's behalf.
    pub fn admit(&self, bytes: usize) -> Result<(), Error> {
        if self.platform.heap_available() < bytes.saturating_add(self.kept_free()) {
            return Err(Error::OutOfMemory);
        }
        Ok(())
    }

    /// Admits and copies `bytes` into a new kernel-owned vector, allocated
    /// fallibly (a fragmented heap refuses it the same way).
    pub fn copy(&self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        self.admit(bytes.len())?;
        let mut copy = Vec::new();
        copy.try_reserve_exact(bytes.len())
            .map_err(|_| Error::OutOfMemory)?;
        copy.extend_from_slice(bytes);
        Ok(copy)
    }

    /// Keeps `bytes` free (after admitting them) for what grows inside wasmi
    /// unadmitted: an interpreter's stacks ([`INTERPRETER_STACK_BYTES`]), or
    /// the code a lazily translated program allocates as it runs (whose
    /// bound counts twice once the code exists: safe, and small beside the
    /// heap). The claim ends when it is dropped.
    pub fn claim(self: &Arc<Heap>, bytes: usize) -> Result<Claim, Error> {
        self.admit(bytes)?;
        self.claimed.fetch_add(bytes, Ordering::Relaxed);
        Ok(Claim {
            heap: Arc::clone(self),
            bytes,
        })
    }

    /// The platform's free bytes (for `info`).
    #[must_use]
    pub fn available(&self) -> usize {
        self.platform.heap_available()
    }
}

/// Bytes kept free for one interpreter's stacks or one program's code.
pub struct Claim {
    heap: Arc<Heap>,
    bytes: usize,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.heap.claimed.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}
