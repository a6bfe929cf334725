//! A global allocator for the host tests that counts, per thread, the bytes
//! that thread holds, so a test can check that repeated work leaves memory flat
//! even while other tests run in parallel threads. A thread may also give
//! itself a finite heap ([`FiniteHeap`]): an allocation past it fails as the
//! kernel's would (Rust aborts the process: "memory allocation of N bytes
//! failed"), and fallible allocations (`try_reserve`) get their error.
#![allow(
    unsafe_code,
    reason = "a GlobalAlloc implementation is unsafe by definition"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    /// The most this thread may hold (`isize::MAX`: no limit).
    static LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
}

/// Whether the calling thread may take `more` bytes.
fn fits(more: isize) -> bool {
    let live = LIVE_BYTES.try_with(Cell::get).unwrap_or(0);
    let limit = LIMIT.try_with(Cell::get).unwrap_or(isize::MAX);
    more <= 0 || live.saturating_add(more) <= limit
}

struct Counting;

fn count(delta: isize) {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping only adds to a thread-local counter and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !fits(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            count(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(pointer, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !fits(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            count(layout.size() as isize);
        }
        pointer
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A moving realloc holds both blocks for a moment: count the new one whole.
        if new_size > layout.size() && !fits(new_size as isize) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes the calling thread holds (allocated and not freed by it).
pub fn live_bytes() -> isize {
    LIVE_BYTES.try_with(Cell::get).unwrap_or(0)
}

/// A finite heap for the calling thread: `size` bytes beyond what it holds
/// now. Lifted when dropped.
pub struct FiniteHeap {
    _private: (),
}

impl FiniteHeap {
    pub fn new(size: usize) -> FiniteHeap {
        let limit = live_bytes().saturating_add(size as isize);
        LIMIT.with(|cell| cell.set(limit));
        FiniteHeap { _private: () }
    }
}

/// Bytes the calling thread can still allocate under its [`FiniteHeap`].
pub fn available() -> usize {
    let limit = LIMIT.try_with(Cell::get).unwrap_or(isize::MAX);
    usize::try_from(limit.saturating_sub(live_bytes())).unwrap_or(0)
}

impl Drop for FiniteHeap {
    fn drop(&mut self) {
        let _ = LIMIT.try_with(|cell| cell.set(isize::MAX));
    }
}
