//! The file allocation table: entries of 12, 16 or 32 bits read and written
//! through a small cache of FAT sectors, written back to every copy of the
//! FAT once per request (`commit`), the free-cluster count, and cluster
//! allocation. No directories or file data here.
//!
//! The cache holds clean sectors across requests (this service is the
//! volume's only writer while it is mounted, and any failure drops it);
//! dirty sectors never outlive a request: [`Fat::commit`] writes them, and a
//! failed request calls [`Fat::discard`]. A FAT12 entry can straddle two
//! sectors: an entry is read and written as bytes that may come from two
//! cached sectors.

use crate::disk::{Disk, DiskError, Sectors};
use crate::layout::{FatType, Geometry, SECTOR};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// How many FAT sectors the cache holds (32 KiB), direct-mapped: sector
/// `index` lives in slot `index % SLOTS`, so a lookup is one comparison.
const SLOTS: usize = 64;

/// A cached FAT sector.
struct Slot {
    /// Which FAT sector it holds (`None`: empty).
    index: Option<u32>,
    dirty: bool,
    bytes: Box<[u8; SECTOR]>,
}

/// A FAT in memory, as far as it has been read.
pub struct Fat {
    geometry: Geometry,
    slots: Vec<Slot>,
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
            slots: (0..SLOTS)
                .map(|_| Slot {
                    index: None,
                    dirty: false,
                    bytes: Box::new([0u8; SECTOR]),
                })
                .collect(),
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

    /// Writes one slot's sector to every copy of the FAT.
    fn write_slot<S: Sectors>(&mut self, disk: &Disk<S>, slot: usize) -> Result<(), FatError> {
        let geometry = self.geometry;
        let Some(held) = self.slots.get_mut(slot) else {
            return Ok(());
        };
        let (Some(index), true) = (held.index, held.dirty) else {
            return Ok(());
        };
        for copy in 0..geometry.fats {
            let at = geometry.fat_start
                + u64::from(copy) * u64::from(geometry.fat_sectors)
                + u64::from(index);
            disk.write(at, &held.bytes[..])?;
        }
        held.dirty = false;
        Ok(())
    }

    /// The slot holding FAT sector `index`, read if it is not cached (a
    /// dirty sector it displaces is written first).
    fn slot<S: Sectors>(&mut self, disk: &Disk<S>, index: u32) -> Result<&mut Slot, FatError> {
        if index >= self.geometry.fat_sectors {
            return Err(FatError::Corrupt);
        }
        let slot = index as usize % SLOTS;
        let held = self.slots.get(slot).ok_or(FatError::Corrupt)?;
        if held.index != Some(index) {
            self.write_slot(disk, slot)?;
            let held = self.slots.get_mut(slot).ok_or(FatError::Corrupt)?;
            held.index = None;
            disk.read(
                self.geometry.fat_start + u64::from(index),
                &mut held.bytes[..],
            )?;
            held.index = Some(index);
        }
        self.slots.get_mut(slot).ok_or(FatError::Corrupt)
    }

    /// Reads `out.len()` bytes of the FAT from byte `at` (across a sector
    /// boundary if need be: a FAT12 entry can straddle one).
    fn bytes<S: Sectors>(
        &mut self,
        disk: &Disk<S>,
        at: u64,
        out: &mut [u8],
    ) -> Result<(), FatError> {
        let mut at = at;
        let mut done = 0;
        while done < out.len() {
            let index = u32::try_from(at / SECTOR as u64).map_err(|_| FatError::Corrupt)?;
            let offset = (at % SECTOR as u64) as usize;
            let take = (out.len() - done).min(SECTOR - offset);
            let slot = self.slot(disk, index)?;
            let source = slot
                .bytes
                .get(offset..offset + take)
                .ok_or(FatError::Corrupt)?;
            out.get_mut(done..done + take)
                .ok_or(FatError::Corrupt)?
                .copy_from_slice(source);
            done += take;
            at += take as u64;
        }
        Ok(())
    }

