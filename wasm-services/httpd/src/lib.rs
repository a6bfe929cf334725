//! httpd: the HTTP/1.1 server, serving the FAT disk's files and the system's
//! status over the `net` protocol.
//!
//! What is here: `http` (pure, host-tested: request parsing with its limits,
//! ranges, content types, escaping) and `server` (Wasm only: up to 100
//! connections multiplexed with `net::Wait`, files streamed 3 KiB at a time
//! from `fs`, listings, `/status` and `/status.json` from the kernel's
//! `info`). A refused request (400, 405, 413, 414, 505) is answered and its
//! connection closed; nothing a peer sends can make the service trap.
//!
//! What is not: request bodies (POST, PUT: 405), chunked transfer coding,
//! multiple ranges (served whole), compression, caching headers, TLS.
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
