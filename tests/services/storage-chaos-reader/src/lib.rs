//! test-storage-chaos-reader: the uninvolved client of the QEMU fault
//! campaign (`image-builder chaos --qemu`, docs/reliability.md). It reads
//! `/PATTERN.BIN` through the file system for ever, 3 KiB at a time, and
//! checks every byte while the campaign kills and restarts the disk driver,
//! the file system and the console under it.
//!
//! Every 8-byte word of the file differs from every other ([`expected`];
//! image-builder writes it on the host). After every read it sends its totals to the campaign's
//! `storage-chaos` endpoint: five little-endian `u64`s, reads answered,
//! reads verified, reads failed with an error a fault may cause (the driver's
//! `Device`, `NoVolume` while the file system remounts, the call ended by a
//! restart: `PeerGone`), reads answered wrongly (a wrong or missing byte, or
//! any other answer: corrupt), and reads refused by the kernel otherwise.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::ToString;
use atoll_protocols::fs::{ENDPOINT, Error, MAX_DATA, Request, Response};
use atoll_sdk::{CallError, Endpoint, println};

atoll_sdk::entry!(main);

const FILE: &str = "/PATTERN.BIN";

/// Byte `index` of the file: each 8-byte word is a bijection of its number,
/// so no two words of the file are equal and a read from the wrong place
/// never passes (image-builder writes the same function).
fn expected(index: u64) -> u8 {
    let word = (index / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let word = word ^ (word >> 29);
    (word >> ((index % 8) * 8)) as u8
}

#[derive(Default)]
struct Totals {
    reads: u64,
    verified: u64,
    failed: u64,
    corrupt: u64,
    other: u64,
}

impl Totals {
    fn note(&self) -> [u8; 40] {
        let mut note = [0u8; 40];
        let fields = [
            self.reads,
            self.verified,
            self.failed,
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
            Ok(Response::Error(Error::Device)) => totals.failed += 1,
            Ok(Response::Error(Error::NoVolume))
            | Err(CallError::Kernel(atoll_sdk::Error::PeerGone)) => {
                // The file system restarting (a call ended by the restart,
                // or not mounted yet): wait a little.
                totals.failed += 1;
                atoll_sdk::sleep(2_000_000);
            }
            Err(CallError::Kernel(error)) => {
                totals.other += 1;
                println!("storage-chaos-reader: read at {offset} refused: {error}");
                atoll_sdk::sleep(2_000_000);
            }
            Ok(answer) => {
                totals.corrupt += 1;
                println!("storage-chaos-reader: CORRUPT answer to a read at {offset}: {answer:?}");
            }
            Err(error) => {
                totals.corrupt += 1;
                println!("storage-chaos-reader: CORRUPT answer to a read at {offset}: {error:?}");
            }
        }
        // A full queue drops the note: the next one carries the totals.
        let _ = campaign.send(&totals.note());
    }
}
