//! Storage throughput for `image-builder bench`: reads sectors straight from
//! the block driver, then a file through the FAT service and the driver, and
//! prints `bench: NAME=VALUE` lines; then creates `/STORDONE`, which starts
//! the WASI file benchmark (`tests/systems/wasi-files/bench`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::ToString;
use atoll_protocols::{block, fs};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

/// Bytes read through the block protocol.
const BLOCK_BYTES: u64 = 1024 * 1024;
/// The file read through the file system (made by `image-builder bench`).
const FILE: &str = "/BIG.BIN";

fn main() {
    let (Ok(disk), Ok(files)) = (
        Endpoint::lookup(block::ENDPOINT),
        Endpoint::lookup(fs::ENDPOINT),
    ) else {
        println!("bench: storage endpoints not granted");
        return;
    };
    // Wait until the file system has mounted (its first answer).
    let size = loop {
        match files.request::<_, fs::Response>(&fs::Request::Open {
            path: FILE.to_string(),
        }) {
            Ok(fs::Response::Entry(entry)) => break entry.size,
            Ok(other) => {
                println!("bench: cannot open {FILE}: {other:?}");
                return;
            }
            Err(_) => atoll_sdk::sleep(10_000_000),
        }
    };

    let sectors_per_read = u64::from(block::MAX_SECTORS);
    let started = atoll_sdk::time();
    let mut sector = 0u64;
    let mut read = 0u64;
    while read < BLOCK_BYTES {
        let request = block::Request::Read {
            sector,
            count: block::MAX_SECTORS,
        };
        match disk.request::<_, block::Response>(&request) {
            Ok(block::Response::Data(data)) => read += data.len() as u64,
            other => {
                println!("bench: block read failed at sector {sector}: {other:?}");
                return;
            }
        }
        sector += sectors_per_read;
    }
    report("block_read_kb_per_s", read, atoll_sdk::time() - started);

    let started = atoll_sdk::time();
    let mut offset = 0u64;
    while offset < size {
        let request = fs::Request::Read {
            path: FILE.to_string(),
            offset,
            len: fs::MAX_DATA,
        };
        match files.request::<_, fs::Response>(&request) {
            Ok(fs::Response::Data(data)) if !data.is_empty() => offset += data.len() as u64,
            other => {
                println!("bench: file read failed at {offset}: {other:?}");
                return;
            }
        }
    }
    report("file_read_kb_per_s", offset, atoll_sdk::time() - started);
    println!("bench: storage_done=1");
    // The WASI program's turn (it waits for this file).
    let done = files.request::<_, fs::Response>(&fs::Request::Create {
        path: "/STORDONE".to_string(),
    });
    if !matches!(done, Ok(fs::Response::Done)) {
        println!("bench: cannot create /STORDONE: {done:?}");
    }
}

/// Prints throughput in KB/s (an integer: the collector parses numbers).
fn report(name: &str, bytes: u64, nanos: u64) {
    let per_second = bytes.saturating_mul(1_000_000_000) / nanos.max(1) / 1000;
    println!("bench: {name}={per_second}");
}
