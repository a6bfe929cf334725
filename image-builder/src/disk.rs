//! Data disks for `run`: an existing raw image, or a FAT image made from a
//! host folder.
//!
//! A made image has an MBR with one FAT16 (or, from 512 MiB, FAT32) partition
//! at sector 2048, formatted by `mkfs.fat` and filled by `mcopy` (Debian's
//! dosfstools and mtools): what the file-system service mounts, and what
//! `mtools -i disk.img@@1M` and `fsck.fat` read on the host afterwards.

use crate::error::{Context, Error};
use crate::manifest::{DEFAULT_DISK_MIB, Disk};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// First sector of the partition: 1 MiB in, as partitioning tools align.
pub const PARTITION_START: u64 = 2048;
const SECTOR: u64 = 512;

/// The disk to attach: `override_path` (a folder or an image) if given, else
/// the description's `[disk]`. A folder becomes a fresh image at `made`.
pub fn prepare(
    described: Option<&Disk>,
    override_path: Option<&Path>,
    made: &Path,
) -> Result<Option<PathBuf>, Error> {
    let disk = match override_path {
        Some(path) if path.is_dir() => Disk::Folder {
            path: path.to_path_buf(),
            size_mib: DEFAULT_DISK_MIB,
        },
        Some(path) => Disk::Image(path.to_path_buf()),
        None => match described {
            Some(disk) => disk.clone(),
            None => return Ok(None),
        },
    };
    match disk {
        Disk::Image(path) => {
            if !path.is_file() {
                return Err(Error::Other(format!(
                    "disk image {} does not exist",
                    path.display()
                )));
            }
            Ok(Some(path))
        }
        Disk::Folder { path, size_mib } => {
            make_fat_image(&path, size_mib, made)?;
            Ok(Some(made.to_path_buf()))
        }
    }
}

/// Writes a partitioned FAT image of `size_mib` MiB holding the files of `folder`.
pub fn make_fat_image(folder: &Path, size_mib: u32, image: &Path) -> Result<(), Error> {
    if !folder.is_dir() {
        return Err(Error::Other(format!(
            "disk folder {} does not exist",
            folder.display()
        )));
    }
    if let Some(parent) = image.parent() {
        std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    }
    let bytes = u64::from(size_mib) * 1024 * 1024;
    let sectors = bytes / SECTOR;
    let fat32 = size_mib >= 512;
    {
        let mut file =
            std::fs::File::create(image).context(|| format!("creating {}", image.display()))?;
        file.set_len(bytes)
            .context(|| format!("sizing {}", image.display()))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&mbr(sectors - PARTITION_START, fat32)))
            .context(|| format!("writing the partition table of {}", image.display()))?;
    }
    let fat = if fat32 { "32" } else { "16" };
    tool(
        Command::new("mkfs.fat")
            .args(["-F", fat, "-n", "ATOLL", "--offset", "2048"])
            .arg(image)
            .arg((bytes / 1024 - PARTITION_START / 2).to_string()),
        "mkfs.fat (apt-get install dosfstools)",
    )?;
    let entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    if !entries.is_empty() {
        tool(
            Command::new("mcopy")
                .arg("-s")
                .arg("-i")
                .arg(format!("{}@@{}", image.display(), PARTITION_START * SECTOR))
                .args(&entries)
                .arg("::/"),
            "mcopy (apt-get install mtools)",
        )?;
    }
    Ok(())
}

/// A master boot record with one partition from [`PARTITION_START`].
fn mbr(partition_sectors: u64, fat32: bool) -> [u8; 512] {
    let mut sector = [0u8; 512];
    let entry = &mut sector[446..462];
    entry[0] = 0x00; // not bootable
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: use LBA
    entry[4] = if fat32 { 0x0c } else { 0x0e }; // FAT32 / FAT16, LBA
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&(PARTITION_START as u32).to_le_bytes());
    entry[12..16]
        .copy_from_slice(&(partition_sectors.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

fn tool(command: &mut Command, what: &str) -> Result<(), Error> {
    let output = command.output().context(|| format!("running {what}"))?;
    if !output.status.success() {
        return Err(Error::Other(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}
