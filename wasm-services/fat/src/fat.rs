//! The file allocation table: entries of 12, 16 or 32 bits read and written
//! through a small cache of FAT sectors, written back to every copy of the
//! FAT once per request (`commit`), the free-cluster count, and cluster
//! allocation. No directories or file data here.
//!
//! The cache holds clean sectors across requests (this service is the
//! volume's only writer while it is mounted, and any failure drops it);
//! dirty sectors never outlive a request: [`Fat::commit`] writes them, and a
//! failed request calls [`Fat::discard`]. A FAT12 entry can straddle two
//! sectors: entries are read and written a byte at a time.

use crate::disk::{Disk, DiskError, Sectors};
use crate::layout::{FatType, Geometry, SECTOR};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};

/// The most FAT sectors the cache holds (32 KiB).
const CACHED: usize = 64;

/// A FAT in memory, as far as it has been read.
pub struct Fat {
    geometry: Geometry,
    /// FAT sectors read (index from the start of the first FAT).
    sectors: BTreeMap<u32, Box<[u8; SECTOR]>>,
    /// Sectors changed since the last commit.
    dirty: BTreeSet<u32>,
    /// Free clusters, once counted.
    free: Option<u32>,
    /// Where the next search for a free cluster starts.
    next_free: u32,
    /// The free count changed since the FSInfo sector was last written.
    fsinfo_stale: bool,
}

/// Why a FAT access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatError {
    Disk(DiskError),
    /// No free cluster is left.
    Full,
    /// A cluster number outside the volume (a corrupt chain).
    Corrupt,
}

impl From<DiskError> for FatError {
    fn from(error: DiskError) -> Self {
        FatError::Disk(error)
    }
}

impl Fat {
    #[must_use]
    pub fn new(geometry: Geometry) -> Fat {
        Fat {
            geometry,
            sectors: BTreeMap::new(),
            dirty: BTreeSet::new(),
            free: None,
            next_free: 2,
            fsinfo_stale: false,
        }
    }

    /// Where entry `cluster` starts: its byte offset in the FAT.
    fn byte_of(&self, cluster: u32) -> Result<u64, FatError> {
        if cluster > self.geometry.clusters.saturating_add(1) {
            return Err(FatError::Corrupt);
        }
        let cluster = u64::from(cluster);
        Ok(match self.geometry.fat_type {
            FatType::Fat12 => cluster + cluster / 2,
            FatType::Fat16 => cluster * 2,
            FatType::Fat32 => cluster * 4,
        })
    }

    /// The FAT sector `index`, read if it is not cached.
    fn sector<S: Sectors>(
        &mut self,
        disk: &Disk<S>,
        index: u32,
    ) -> Result<&mut [u8; SECTOR], FatError> {
        if index >= self.geometry.fat_sectors {
            return Err(FatError::Corrupt);
        }
        if !self.sectors.contains_key(&index) {
            if self.sectors.len() >= CACHED {
                self.make_room(disk)?;
            }
            let mut bytes = Box::new([0u8; SECTOR]);
            disk.read(self.geometry.fat_start + u64::from(index), &mut bytes[..])?;
            self.sectors.insert(index, bytes);
        }
        self.sectors
            .get_mut(&index)
            .map(|bytes| &mut **bytes)
            .ok_or(FatError::Corrupt)
    }

    /// Drops a clean sector from a full cache (writing the dirty ones
    /// first if every sector is dirty).
    fn make_room<S: Sectors>(&mut self, disk: &Disk<S>) -> Result<(), FatError> {
        if self.dirty.len() >= self.sectors.len() {
            self.write_dirty(disk)?;
        }
        let clean = self
            .sectors
            .keys()
            .copied()
            .find(|index| !self.dirty.contains(index));
        if let Some(index) = clean {
            self.sectors.remove(&index);
        }
        Ok(())
    }

    fn byte<S: Sectors>(&mut self, disk: &Disk<S>, at: u64) -> Result<u8, FatError> {
        let index = u32::try_from(at / SECTOR as u64).map_err(|_| FatError::Corrupt)?;
        let sector = self.sector(disk, index)?;
        sector
            .get((at % SECTOR as u64) as usize)
            .copied()
            .ok_or(FatError::Corrupt)
    }

