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
    /// `ready`, `running` (the asking service), `receiving`, `calling`,
    /// `sleeping`, `exited`, `faulted`, `stopped`.
    pub state: String,
    pub memory_bytes: u64,
    pub fuel_used: u64,
    pub sent: u64,
    pub received: u64,
    pub restarts: u32,
    pub swaps: u32,
    /// DMA memory held, in bytes.
    pub dma_bytes: u64,
}
