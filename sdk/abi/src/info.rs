//! Records the `info` host function writes: what `ps` and `stats` show.

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// `info` kind: the system as a whole ([`SystemInfo`]).
pub const SYSTEM: i32 = 0;
/// `info` kind: one service ([`ServiceInfo`]), by index from 0.
pub const SERVICE: i32 = 1;

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