    fn set_byte<S: Sectors>(&mut self, disk: &Disk<S>, at: u64, value: u8) -> Result<(), FatError> {
        let index = u32::try_from(at / SECTOR as u64).map_err(|_| FatError::Corrupt)?;
        let sector = self.sector(disk, index)?;
        let byte = sector
            .get_mut((at % SECTOR as u64) as usize)
            .ok_or(FatError::Corrupt)?;
        if *byte != value {
            *byte = value;
            self.dirty.insert(index);
        }
        Ok(())
    }

    /// The entry of `cluster` (FAT32's reserved top four bits masked off).
    pub fn get<S: Sectors>(&mut self, disk: &Disk<S>, cluster: u32) -> Result<u32, FatError> {
        let at = self.byte_of(cluster)?;
        let width = match self.geometry.fat_type {
            FatType::Fat12 | FatType::Fat16 => 2,
            FatType::Fat32 => 4,
        };
        let mut bytes = [0u8; 4];
        for (offset, byte) in (0u64..).zip(bytes.iter_mut().take(width)) {
            *byte = self.byte(disk, at + offset)?;
        }
        let raw = u32::from_le_bytes(bytes);
        Ok(match self.geometry.fat_type {
            FatType::Fat12 if cluster % 2 == 1 => (raw >> 4) & 0xfff,
            FatType::Fat12 => raw & 0xfff,
            FatType::Fat16 => raw & 0xffff,
            FatType::Fat32 => raw & 0x0fff_ffff,
        })
    }

    /// Sets the entry of `cluster` (in the cache; [`Fat::commit`] writes it
    /// to every copy). FAT32 keeps the reserved top bits, FAT12 the other
    /// entry's half of a shared byte.
    pub fn set<S: Sectors>(
        &mut self,
        disk: &Disk<S>,
        cluster: u32,
        value: u32,
    ) -> Result<(), FatError> {
        let at = self.byte_of(cluster)?;
        let old = self.get(disk, cluster)?;
        match self.geometry.fat_type {
            FatType::Fat12 => {
                let value = value & 0xfff;
                let (first, second) = if cluster % 2 == 1 {
                    let kept = self.byte(disk, at)? & 0x0f;
                    (kept | ((value as u8 & 0x0f) << 4), (value >> 4) as u8)
                } else {
                    let kept = self.byte(disk, at + 1)? & 0xf0;
                    (value as u8, kept | ((value >> 8) as u8 & 0x0f))
                };
                self.set_byte(disk, at, first)?;
                self.set_byte(disk, at + 1, second)?;
            }
            FatType::Fat16 => {
                for (offset, byte) in (0u64..).zip((value as u16).to_le_bytes()) {
                    self.set_byte(disk, at + offset, byte)?;
                }
            }
            FatType::Fat32 => {
                let kept = u32::from(self.byte(disk, at + 3)? & 0xf0) << 24;
                let bytes = (kept | (value & 0x0fff_ffff)).to_le_bytes();
                for (offset, byte) in (0u64..).zip(bytes) {
                    self.set_byte(disk, at + offset, byte)?;
                }
            }
        }
        // Keep the free count (if known) in step.
        if let Some(free) = self.free {
            let now_free = value == 0;
            let was_free = old == 0;
            if now_free && !was_free {
                self.free = Some(free.saturating_add(1).min(self.geometry.clusters));
                self.fsinfo_stale = true;
            } else if was_free && !now_free {
                self.free = Some(free.saturating_sub(1));
                self.fsinfo_stale = true;
            }
        }
        Ok(())
    }

    /// Free clusters (counted from the FAT the first time).
    pub fn free<S: Sectors>(&mut self, disk: &Disk<S>) -> Result<u32, FatError> {
        if let Some(free) = self.free {
            return Ok(free);
        }
        let mut free = 0u32;
        for cluster in 2..self.geometry.clusters.saturating_add(2) {
            if self.get(disk, cluster)? == 0 {
                free += 1;
            }
        }
        self.free = Some(free);
        Ok(free)
    }

