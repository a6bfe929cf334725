//! netstack: the TCP/IP service, smoltcp over the network driver, served as
//! the `net` socket protocol (`atoll_protocols::net`).
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
