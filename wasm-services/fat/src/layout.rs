//! On-disk FAT structures (no I/O here): the boot sector's geometry, the
//! MBR's first partition, and paths.

use alloc::vec::Vec;
use atoll_protocols::fs::Error;

/// Bytes per sector; the only size supported.
pub const SECTOR: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

impl FatType {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        }
    }
}

/// Where a FAT volume keeps its tables, from its boot sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub fat_type: FatType,
    /// The volume's first sector (its boot sector), as the disk numbers it.
    pub start: u64,
    pub sectors_per_cluster: u32,
    /// First sector of the first FAT (absolute).
    pub fat_start: u64,
    /// Sectors per FAT.
    pub fat_sectors: u32,
    /// Number of FAT copies.
    pub fats: u32,
    /// Data clusters: valid cluster numbers are 2 ..= clusters + 1.
    pub clusters: u32,
    /// The FAT32 FSInfo sector (absolute).
    pub fsinfo: Option<u64>,
    /// First sector of the data region (cluster 2), absolute.
    pub data_start: u64,
    /// The FAT12/16 root directory's sectors (absolute first, count); FAT32
    /// has its root in clusters (`root_cluster`).
    pub root_start: u64,
    pub root_sectors: u32,
    /// The FAT32 root directory's first cluster.
    pub root_cluster: u32,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

fn has_signature(sector: &[u8]) -> bool {
    sector.get(510..512) == Some(&[0x55, 0xaa])
}

impl Geometry {
    /// Parses the boot sector of a volume starting at sector `start`; `None`
    /// if it is not a sane FAT boot sector with 512-byte sectors.
    #[must_use]
    pub fn parse(boot: &[u8], start: u64) -> Option<Geometry> {
        if !has_signature(boot) || usize::from(u16_at(boot, 0x0b)) != SECTOR {
            return None;
        }
        let sectors_per_cluster = u32::from(*boot.get(0x0d)?);
        let reserved = u32::from(u16_at(boot, 0x0e));
        let fats = u32::from(*boot.get(0x10)?);
        let root_entries = u32::from(u16_at(boot, 0x11));
        let total = match u16_at(boot, 0x13) {
            0 => u32_at(boot, 0x20),
            small => u32::from(small),
        };
        let fat_sectors = match u16_at(boot, 0x16) {
            0 => u32_at(boot, 0x24),
            small => u32::from(small),
        };
        if sectors_per_cluster == 0
            || !sectors_per_cluster.is_power_of_two()
            || reserved == 0
            || fats == 0
            || fat_sectors == 0
        {
            return None;
        }
        let root_sectors = (root_entries * 32).div_ceil(SECTOR as u32);
        let meta = fats
            .checked_mul(fat_sectors)?
            .checked_add(reserved)?
            .checked_add(root_sectors)?;
        let clusters = total.checked_sub(meta)? / sectors_per_cluster;
        let fat_type = if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        // The FAT must be large enough to describe every cluster.
        let entry_bits: u64 = match fat_type {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        };
        if (u64::from(clusters) + 2) * entry_bits > u64::from(fat_sectors) * SECTOR as u64 * 8 {
            return None;
        }
        let fsinfo = match (fat_type, u16_at(boot, 0x30)) {
            (FatType::Fat32, sector) if sector != 0 && sector != 0xffff => {
                Some(start + u64::from(sector))
            }
            _ => None,
        };
        let root_start = start + u64::from(reserved) + u64::from(fats) * u64::from(fat_sectors);
        Some(Geometry {
            fat_type,
            start,
            sectors_per_cluster,
            fat_start: start + u64::from(reserved),
            fat_sectors,
            fats,
            clusters,
            fsinfo,
            data_start: start + u64::from(meta),
            root_start,
            root_sectors,
            root_cluster: if fat_type == FatType::Fat32 {
                u32_at(boot, 0x2c)
            } else {
                0
            },
        })
    }

    #[must_use]
    pub fn bytes_per_cluster(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR as u64
    }

    /// The first sector of data cluster `cluster`.
    #[must_use]
    pub fn cluster_sector(&self, cluster: u32) -> u64 {
        self.data_start + u64::from(cluster.saturating_sub(2)) * u64::from(self.sectors_per_cluster)
    }

    /// The value that ends a cluster chain.
    #[must_use]
    pub fn end_of_chain(&self) -> u32 {
        match self.fat_type {
            FatType::Fat12 => 0xfff,
            FatType::Fat16 => 0xffff,
            FatType::Fat32 => 0x0fff_ffff,
        }
    }

