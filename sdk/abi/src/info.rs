//! Records the `info` host function writes: what `ps` and `stats` show.

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// `info` kind: the system as a whole ([`SystemInfo`]).
pub const SYSTEM: i32 = 0;
/// `info` kind: one service ([`ServiceInfo`]), by index from 0.
pub const SERVICE: i32 = 1;
/// `info` kind: one endpoint ([`EndpointInfo`]), by index from 0.
pub const ENDPOINT: i32 = 2;
/// `info` kind: whether the kernel's trace ring records, and what it holds
/// ([`TraceInfo`]; `index` ignored).
pub const TRACE: i32 = 3;

/// The system as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub system_name: String,
    pub uptime_ns: u64,
    pub services: u32,
    /// Kernel heap in use and still free, in bytes (0 where not counted).
    pub heap_in_use: u64,
    pub heap_available: u64,
    /// Bytes held by all message queues together, and their budget.
    pub queued_bytes: u64,
    pub message_budget: u64,
    /// Messages sent since boot, all services together.
    pub messages: u64,
    /// Interrupt notifications delivered since boot.
    pub interrupts: u64,
}

/// One service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    /// What the service is doing.
    pub state: ServiceState,
    pub memory_bytes: u64,
    pub fuel_used: u64,
    pub sent: u64,
    pub received: u64,
    pub restarts: u32,
    pub swaps: u32,
    /// DMA memory held, in bytes.
    pub dma_bytes: u64,
    /// Turns on the CPU (each at most one fuel slice).
    pub slices: u64,
    /// Kernel calls made (host traps and calls completed in place alike).
    pub syscalls: u64,
    /// Times it trapped.
    pub faults: u32,
    /// Nanoseconds spent blocked, by reason: in `receive`, in `call`
    /// waiting for the reply, in `sleep`.
    pub blocked_receive_ns: u64,
    pub blocked_reply_ns: u64,
    pub blocked_sleep_ns: u64,
}

/// One endpoint: its queue's counters since boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    pub name: String,
    /// The providing service's index, if it is loaded.
    pub provider: Option<u32>,
    /// Messages it holds now, and the most it may hold.
    pub queue_len: u32,
    pub queue_depth: u32,
    /// Messages (sends and calls) queued on it.
    pub queued: u64,
    /// Sends and calls refused with `QueueFull` (queue, message budget or
    /// call table full).
    pub queue_full: u64,
    /// Sends and calls refused with `PeerGone`, and queued calls answered
    /// `PeerGone` when its provider stopped.
    pub peer_gone: u64,
    /// The deepest its queue has been.
    pub deepest: u32,
}

/// The trace ring, as `info` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceInfo {
    /// Whether events are being recorded.
    pub on: bool,
    /// Records held now, and the ring's size.
    pub held: u32,
    pub capacity: u32,
    /// Records written since boot, and those overwritten by newer ones.
    pub recorded: u64,
    pub overwritten: u64,
}

/// What a service is doing, as `info` reports it. Postcard writes it as its
/// number (one byte); the numbers are fixed like error codes: a state keeps
/// its number, new states get new numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ServiceState {
    /// Waiting for the CPU.
    Ready = 0,
    /// On the CPU: the service that asked.
    Running = 1,
    /// Blocked in `receive`.
    Receiving = 2,
    /// Blocked in `call`, waiting for the reply.
    Calling = 3,
    /// Blocked in `sleep`.
    Sleeping = 4,
    /// Returned from `_start`.
    Exited = 5,
    /// Trapped, or was killed by the kernel.
    Faulted = 6,
    /// Stopped by the supervisor (or never started).
    Stopped = 7,
}

impl ServiceState {
    /// Every state, in number order.
    pub const ALL: &'static [ServiceState] = &[
        ServiceState::Ready,
        ServiceState::Running,
        ServiceState::Receiving,
        ServiceState::Calling,
        ServiceState::Sleeping,
        ServiceState::Exited,
        ServiceState::Faulted,
        ServiceState::Stopped,
    ];

    /// The state's number.
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The state with this number, if any.
    #[must_use]
    pub fn from_code(code: u8) -> Option<ServiceState> {
        ServiceState::ALL
            .iter()
            .copied()
            .find(|state| state.code() == code)
    }

    /// The lowercase word `ps` shows.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ServiceState::Ready => "ready",
            ServiceState::Running => "running",
            ServiceState::Receiving => "receiving",
            ServiceState::Calling => "calling",
            ServiceState::Sleeping => "sleeping",
            ServiceState::Exited => "exited",
            ServiceState::Faulted => "faulted",
            ServiceState::Stopped => "stopped",
        }
    }
}

impl core::fmt::Display for ServiceState {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_states_encode_as_their_numbers() {
        for (index, state) in ServiceState::ALL.iter().enumerate() {
            assert_eq!(usize::from(state.code()), index);
            assert_eq!(ServiceState::from_code(state.code()), Some(*state));
            // Postcard writes a variant as its index: the number, one byte.
            assert_eq!(
                postcard::to_allocvec(state).unwrap(),
                [state.code()],
                "{state}"
            );
            assert_eq!(
                postcard::from_bytes::<ServiceState>(&[state.code()]).unwrap(),
                *state
            );
        }
        assert_eq!(ServiceState::from_code(8), None);
        assert!(postcard::from_bytes::<ServiceState>(&[8]).is_err());
    }
}