    /// Takes a free cluster, marks it the end of a chain and, if `after` is
    /// given, links it behind that cluster. Looks from `after + 1` first (so
    /// a growing file stays contiguous), else from the last cluster taken.
    pub fn allocate<S: Sectors>(
        &mut self,
        disk: &Disk<S>,
        after: Option<u32>,
    ) -> Result<u32, FatError> {
        if self.free(disk)? == 0 {
            return Err(FatError::Full);
        }
        let clusters = self.geometry.clusters;
        let start = after.map_or(self.next_free, |after| after.saturating_add(1));
        let start = if self.geometry.is_data(start) {
            start
        } else {
            2
        };
        let mut cluster = start;
        let mut found = None;
        for _ in 0..clusters {
            if self.get(disk, cluster)? == 0 {
                found = Some(cluster);
                break;
            }
            cluster = if self.geometry.is_data(cluster + 1) {
                cluster + 1
            } else {
                2
            };
        }
        let cluster = found.ok_or(FatError::Full)?;
        self.set(disk, cluster, self.geometry.end_of_chain())?;
        if let Some(after) = after {
            self.set(disk, after, cluster)?;
        }
        self.next_free = cluster;
        Ok(cluster)
    }

    /// Frees the chain from `first` (at most as many clusters as the volume
    /// has: a loop ends there). Returns how many were freed.
    pub fn free_chain<S: Sectors>(&mut self, disk: &Disk<S>, first: u32) -> Result<u32, FatError> {
        let mut cluster = first;
        let mut freed = 0u32;
        while self.geometry.is_data(cluster) && freed < self.geometry.clusters {
            let next = self.get(disk, cluster)?;
            if next == 0 {
                // Already free: the chain went astray.
                break;
            }
            self.set(disk, cluster, 0)?;
            freed += 1;
            cluster = next;
        }
        Ok(freed)
    }

    /// Writes every changed sector to every copy of the FAT.
    fn write_dirty<S: Sectors>(&mut self, disk: &Disk<S>) -> Result<(), FatError> {
        let dirty = core::mem::take(&mut self.dirty);
        for index in &dirty {
            let Some(bytes) = self.sectors.get(index) else {
                continue;
            };
            for copy in 0..self.geometry.fats {
                let at = self.geometry.fat_start
                    + u64::from(copy) * u64::from(self.geometry.fat_sectors)
                    + u64::from(*index);
                if let Err(error) = disk.write(at, &bytes[..]) {
                    self.dirty = dirty;
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    /// Writes the changed FAT sectors to every copy, and the free count to a
    /// FAT32 FSInfo sector.
    pub fn commit<S: Sectors>(&mut self, disk: &Disk<S>) -> Result<(), FatError> {
        self.write_dirty(disk)?;
        if let (Some(fsinfo), Some(free), true) =
            (self.geometry.fsinfo, self.free, self.fsinfo_stale)
        {
            let mut bytes = [0u8; SECTOR];
            disk.read(fsinfo, &mut bytes)?;
            if fsinfo_valid(&bytes) {
                let next = self.next_free;
                if let Some(field) = bytes.get_mut(488..496) {
                    field[..4].copy_from_slice(&free.to_le_bytes());
                    field[4..].copy_from_slice(&next.to_le_bytes());
                }
                disk.write(fsinfo, &bytes)?;
            }
            self.fsinfo_stale = false;
        }
        Ok(())
    }

    /// Forgets everything not committed (after a failed request): the next
    /// access reads the FAT from the disk again and counts free clusters
    /// afresh.
    pub fn discard(&mut self) {
        self.sectors.clear();
        self.dirty.clear();
        self.free = None;
        self.fsinfo_stale = false;
    }
}

/// Whether a FAT32 FSInfo sector carries its signatures.
fn fsinfo_valid(bytes: &[u8]) -> bool {
    let word = |at: usize| -> Option<u32> {
        let field: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(field))
    };
    word(0) == Some(0x4161_5252) && word(484) == Some(0x6141_7272)
}