    /// Whether `cluster` names a data cluster.
    #[must_use]
    pub fn is_data(&self, cluster: u32) -> bool {
        cluster >= 2 && cluster - 2 < self.clusters
    }
}

/// Whether `sector` looks like a FAT boot sector rather than an MBR.
#[must_use]
pub fn is_boot_sector(sector: &[u8]) -> bool {
    matches!(sector.first(), Some(0xeb | 0xe9)) && Geometry::parse(sector, 0).is_some()
}

/// The first partition's start sector and length, if the MBR has one.
#[must_use]
pub fn first_partition(mbr: &[u8]) -> Option<(u64, u64)> {
    if !has_signature(mbr) || mbr.get(450).copied().unwrap_or(0) == 0 {
        return None;
    }
    let start = u32_at(mbr, 454);
    let len = u32_at(mbr, 458);
    (start != 0 && len != 0).then_some((u64::from(start), u64::from(len)))
}

/// A path's components: `/a/b.txt` is `["a", "b.txt"]`, `/` is `[]`.
/// Empty components (`//`) are ignored; `.` and `..` are refused.
pub fn components(path: &str) -> Result<Vec<&str>, Error> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    if parts.iter().any(|part| *part == "." || *part == "..") {
        return Err(Error::InvalidName);
    }
    Ok(parts)
}

/// Whether two names are the same, ignoring case (as FAT does).
#[must_use]
pub fn same_name(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FAT16 boot sector like `mkfs.fat -F 16` writes for 32 MiB:
    /// 4 sectors per cluster, 4 reserved, 2 FATs of 64 sectors, 512 root entries.
    fn fat16_boot() -> [u8; SECTOR] {
        let mut boot = [0u8; SECTOR];
        boot[0..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
        boot[0x0b..0x0d].copy_from_slice(&512u16.to_le_bytes());
        boot[0x0d] = 4;
        boot[0x0e..0x10].copy_from_slice(&4u16.to_le_bytes());
        boot[0x10] = 2;
        boot[0x11..0x13].copy_from_slice(&512u16.to_le_bytes());
        boot[0x13..0x15].copy_from_slice(&0u16.to_le_bytes());
        boot[0x16..0x18].copy_from_slice(&64u16.to_le_bytes());
        boot[0x20..0x24].copy_from_slice(&65536u32.to_le_bytes());
        boot[510] = 0x55;
        boot[511] = 0xaa;
        boot
    }

    #[test]
    fn parses_a_fat16_boot_sector() {
        let geometry = Geometry::parse(&fat16_boot(), 2048).unwrap();
        assert_eq!(geometry.fat_type, FatType::Fat16);
        assert_eq!(geometry.fat_start, 2052);
        assert_eq!(geometry.fats, 2);
        // (65536 - 4 - 128 - 32) / 4
        assert_eq!(geometry.clusters, 16343);
        assert_eq!(geometry.fsinfo, None);
        assert!(geometry.is_data(2) && geometry.is_data(16344) && !geometry.is_data(16345));
        assert!(!geometry.is_data(0) && !geometry.is_data(1));
    }

    #[test]
    fn refuses_nonsense() {
        let mut boot = fat16_boot();
        boot[0x0d] = 3;
        assert_eq!(Geometry::parse(&boot, 0), None);
        let mut boot = fat16_boot();
        boot[0x16..0x18].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(Geometry::parse(&boot, 0), None, "FAT too small");
        let mut boot = fat16_boot();
        boot[0x20..0x24].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            Geometry::parse(&boot, 0),
            None,
            "fewer sectors than metadata"
        );
        assert_eq!(Geometry::parse(&[0u8; SECTOR], 0), None);
        assert_eq!(Geometry::parse(&[0u8; 10], 0), None);
    }

    #[test]
    fn a_superfloppy_is_a_boot_sector_and_an_mbr_is_not() {
        let boot = fat16_boot();
        assert!(is_boot_sector(&boot));
        assert_eq!(first_partition(&boot), None);
        let mut mbr = [0u8; SECTOR];
        mbr[446 + 4] = 0x06;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&65536u32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert!(!is_boot_sector(&mbr));
        assert_eq!(first_partition(&mbr), Some((2048, 65536)));
    }

    #[test]
    fn paths_split_into_components() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/a//b.txt").unwrap(), ["a", "b.txt"]);
        assert_eq!(components("a/b").unwrap(), ["a", "b"]);
        assert_eq!(components("/a/../b"), Err(Error::InvalidName));
        assert!(same_name("Hello.TXT", "hello.txt"));
        assert!(!same_name("hello.txt", "hello.tx"));
    }
}
