//! Hot-swap state handoff: the exports the kernel looks for in a service.
//!
//! When a running service is swapped, the kernel calls the old version's
//! [`STATE_SAVE_EXPORT`] at its quiescent point, then the new version's
//! [`STATE_ALLOC_EXPORT`] and [`STATE_RESTORE_EXPORT`] before its `_start`.
//! Every export is optional: a version without them hands nothing on, or
//! starts fresh. The Rust SDK's `state_handoff!` and the C header's
//! `ATOLL_STATE_*` names are generated from these.

/// `() -> i64`: the state's `(ptr << 32) | len` in the old version's memory.
pub const STATE_SAVE_EXPORT: &str = "atoll_state_save";

/// `(len: i32) -> i32`: a buffer of `len` bytes in the new version's memory
/// for the kernel to fill.
pub const STATE_ALLOC_EXPORT: &str = "atoll_state_alloc";

/// `(ptr: i32, len: i32) -> ()`: called once the buffer is filled, before
/// `_start`.
pub const STATE_RESTORE_EXPORT: &str = "atoll_state_restore";

/// The most state a hot swap carries, in bytes (1 MiB); a bigger state fails
/// the swap and the old version goes on.
pub const MAX_STATE_LEN: usize = 1024 * 1024;
