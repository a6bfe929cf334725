//! netstack: the TCP/IP service, smoltcp over the network driver, served as
//! the `net` socket protocol (`atoll_protocols::net`).
//!
//! What is here: `stack` (pure, host-tested: smoltcp's interface, the socket
//! table with owners and generations, listeners with a pool of listening
//! sockets, held `Wait`s and `Ping`s, counters) and `service` (Wasm only:
//! the endpoint loop, frames to and from the `nic` endpoint, the clock, the
//! sequence-number seed from WASI `random_get`, owner names from `info`).
//! The address is static (QEMU user networking's 10.0.2.15/24 via
//! 10.0.2.2). `Link` messages are taken only from the service named
//! `virtio-net`.
//!
//! What is not: DHCP, IPv6, DNS, TLS, IP fragmentation, more than one
//! interface. See docs/network.md.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod stack;

#[cfg(test)]
mod tests;

#[cfg(target_family = "wasm")]
mod service;

#[cfg(target_family = "wasm")]
atoll_sdk::entry!(service::main);
