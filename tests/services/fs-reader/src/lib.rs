//! test-fs-reader: keeps reading `/PATTERN.BIN` through the file system while
//! the disk driver is killed and restarted under it, and checks every byte.
//!
//! Byte `i` of the file is `(i * 7 + i / 4096) % 251` (the test writes it on the
//! host). A read that fails with `Device` is counted and retried; a read that
//! returns wrong bytes is counted as corrupt. After `DURATION_NS` it logs
//! `fs-reader: N reads verified, E device errors, C corrupt`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::ToString;
use atoll_protocols::fs::{ENDPOINT, Error, MAX_DATA, Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

const FILE: &str = "/PATTERN.BIN";
const DURATION_NS: u64 = 6_000_000_000;

fn expected(index: u64) -> u8 {
    ((index * 7 + index / 4096) % 251) as u8
}

fn main() {
    let Ok(files) = Endpoint::lookup(ENDPOINT) else {
        println!("fs-reader: no fs endpoint");
        return;
    };
    let size = loop {
        match files.request::<_, Response>(&Request::Open {
            path: FILE.to_string(),
        }) {
            Ok(Response::Entry(entry)) if entry.size > 0 => break entry.size,
            _ => atoll_sdk::sleep(20_000_000),
        }
    };
    let started = atoll_sdk::time();
    let (mut verified, mut device_errors, mut corrupt, mut other) = (0u64, 0u64, 0u64, 0u64);
    let mut offset = 0u64;
    while atoll_sdk::time() - started < DURATION_NS {
        let request = Request::Read {
            path: FILE.to_string(),
            offset,
            len: MAX_DATA,
        };
        match files.request::<_, Response>(&request) {
            Ok(Response::Data(data)) => {
                let good = data
                    .iter()
                    .enumerate()
                    .all(|(at, byte)| *byte == expected(offset + at as u64));
                if good && !data.is_empty() {
                    verified += 1;
                } else {
                    corrupt += 1;
                }
                offset += data.len() as u64;
                if offset >= size {
                    offset = 0;
                }
            }
            Ok(Response::Error(Error::Device)) => device_errors += 1,
            _ => {
                other += 1;
                atoll_sdk::sleep(5_000_000);
            }
        }
    }
    println!(
        "fs-reader: {verified} reads verified, {device_errors} device errors, {corrupt} corrupt, {other} other errors"
    );
}
