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
//! zero-filling a gap of at most 16 MiB), `Create`, `Remove`, `OpenFile`
//! (POSIX `open`'s create, exclusive and truncate), `CreateDirectory`,
//! `RemoveDirectory`, `Rename` (within and across directories; replaces a
//! file or an empty directory) and `SetSize`. Paths are `/`-separated from
//! the root; names match without regard to case, by their 8.3 name or their
//! long name. A name that is not an upper-case 8.3 name is created with
//! long-name (VFAT) entries behind an alias (`names.rs`). Every request that
//! changes the volume ends with a `Flush` to the driver. What embedded-sdmmc
//! cannot do is done on the disk by this service (`fs.rs`, "Directory
//! entries on the disk itself"): long-name entries, removing entries with
//! their long names and clusters, moving entries, cutting cluster chains, the
//! FSInfo count after `mkdir`; such a request drops the mount, so the next
//! one mounts afresh. Free clusters are counted once per mount and taken by
//! writes, so a full volume answers `NoSpace` (embedded-sdmmc would take a
//! cluster from the FAT's padding). Time stamps come from the kernel's
//! real-time clock (WASI `clock_time_get`). `fsck.fat -n` finds the volume
//! clean after any of these (the tests check it on FAT16 and FAT32).
//!
//! Failures: the protocol keeps no per-client state, so neither a restart of
//! this service nor of the disk driver loses anything a client holds. If the
//! driver fails or is gone during a request, that request gets
//! `Error::Device` and the mount is dropped; the next request mounts again
//! (and works as soon as the driver is back). A driver without a disk makes
//! every request answer `Error::NoVolume`.
//!
//! What it is not: FAT12 (embedded-sdmmc has none: such a volume answers
//! `NoVolume`), a growing FAT12/16 root directory (its size is fixed: when
//! it has no run of free entries for a long name and its alias, the create
//! answers `NoSpace`; other directories grow), a write cache (about 13 block calls per 3 KiB write), or
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
