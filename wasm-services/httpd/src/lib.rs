//! httpd: the HTTP/1.1 server, serving the FAT disk's files and the system's
//! status over the `net` protocol.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod http;

#[cfg(target_family = "wasm")]
mod server;

#[cfg(target_family = "wasm")]
atoll_sdk::entry!(server::main);
