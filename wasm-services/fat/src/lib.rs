//! fat: the file system service, a FAT16/FAT32 volume on the `block` protocol
//! served as the `fs` protocol.
//!
//! What it is: a service that `uses = ["block"]` and `provides = ["fs"]`. It
//! mounts the first MBR partition of the disk with embedded-sdmmc, through a
//! `BlockDevice` that calls the block service (at most 7 sectors a call; a
//! one-sector miss also reads the 6 after it into the least recently used of
//! 4 windows, so sequential reads of file data, FAT and directories, even
//! interleaved, take a seventh of the calls). The file last read stays open:
//! a `Read` of the same path (as given) goes on from where the last one
//! stopped, without a directory search or a walk of the cluster chain from
//! its start; any `Write`, `Create` or `Remove`, any error, and any remount
//! close it, so a read never sees an outdated file. A disk whose
//! sector 0 is itself a FAT boot sector (a "superfloppy", as plain `mkfs.fat`
//! makes) is shown behind a virtual MBR with one partition at sector 1, so it
//! mounts too. It logs the volume at start (`mounted FAT16 volume "LABEL",
//! N bytes, M bytes free`) and then answers `Open`, `List` (32 entries a
//! page, fewer if long names would overflow a message), `Read` and `Write`
//! (3 KiB a call; a write creates a missing file and extends a short one,
//! zero-filling a gap of at most 16 MiB), `Create` and `Remove`. Paths are
//! `/`-separated from the root; names match without regard to case, by their
//! 8.3 name or their long name. Every request that changes the volume ends
//! with a `Flush` to the driver. `Remove` also frees the file's clusters
//! (embedded-sdmmc only clears the directory entry), so `fsck.fat` finds the
//! volume clean.
//!
//! Failures: the protocol keeps no per-client state, so neither a restart of
//! this service nor of the disk driver loses anything a client holds. If the
//! driver fails or is gone during a request, that request gets
//! `Error::Device` and the mount is dropped; the next request mounts again
//! (and works as soon as the driver is back). A driver without a disk makes
//! every request answer `Error::NoVolume`.
//!
//! What it is not: FAT12 (embedded-sdmmc has none), long-name creation (new
//! files are 8.3, stored upper case; long names are read, matched and
//! listed, and files with one can be read and written but not removed, since
//! embedded-sdmmc would leave the name's entries behind), directories (no
//! create or remove), timestamps (no clock: files are stamped 2025-01-01), a
//! cache beyond the read-ahead and the file last read (both live as long as a
//! mount), or
//! concurrency (one request at a time). embedded-sdmmc asserts on some
//! inconsistencies of a corrupt volume; the geometry is checked before it
//! mounts, but a corrupt FAT chain can still trap the service, and then its
//! supervisor restarts it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod disk;
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
    atoll_sdk::serve_named(protocol::ENDPOINT, |request| files.handle(request));
}
