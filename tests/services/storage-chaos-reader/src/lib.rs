//! test-storage-chaos-reader: the uninvolved client of the QEMU fault
//! campaign (`image-builder chaos --qemu`, docs/reliability.md). It reads
//! `/PATTERN.BIN` through the file system for ever, 3 KiB at a time, and
//! checks every byte while the campaign kills and restarts the disk driver,
//! the file system and the console under it.
//!
//! Byte `i` of the file is `(i * 7 + i / 4096) % 251` (image-builder writes
//! it on the host). After every read it sends its totals to the campaign's
//! `storage-chaos` endpoint: five little-endian `u64`s, reads answered,
//! reads verified, `Device` errors, reads with a wrong or missing byte
//! (corrupt), other errors.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::ToString;
use atoll_protocols::fs::{ENDPOINT, Error, MAX_DATA, Request, Response};
use atoll_sdk::{Endpoint, println};

atoll_sdk::entry!(main);

const FILE: &str = "/PATTERN.BIN";

fn expected(index: u64) -> u8 {
    ((index * 7 + index / 4096) % 251) as u8
}

#[derive(Default)]
struct Totals {
    reads: u64,
    verified: u64,
    device_errors: u64,
    corrupt: u64,
    other: u64,
}

impl Totals {
    fn note(&self) -> [u8; 40] {
        let mut note = [0u8; 40];
        let fields = [
            self.reads,
            self.verified,
            self.device_errors,
            self.corrupt,
            self.other,
        ];
        for (chunk, field) in note.as_chunks_mut::<8>().0.iter_mut().zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        note
    }
}

fn main() {
    let (Ok(files), Ok(campaign)) = (
        Endpoint::lookup(ENDPOINT),
        Endpoint::lookup("storage-chaos"),
    ) else {
        println!("storage-chaos-reader: no fs or storage-chaos endpoint");
        return;
    };
    // The file's size, once the volume is mounted.
    let size = loop {
        match files.request::<_, Response>(&Request::Open {
            path: FILE.to_string(),
        }) {
            Ok(Response::Entry(entry)) if entry.size > 0 => break entry.size,
            _ => atoll_sdk::sleep(20_000_000),
        }
    };
    let mut totals = Totals::default();
    let mut offset = 0u64;
    loop {
        let request = Request::Read {
            path: FILE.to_string(),
            offset,
            len: MAX_DATA,
        };
        totals.reads += 1;
        match files.request::<_, Response>(&request) {
            Ok(Response::Data(data)) => {
                let whole = data.len() as u64 == (size - offset).min(u64::from(MAX_DATA));
                let good = data
                    .iter()
                    .enumerate()
                    .all(|(at, byte)| *byte == expected(offset + at as u64));
                if good && whole {
                    totals.verified += 1;
                    offset += data.len() as u64;
                    if offset >= size {
                        offset = 0;
                    }
                } else {
                    totals.corrupt += 1;
                    println!(
                        "storage-chaos-reader: CORRUPT read at {offset}: {} bytes, good prefix: {good}",
                        data.len()
                    );
                }
            }
            Ok(Response::Error(Error::Device)) => totals.device_errors += 1,
            _ => {
                // The file system restarting (a call ended by the restart,
                // or not mounted yet): wait a little.
                totals.other += 1;
                atoll_sdk::sleep(2_000_000);
            }
        }
        // A full queue drops the note: the next one carries the totals.
        let _ = campaign.send(&totals.note());
    }
}
