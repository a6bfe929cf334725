//! The start-up record: what a service learns of itself from `system.toml`
//! through [`crate::STARTUP`] (its arguments, environment, WASI preopens and
//! listening sockets, the wall clock at boot, a seed), postcard-encoded.

use alloc::string::String;
use alloc::vec::Vec;

/// What the kernel tells a service at its start ([`crate::STARTUP`]): its
/// description from `system.toml`, with its endpoints' handles (resolved
/// when image-builder encoded the bundle).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Startup {
    /// `args_get` strings (the service's name first).
    pub args: Vec<String>,
    /// `environ_get` strings, `KEY=value`.
    pub env: Vec<String>,
    /// WASI preopened directories: descriptors 3, 4, ... in this order.
    pub preopens: Vec<Preopen>,
    /// WASI listening sockets: the descriptors after the preopens, in this
    /// order.
    pub listeners: Vec<Listener>,
    /// Nanoseconds since the Unix epoch at boot (the realtime clock is this
    /// plus `time()`); 0 if the machine has no clock.
    pub boot_wall_clock_ns: u64,
    /// A seed for a generator (WASI `random_get`'s): never 0, different per
    /// service and per start. Not for cryptography.
    pub random_seed: u64,
}

/// A preopened directory: the file service's endpoint handle and the
/// directory on it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preopen {
    /// The name the program sees (`fd_prestat_dir_name`).
    pub guest: String,
    /// Handle of the file service's endpoint.
    pub handle: i32,
    /// The directory on the file service.
    pub directory: String,
    pub read_only: bool,
}

/// A listening TCP socket: the TCP/IP service's endpoint handle and the port.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listener {
    pub handle: i32,
    pub port: u16,
    /// Starts non-blocking (so do the connections accepted on it).
    pub nonblocking: bool,
}
