//! fat: the file system service, a FAT12, FAT16 or FAT32 volume on the
//! `block` protocol served as the `fs` protocol.
//!
//! What it is: a service that `uses = ["block"]` and `provides = ["fs"]`. It
//! mounts the first MBR partition of the disk, or the whole disk when sector
//! 0 is itself a FAT boot sector (a "superfloppy", as plain `mkfs.fat`
//! makes), with its own FAT layer: `layout.rs` (boot sector, partition,
//! paths), `fat.rs` (FAT entries of 12, 16 and 32 bits, allocation, free
//! count), `names.rs` (long names and aliases) and `fs.rs` (directories,
//! file data, the requests). `disk.rs` talks to the block service: at most 7
//! sectors a call, a run of sectors in as few calls as that allows, and a
//! one-sector miss also reads the 6 after it into the least recently used
//! of 4 windows (FAT and directory sectors). It logs the volume at start
//! (`mounted FAT16 volume "LABEL", N bytes, M bytes free`) and then answers
//! `Open`, `List` (32 entries a page, fewer if long names would overflow a
//! message), `Read` and `Write` (3 KiB a call; a write creates a missing file
//! and extends a short one, zero-filling a gap of at most 16 MiB), `Create`,
//! `Remove`, `OpenFile` (POSIX `open`'s create, exclusive and truncate),
//! `CreateDirectory`, `RemoveDirectory`, `Rename` (within and across
//! directories; replaces a file or an empty directory), `SetSize` and
//! `Sync`. Paths
//! are `/`-separated from the root; names match without regard to case, by
//! their 8.3 name or their long name. A name that is not an upper-case 8.3
//! name is created with long-name (VFAT) entries behind an alias.
//!
//! Durability: a request that changes the volume writes its file data, then
//! each FAT sector it changed once to every FAT copy, then the directory
//! entry, then the FAT32 FSInfo count, before it is answered; no write is
//! cached past its request, so a restart of this service or of the driver
//! loses no answered change. Every change but a `Write` also sends a `Flush`
//! to the driver (the disk's own write cache) before the answer; `Sync`
//! (WASI `fd_sync`) flushes what `Write`s left there. Kept between
//! requests (all of it clean): FAT sectors, the read-ahead, the file last
//! read, and where in a cluster chain the last access ended, so sequential
//! reads and appends never walk a chain from its start. Free clusters are
//! counted once per mount and kept as clusters are taken and freed, so a
//! full volume answers `NoSpace`. Time stamps come from the kernel's
//! real-time clock (the start-up record's boot time plus `time()`). `fsck.fat -n` finds the volume
//! clean after any of these (the tests check it on FAT12, FAT16 and FAT32).
//!
//! Failures: the protocol keeps no per-client state, so neither a restart of
//! this service nor of the disk driver loses anything a client holds. If the
//! driver fails or is gone during a request, that request gets
//! `Error::Device` and the mount is dropped; the next request mounts again
//! (and works as soon as the driver is back). A driver without a disk makes
//! every request answer `Error::NoVolume`. A corrupt volume gives errors,
//! never a trap or a hang: every chain walk is bounded by the volume's
//! cluster count, and nothing on the disk is used as an index unchecked.
//!
//! What it is not: a growing FAT12/16 root directory (its size is fixed:
//! when it has no run of free entries for a long name and its alias, the
//! create answers `NoSpace`; other directories grow), a write-back cache, or
//! concurrency (one request at a time).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod disk;
pub mod fat;
pub mod fs;
pub mod layout;
pub mod names;

#[cfg(test)]
mod tests;

#[cfg(target_family = "wasm")]
atoll_sdk::entry!(main);

#[cfg(target_family = "wasm")]
fn main() {
    use atoll_protocols::{block, fs as protocol};
    let block = match atoll_sdk::Endpoint::lookup(block::ENDPOINT) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            atoll_sdk::println!("no `{}` endpoint to use: {error}", block::ENDPOINT);
            return;
        }
    };
    let mut files = fs::FileSystem::new(disk::BlockClient(block));
    match files.summary() {
        Ok(summary) => {
            let label = summary
                .label
                .map(|label| alloc::format!(" \"{label}\""))
                .unwrap_or_default();
            let kind = if summary.superfloppy {
                " (superfloppy)"
            } else {
                ""
            };
            atoll_sdk::println!(
                "mounted {} volume{label}{kind}, {} bytes, {} bytes free",
                summary.fat_type.name(),
                summary.bytes,
                summary.free
            );
        }
        Err(error) => {
            atoll_sdk::println!("no volume mounted: {error:?} (will retry on each request)")
        }
    }
    // Served by hand rather than with `serve_named`: a staged write's pieces
    // are kept per client, so the handler needs the sender.
    let endpoint = match atoll_sdk::Endpoint::lookup(protocol::ENDPOINT) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            atoll_sdk::println!("no `{}` endpoint to serve: {error}", protocol::ENDPOINT);
            return;
        }
    };
    let mut buffer = alloc::vec![0u8; atoll_sdk::MAX_MESSAGE_LEN];
    loop {
        let received = match endpoint.receive(&mut buffer, atoll_sdk::Timeout::Forever) {
            Ok(received) => received,
            Err(error) => {
                atoll_sdk::println!("receive failed: {error}");
                continue;
            }
        };
        let Ok(request) = received.decode::<protocol::Request>() else {
            continue;
        };
        let client = request.sender();
        let (message, responder) = request.into_parts();
        let response = files.handle_from(client, message);
        responder.reply(&response).report();
    }
}
