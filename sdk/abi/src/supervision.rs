//! Supervision: the kernel's mechanism, the supervisor's vocabulary.
//!
//! The kernel reports every service that exits or faults to the system's
//! supervisor (the service with `supervisor = true` in `system.toml`) as an
//! [`Event`] message, postcard-encoded, on the supervisor's first provided
//! endpoint, from sender [`KERNEL_SENDER`]. Until the supervisor acts, the
//! service's endpoints stay open and keep their queues; only the call it was
//! serving is answered with `PeerGone`. The supervisor then applies its policy
//! with `control`: restart the service (same endpoints, same queues, same
//! handles everywhere), or stop it (its endpoints close and everyone waiting
//! on them gets `PeerGone`).

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// The sender id of messages from the kernel.
pub const KERNEL_SENDER: u32 = u32::MAX;

/// `control` operations.
pub const CONTROL_STOP: i32 = 1;
/// Starts a stopped, exited or faulted service afresh.
pub const CONTROL_START: i32 = 2;
/// Stops (if running) and starts a service, keeping its endpoints and queues.
pub const CONTROL_RESTART: i32 = 3;
/// Turns the kernel's trace ring on (`name` empty). Returns 0.
pub const CONTROL_TRACE_ON: i32 = 4;
/// Turns the kernel's trace ring off (`name` empty); what it holds stays.
pub const CONTROL_TRACE_OFF: i32 = 5;

/// When a service is restarted, as Erlang/OTP supervisors put it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Restarted whenever it ends, faulted or not.
    Permanent,
    /// Restarted only when it faults.
    #[default]
    Transient,
    /// Never restarted.
    Temporary,
}

/// A service's restart policy from `system.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub strategy: Strategy,
    /// Restart intensity: at most this many restarts ...
    pub max_restarts: u32,
    /// ... within this many milliseconds; one more and the supervisor escalates.
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            strategy: Strategy::Transient,
            max_restarts: 3,
            window_ms: 5_000,
        }
    }
}

/// What happened to a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Its entry point returned.
    Exited,
    /// It trapped, with the interpreter's reason.
    Faulted(String),
    /// It ended with a nonzero exit status (WASI `proc_exit`); supervisors
    /// treat this like a fault.
    Failed(i32),
}

/// As logs tell it: "exited", "faulted (REASON)", "exited with status N".
impl core::fmt::Display for Outcome {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Outcome::Exited => formatter.write_str("exited"),
            Outcome::Faulted(reason) => write!(formatter, "faulted ({reason})"),
            Outcome::Failed(status) => write!(formatter, "exited with status {status}"),
        }
    }
}

/// A report from the kernel to the supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub service: String,
    pub outcome: Outcome,
    /// Times the service has been restarted so far.
    pub restarts: u32,
    pub policy: RestartPolicy,
    /// Kernel clock when it happened, in nanoseconds since boot.
    pub at_ns: u64,
}