    /// Writes `data` into the FAT from byte `at` (in the cache).
    fn set_bytes<S: Sectors>(
        &mut self,
        disk: &Disk<S>,
        at: u64,
        data: &[u8],
    ) -> Result<(), FatError> {
        let mut at = at;
        let mut done = 0;
        while done < data.len() {
            let index = u32::try_from(at / SECTOR as u64).map_err(|_| FatError::Corrupt)?;
            let offset = (at % SECTOR as u64) as usize;
            let take = (data.len() - done).min(SECTOR - offset);
            let slot = self.slot(disk, index)?;
            let source = data.get(done..done + take).ok_or(FatError::Corrupt)?;
            slot.bytes
                .get_mut(offset..offset + take)
                .ok_or(FatError::Corrupt)?
                .copy_from_slice(source);
            slot.dirty = true;
            done += take;
            at += take as u64;
        }
        Ok(())
    }

    fn width(&self) -> usize {
        match self.geometry.fat_type {
            FatType::Fat12 | FatType::Fat16 => 2,
            FatType::Fat32 => 4,
        }
    }

    /// The entry of `cluster` (FAT32's reserved top four bits masked off).
    pub fn get<S: Sectors>(&mut self, disk: &Disk<S>, cluster: u32) -> Result<u32, FatError> {
        let at = self.byte_of(cluster)?;
        let mut bytes = [0u8; 4];
        let width = self.width();
        self.bytes(disk, at, bytes.get_mut(..width).ok_or(FatError::Corrupt)?)?;
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
        let width = self.width();
        let mut bytes = [0u8; 4];
        self.bytes(disk, at, bytes.get_mut(..width).ok_or(FatError::Corrupt)?)?;
        let raw = u32::from_le_bytes(bytes);
        let (old, new) = match self.geometry.fat_type {
            FatType::Fat12 if cluster % 2 == 1 => {
                ((raw >> 4) & 0xfff, (raw & 0x000f) | ((value & 0xfff) << 4))
            }
            FatType::Fat12 => (raw & 0xfff, (raw & 0xf000) | (value & 0xfff)),
            FatType::Fat16 => (raw & 0xffff, value & 0xffff),
            FatType::Fat32 => (
                raw & 0x0fff_ffff,
                (raw & 0xf000_0000) | (value & 0x0fff_ffff),
            ),
        };
        let new = new.to_le_bytes();
        self.set_bytes(disk, at, new.get(..width).ok_or(FatError::Corrupt)?)?;
        // Keep the free count (if known) in step.
        if let Some(free) = self.free {
            let (was_free, now_free) = (old == 0, value == 0);
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
        for slot in 0..self.slots.len() {
            self.write_slot(disk, slot)?;
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
        for slot in &mut self.slots {
            slot.index = None;
            slot.dirty = false;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::rc::Rc;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    /// Sectors in memory.
    #[derive(Clone)]
    struct Memory(Rc<RefCell<Vec<u8>>>);

    impl Sectors for Memory {
        fn capacity(&self) -> Result<u64, DiskError> {
            Ok((self.0.borrow().len() / SECTOR) as u64)
        }

        fn read(&self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError> {
            let start = sector as usize * SECTOR;
            let bytes = self.0.borrow();
            let source = bytes
                .get(start..start + buffer.len())
                .ok_or(DiskError::Refused)?;
            buffer.copy_from_slice(source);
            Ok(())
        }

        fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
            let start = sector as usize * SECTOR;
            let mut bytes = self.0.borrow_mut();
            bytes
                .get_mut(start..start + data.len())
                .ok_or(DiskError::Refused)?
                .copy_from_slice(data);
            Ok(())
        }

        fn flush(&self) -> Result<(), DiskError> {
            Ok(())
        }
    }

    /// A FAT12 volume's tables: one reserved sector, two FATs of 9 sectors
    /// (sectors 1-9 and 10-18), 2,000 clusters.
    fn fat12() -> (Geometry, Memory) {
        let geometry = Geometry {
            fat_type: FatType::Fat12,
            start: 0,
            sectors_per_cluster: 1,
            fat_start: 1,
            fat_sectors: 9,
            fats: 2,
            clusters: 2000,
            fsinfo: None,
            data_start: 33,
            root_start: 19,
            root_sectors: 14,
            root_cluster: 0,
        };
        (
            geometry,
            Memory(Rc::new(RefCell::new(vec![0u8; 2100 * SECTOR]))),
        )
    }

    #[test]
    fn fat12_entries_straddle_sector_boundaries() {
        let (geometry, memory) = fat12();
        let disk = Disk::open(memory.clone()).unwrap();
        let mut fat = Fat::new(geometry);
        // Cluster 341 (odd) is bytes 511-512: its low nibble in the last
        // byte of FAT sector 0, its high byte first in sector 1. Cluster 682
        // (even) is bytes 1023-1024, across sectors 1 and 2.
        for (cluster, value) in [
            (340, 0xabc),
            (341, 0x123),
            (342, 0xfff),
            (682, 0x456),
            (683, 0x789),
        ] {
            fat.set(&disk, cluster, value).unwrap();
        }
        fat.commit(&disk).unwrap();
        {
            let bytes = memory.0.borrow();
            let first = SECTOR; // FAT sector 0
            // 340 even: bytes 510 (low 8 bits) and 511 (low nibble).
            assert_eq!(bytes[first + 510], 0xbc);
            assert_eq!(
                bytes[first + 511],
                0x3a,
                "341's low nibble over 340's high one"
            );
            assert_eq!(
                bytes[first + 512],
                0x12,
                "341's high byte, in the next sector"
            );
            assert_eq!(bytes[first + 1023], 0x56, "682's low byte, end of sector 1");
            assert_eq!(
                bytes[first + 1024],
                0x94,
                "683's low nibble over 682's high one"
            );
            // The second FAT is the same.
            let second = 10 * SECTOR;
            assert_eq!(
                bytes[first..first + 9 * SECTOR],
                bytes[second..second + 9 * SECTOR]
            );
        }
        // A fresh FAT reads them back from the disk.
        let disk = Disk::open(memory.clone()).unwrap();
        let mut fresh = Fat::new(geometry);
        for (cluster, value) in [
            (340, 0xabc),
            (341, 0x123),
            (342, 0xfff),
            (682, 0x456),
            (683, 0x789),
        ] {
            assert_eq!(
                fresh.get(&disk, cluster).unwrap(),
                value,
                "cluster {cluster}"
            );
        }
        assert_eq!(fresh.get(&disk, 339).unwrap(), 0);
        assert_eq!(
            fresh.get(&disk, 2002),
            Err(FatError::Corrupt),
            "past the volume"
        );
        assert_eq!(fresh.free(&disk).unwrap(), 2000 - 5);
    }

    #[test]
    fn allocation_is_bounded_and_a_looping_chain_ends() {
        let (geometry, memory) = fat12();
        let disk = Disk::open(memory).unwrap();
        let mut fat = Fat::new(geometry);
        // Every cluster taken but one.
        let first = fat.allocate(&disk, None).unwrap();
        let mut last = first;
        for _ in 1..1999 {
            last = fat.allocate(&disk, Some(last)).unwrap();
        }
        assert_eq!(fat.free(&disk).unwrap(), 1);
        let spare = fat.allocate(&disk, None).unwrap();
        assert_eq!(fat.allocate(&disk, None), Err(FatError::Full));
        // A chain that loops back on itself: freeing it ends.
        fat.set(&disk, spare, first).unwrap();
        fat.set(&disk, last, spare).unwrap();
        assert_eq!(fat.free_chain(&disk, first).unwrap(), 2000);
        assert_eq!(fat.free(&disk).unwrap(), 2000);
    }
}
