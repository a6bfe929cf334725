//! The `fs` protocol on an embedded-sdmmc volume.

use crate::disk::{Disk, DiskError, MAX_SECTORS, Sectors};
use crate::layout::{FatType, Geometry, SECTOR, components, first_partition, same_name};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::block;
use atoll_protocols::fs::{Entry, Error, MAX_DATA, MAX_ENTRIES, Request, Response};
use atoll_sdk::MAX_MESSAGE_LEN;
use core::cell::{Cell, RefCell};
use core::ops::ControlFlow;
use embedded_sdmmc::{
    DirEntry, LfnBuffer, Mode, RawDirectory, RawFile, RawVolume, ShortFileName, TimeSource,
    Timestamp, VolumeIdx, VolumeManager,
};

type Manager<S> = VolumeManager<Disk<S>, Clock, 4, 2, 1>;
type SdmmcError = embedded_sdmmc::Error<DiskError>;

/// The largest gap a write past the end of a file may zero-fill.
const MAX_GAP: u32 = 16 << 20;

/// The longest long name, in UTF-8 bytes (255 UTF-16 units).
const LONG_NAME: usize = 255 * 3;

/// No real-time clock: files are stamped 2025-01-01 00:00.
pub struct Clock;

impl TimeSource for Clock {
    fn get_timestamp(&self) -> Timestamp {
        Timestamp {
            year_since_1970: 55,
            zero_indexed_month: 0,
            zero_indexed_day: 0,
            hours: 0,
            minutes: 0,
            seconds: 0,
        }
    }
}

/// A failed operation: the answer, and whether the mount must be dropped
/// (the disk failed, or this service changed the FAT behind embedded-sdmmc).
struct Failure {
    error: Error,
    remount: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            remount: false,
        }
    }
}

impl From<DiskError> for Failure {
    fn from(_: DiskError) -> Self {
        Failure {
            error: Error::Device,
            remount: true,
        }
    }
}

impl From<SdmmcError> for Failure {
    fn from(error: SdmmcError) -> Self {
        use embedded_sdmmc::Error as E;
        let (error, remount) = match error {
            E::DeviceError(_) => (Error::Device, true),
            E::NotFound => (Error::NotFound, false),
            E::FileAlreadyExists | E::DirAlreadyExists => (Error::Exists, false),
            E::OpenedDirAsFile => (Error::IsADirectory, false),
            E::OpenedFileAsDir => (Error::NotADirectory, false),
            E::FilenameError(_) => (Error::InvalidName, false),
            E::NotEnoughSpace | E::DiskFull => (Error::NoSpace, false),
            E::ReadOnly => (Error::Other("the file is read-only".to_string()), false),
            // Handle bookkeeping out of step, or a volume embedded-sdmmc
            // finds inconsistent: start afresh on the next request.
            other => (Error::Other(format!("{other}")), true),
        };
        Failure { error, remount }
    }
}

type Outcome<T> = Result<T, Failure>;

/// What the start-up log says about the volume.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub fat_type: FatType,
    pub superfloppy: bool,
    pub label: Option<String>,
    pub bytes: u64,
    pub free: u64,
}

/// The mounted volume.
struct Mount<S: Sectors> {
    manager: Manager<S>,
    volume: RawVolume,
    geometry: Geometry,
    /// This service wrote the FAT behind embedded-sdmmc's back: mount afresh
    /// before the next request.
    stale: Cell<bool>,
    /// The file the last `Read` opened, kept open for the next one.
    reading: RefCell<Option<Reading>>,
}

/// The file last read, still open: a `Read` of the same path reuses it, so
/// sequential reads neither search the directories again nor walk the
/// cluster chain from the start (embedded-sdmmc keeps the file's current
/// cluster, and a seek forward walks on from there). Only requests that
/// change the volume could make it wrong: they close it first, and so does
/// any error; it lives no longer than the mount.
struct Reading {
    /// The path's components, as the request gave them.
    path: Vec<String>,
    file: RawFile,
    size: u64,
}

/// The file system service's state: the disk and, once it could be read, the
/// mounted volume (dropped on any disk failure, mounted again on the next
/// request).
pub struct FileSystem<S: Sectors + Clone> {
    io: S,
    mount: Option<Mount<S>>,
}

impl<S: Sectors + Clone> FileSystem<S> {
    #[must_use]
    pub fn new(io: S) -> Self {
        FileSystem { io, mount: None }
    }

    fn mounted(&mut self) -> Result<&Mount<S>, Error> {
        if self.mount.is_none() {
            self.mount = Some(Mount::new(self.io.clone())?);
        }
        self.mount.as_ref().ok_or(Error::NoVolume)
    }

    /// Mounts the volume (if it is not) and describes it, counting free space.
    pub fn summary(&mut self) -> Result<Summary, Error> {
        let mount = self.mounted()?;
        let summary = mount.summary();
        if summary.is_err() {
            self.mount = None;
        }
        summary.map_err(|failure| failure.error)
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Response {
        let modifies = matches!(
            request,
            Request::Write { .. } | Request::Create { .. } | Request::Remove { .. }
        );
        let mount = match self.mounted() {
            Ok(mount) => mount,
            Err(error) => return Response::Error(error),
        };
        if modifies {
            mount.forget_reading();
        }
        let mut outcome = match request {
            Request::Open { path } => mount.open(&path).map(Response::Entry),
            Request::List { path, start } => mount.list(&path, start),
            Request::Read { path, offset, len } => {
                mount.read(&path, offset, len).map(Response::Data)
            }
            Request::Write { path, offset, data } => mount
                .write(&path, offset, &data)
                .map(|()| Response::Written(data.len() as u32)),
            Request::Create { path } => mount.create(&path).map(|()| Response::Done),
            Request::Remove { path } => mount.remove(&path).map(|()| Response::Done),
        };
        if modifies && outcome.is_ok() {
            let flushed = mount.manager.device(|disk| disk.io().flush());
            if let Err(error) = flushed {
                outcome = Err(error.into());
            }
        }
        let stale = mount.stale.get();
        match outcome {
            Ok(response) => {
                if stale {
                    self.mount = None;
                }
                response
            }
            Err(failure) => {
                mount.forget_reading();
                if failure.remount || stale {
                    self.mount = None;
                }
                Response::Error(failure.error)
            }
        }
    }
}

impl<S: Sectors> Mount<S> {
    fn new(io: S) -> Result<Mount<S>, Error> {
        // A driver without a disk means no volume; any other failure is the
        // driver's.
        let failed = |error: DiskError| match error {
            DiskError::Device(block::Error::NoDevice) => Error::NoVolume,
            _ => Error::Device,
        };
        let disk = Disk::open(io).map_err(failed)?;
        // Check the boot sector ourselves first: embedded-sdmmc trusts it.
        let mut sector = [0u8; SECTOR];
        disk.read(0, &mut sector).map_err(failed)?;
        let (start, _) = first_partition(&sector).ok_or(Error::NoVolume)?;
        disk.read(start, &mut sector).map_err(failed)?;
        let geometry = Geometry::parse(&sector, start).ok_or(Error::NoVolume)?;
        if geometry.fat_type == FatType::Fat12 {
            return Err(Error::NoVolume);
        }
        let manager = VolumeManager::new_with_limits(disk, Clock, 1);
        let volume = manager
            .open_raw_volume(VolumeIdx(0))
            .map_err(|error| match error {
                embedded_sdmmc::Error::DeviceError(_) => Error::Device,
                _ => Error::NoVolume,
            })?;
        Ok(Mount {
            manager,
            volume,
            geometry,
            stale: Cell::new(false),
            reading: RefCell::new(None),
        })
    }

    /// Closes the file kept open for reading, if any.
    fn forget_reading(&self) {
        if let Some(reading) = self.reading.take() {
            // Read-only: closing writes nothing, and a failure here only
            // means embedded-sdmmc no longer knows the handle.
            let _ = self.manager.close_file(reading.file);
        }
    }

    fn summary(&self) -> Outcome<Summary> {
        let geometry = self.geometry;
        let label = self
            .manager
            .get_root_volume_label(self.volume)?
            .map(|name| format!("{name}"))
            .filter(|name| !name.is_empty() && name != "NO NAME");
        let free = self.manager.device(|disk| free_clusters(disk, &geometry))?;
        Ok(Summary {
            fat_type: geometry.fat_type,
            superfloppy: self.manager.device(|disk| disk.superfloppy()),
            label,
            bytes: u64::from(geometry.clusters) * geometry.bytes_per_cluster(),
            free: u64::from(free) * geometry.bytes_per_cluster(),
        })
    }

    /// Runs `body` on the directory at `path` (a list of components), closing
    /// every directory it opened whatever happens.
    fn in_directory<T>(
        &self,
        path: &[&str],
        body: impl FnOnce(RawDirectory) -> Outcome<T>,
    ) -> Outcome<T> {
        let mut directory = self.manager.open_root_dir(self.volume)?;
        for name in path {
            let child = self.lookup(directory, name).and_then(|found| {
                if found.entry.attributes.is_directory() {
                    Ok(self.manager.open_dir(directory, found.entry.name)?)
                } else {
                    Err(Error::NotADirectory.into())
                }
            });
            let _ = self.manager.close_dir(directory);
            directory = child?;
        }
        let result = body(directory);
        let _ = self.manager.close_dir(directory);
        result
    }

    /// The entry called `name` in `directory`, by its short name or
    /// (ignoring case) its long one.
    fn lookup(&self, directory: RawDirectory, name: &str) -> Outcome<Found> {
        let short = ShortFileName::create_from_str(name).ok();
        let mut storage = [0u8; LONG_NAME];
        let mut long_name = LfnBuffer::new(&mut storage);
        let mut found = None;
        self.manager
            .iterate_dir_lfn(directory, &mut long_name, |entry, long| {
                let by_short = short.as_ref().is_some_and(|short| *short == entry.name);
                let by_long = long.is_some_and(|long| same_name(long, name));
                if entry.attributes.is_volume() || !(by_short || by_long) {
                    return ControlFlow::Continue(());
                }
                found = Some(Found {
                    entry: entry.clone(),
                    long: long.map(String::from),
                });
                ControlFlow::Break(())
            })?;
        found.ok_or_else(|| Error::NotFound.into())
    }

    fn open(&self, path: &str) -> Outcome<Entry> {
        let parts = components(path)?;
        let Some((last, parents)) = parts.split_last() else {
            return Ok(Entry {
                name: "/".to_string(),
                size: 0,
                directory: true,
            });
        };
        self.in_directory(parents, |directory| {
            Ok(self.lookup(directory, last)?.to_entry())
        })
    }

    fn list(&self, path: &str, start: u32) -> Outcome<Response> {
        let parts = components(path)?;
        self.in_directory(&parts, |directory| {
            let mut entries = Vec::new();
            // Long names can be 765 bytes: stop early rather than answer
            // more than a message holds.
            let mut room = MAX_MESSAGE_LEN - 16;
            let mut index = 0u32;
            let mut more = false;
            let mut storage = [0u8; LONG_NAME];
            let mut long_name = LfnBuffer::new(&mut storage);
            self.manager
                .iterate_dir_lfn(directory, &mut long_name, |entry, long| {
                    if entry.attributes.is_volume()
                        || entry.name == ShortFileName::this_dir()
                        || entry.name == ShortFileName::parent_dir()
                    {
                        return ControlFlow::Continue(());
                    }
                    if index >= start {
                        let found = Found {
                            entry: entry.clone(),
                            long: long.map(String::from),
                        }
                        .to_entry();
                        // Name with its length, size, flag (postcard varints).
                        let cost = found.name.len() + 2 + 10 + 1;
                        if entries.len() >= MAX_ENTRIES as usize || cost > room {
                            more = true;
                            return ControlFlow::Break(());
                        }
                        room -= cost;
                        entries.push(found);
                    }
                    index += 1;
                    ControlFlow::Continue(())
                })?;
            Ok(Response::Entries { entries, more })
        })
    }

    fn read(&self, path: &str, offset: u64, len: u32) -> Outcome<Vec<u8>> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::IsADirectory)?;
        let kept = self
            .reading
            .borrow()
            .as_ref()
            .filter(|reading| reading.path.iter().eq(parts.iter()))
            .map(|reading| (reading.file, reading.size));
        let (file, size) = match kept {
            Some(kept) => kept,
            None => {
                // At most one file open for reading (and none that a lookup
                // below could find already open).
                self.forget_reading();
                let opened = self.in_directory(parents, |directory| {
                    let found = self.lookup(directory, last)?;
                    if found.entry.attributes.is_directory() {
                        return Err(Error::IsADirectory.into());
                    }
                    let file = self.manager.open_file_in_dir(
                        directory,
                        found.entry.name,
                        Mode::ReadOnly,
                    )?;
                    Ok((file, u64::from(found.entry.size)))
                })?;
                *self.reading.borrow_mut() = Some(Reading {
                    path: parts.iter().map(|part| (*part).to_string()).collect(),
                    file: opened.0,
                    size: opened.1,
                });
                opened
            }
        };
        if offset >= size {
            return Ok(Vec::new());
        }
        let want = u64::from(len.min(MAX_DATA)).min(size - offset);
        let mut data = vec![0u8; want as usize];
        // On an error the caller closes the file (its position is unknown).
        let got = self.read_at(file, offset, &mut data)?;
        data.truncate(got);
        Ok(data)
    }

    fn read_at(&self, file: RawFile, offset: u64, data: &mut [u8]) -> Outcome<usize> {
        let offset = u32::try_from(offset).map_err(|_| Error::Other("offset past 4 GiB".into()))?;
        self.manager.file_seek_from_start(file, offset)?;
        let mut got = 0;
        while let Some(rest) = data.get_mut(got..).filter(|rest| !rest.is_empty()) {
            match self.manager.read(file, rest)? {
                0 => break,
                count => got += count,
            }
        }
        Ok(got)
    }

    fn write(&self, path: &str, offset: u64, data: &[u8]) -> Outcome<()> {
        if data.len() > MAX_DATA as usize {
            return Err(Error::Other(format!("at most {MAX_DATA} bytes per write")).into());
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > u64::from(embedded_sdmmc::MAX_FILE_SIZE) {
            return Err(Error::Other("a FAT file ends before 4 GiB".into()).into());
        }
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::IsADirectory)?;
        self.in_directory(parents, |directory| {
            let file = match self.lookup(directory, last) {
                Ok(found) if found.entry.attributes.is_directory() => {
                    return Err(Error::IsADirectory.into());
                }
                Ok(found) => self.manager.open_file_in_dir(
                    directory,
                    found.entry.name,
                    Mode::ReadWriteAppend,
                )?,
                Err(Failure {
                    error: Error::NotFound,
                    ..
                }) => {
                    let name = short_name(last)?;
                    gap_allowed(0, offset as u32)?;
                    self.manager
                        .open_file_in_dir(directory, name, Mode::ReadWriteCreate)?
                }
                Err(failure) => return Err(failure),
            };
            let result = self.write_at(file, offset as u32, data);
            // Closing writes the directory entry (size, first cluster).
            let closed = self.manager.close_file(file);
            result?;
            Ok(closed?)
        })
    }

    fn write_at(&self, file: RawFile, offset: u32, data: &[u8]) -> Outcome<()> {
        let length = self.manager.file_length(file)?;
        if offset > length {
            // Fill the gap with zeros (FAT has no holes). One request holds
            // the service, so the gap is bounded.
            gap_allowed(length, offset)?;
            self.manager.file_seek_from_end(file, 0)?;
            let zeros = [0u8; MAX_DATA as usize];
            let mut at = length;
            while at < offset {
                let step = (offset - at).min(MAX_DATA);
                self.manager
                    .write(file, zeros.get(..step as usize).unwrap_or(&zeros))?;
                at += step;
            }
        } else {
            self.manager.file_seek_from_start(file, offset)?;
        }
        if !data.is_empty() {
            self.manager.write(file, data)?;
        }
        Ok(())
    }

    fn create(&self, path: &str) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::Exists)?;
        self.in_directory(parents, |directory| {
            match self.lookup(directory, last) {
                Ok(_) => return Err(Error::Exists.into()),
                Err(Failure {
                    error: Error::NotFound,
                    ..
                }) => {}
                Err(failure) => return Err(failure),
            }
            let name = short_name(last)?;
            let file = self
                .manager
                .open_file_in_dir(directory, name, Mode::ReadWriteCreate)?;
            Ok(self.manager.close_file(file)?)
        })
    }

    fn remove(&self, path: &str) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::IsADirectory)?;
        let first_cluster = self.in_directory(parents, |directory| {
            let found = self.lookup(directory, last)?;
            if found.entry.attributes.is_directory() {
                return Err(Error::IsADirectory.into());
            }
            if found.long.is_some() {
                // embedded-sdmmc would leave the long name's entries behind.
                return Err(Error::Other("files with long names are read-only".into()).into());
            }
            // The first cluster, from the entry on disk (embedded-sdmmc keeps
            // its number private).
            let mut sector = [0u8; SECTOR];
            let at = u64::from(found.entry.entry_block.0);
            self.manager.device(|disk| disk.read(at, &mut sector))?;
            let field = |offset: usize| {
                let at = found.entry.entry_offset as usize + offset;
                match sector.get(at..at + 2) {
                    Some(&[low, high]) => u32::from(u16::from_le_bytes([low, high])),
                    _ => 0,
                }
            };
            let high = match self.geometry.fat_type {
                FatType::Fat32 => field(20) << 16,
                FatType::Fat12 | FatType::Fat16 => 0,
            };
            let cluster = high | field(26);
            self.manager
                .delete_entry_in_dir(directory, found.entry.name)?;
            Ok(cluster)
        })?;
        // embedded-sdmmc frees the entry but not the file's clusters: free the
        // chain in every FAT copy, then mount afresh (its cached FAT block and
        // free-cluster hints are stale now).
        let geometry = self.geometry;
        let freed = self
            .manager
            .device(|disk| free_chain(disk, &geometry, first_cluster));
        self.stale.set(true);
        Ok(freed?)
    }
}

/// A directory entry and its long name, if it has one.
struct Found {
    entry: DirEntry,
    long: Option<String>,
}

impl Found {
    fn to_entry(&self) -> Entry {
        Entry {
            name: self
                .long
                .clone()
                .unwrap_or_else(|| format!("{}", self.entry.name)),
            size: u64::from(self.entry.size),
            directory: self.entry.attributes.is_directory(),
        }
    }
}

/// Refuses a write at `offset` of a file of `length` bytes that would
/// zero-fill more than [`MAX_GAP`] bytes.
fn gap_allowed(length: u32, offset: u32) -> Outcome<()> {
    if offset.saturating_sub(length) > MAX_GAP {
        return Err(Error::Other(format!(
            "a write may start at most {MAX_GAP} bytes past the end of the file"
        ))
        .into());
    }
    Ok(())
}

/// The 8.3 name a new file gets (FAT names are upper case).
fn short_name(name: &str) -> Outcome<ShortFileName> {
    ShortFileName::create_from_str(name).map_err(|_| Error::InvalidName.into())
}

/// A FAT sector being edited, written back to every copy of the FAT.
struct FatSector {
    index: u32,
    bytes: [u8; SECTOR],
}

/// Frees the cluster chain starting at `first` in every FAT copy (and counts
/// the clusters back into a FAT32 FSInfo sector).
fn free_chain<S: Sectors>(
    disk: &Disk<S>,
    geometry: &Geometry,
    first: u32,
) -> Result<(), DiskError> {
    let write_back = |sector: &FatSector| -> Result<(), DiskError> {
        for copy in 0..geometry.fats {
            let at = geometry.fat_start
                + u64::from(copy) * u64::from(geometry.fat_sectors)
                + u64::from(sector.index);
            disk.write(at, &sector.bytes)?;
        }
        Ok(())
    };
    let mut current: Option<FatSector> = None;
    let mut cluster = first;
    let mut freed = 0u32;
    // A chain is never longer than the volume (a loop would be corrupt).
    while geometry.is_data(cluster) && freed < geometry.clusters {
        let Some((index, offset)) = geometry.entry_location(cluster) else {
            break;
        };
        if current.as_ref().is_none_or(|sector| sector.index != index) {
            if let Some(sector) = &current {
                write_back(sector)?;
            }
            let mut bytes = [0u8; SECTOR];
            disk.read(geometry.fat_start + u64::from(index), &mut bytes)?;
            current = Some(FatSector { index, bytes });
        }
        let Some(sector) = current.as_mut() else {
            break;
        };
        let next = geometry.entry(&sector.bytes, offset);
        geometry.free_entry(&mut sector.bytes, offset);
        freed += 1;
        cluster = next;
    }
    if let Some(sector) = &current {
        write_back(sector)?;
    }
    if let Some(fsinfo) = geometry.fsinfo
        && freed > 0
    {
        let mut bytes = [0u8; SECTOR];
        disk.read(fsinfo, &mut bytes)?;
        if let Some(count) = fsinfo_free(&bytes) {
            let count = count.saturating_add(freed).min(geometry.clusters);
            if let Some(field) = bytes.get_mut(488..492) {
                field.copy_from_slice(&count.to_le_bytes());
                disk.write(fsinfo, &bytes)?;
            }
        }
    }
    Ok(())
}

/// The free-cluster count of a FAT32 FSInfo sector, if it has a known one.
fn fsinfo_free(bytes: &[u8]) -> Option<u32> {
    let word = |at: usize| -> Option<u32> {
        let field: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(field))
    };
    let valid = word(0)? == 0x4161_5252 && word(484)? == 0x6141_7272;
    let count = word(488)?;
    (valid && count != u32::MAX).then_some(count)
}

/// Free clusters: from the FSInfo sector on FAT32 when it knows, else by
/// reading the first FAT.
fn free_clusters<S: Sectors>(disk: &Disk<S>, geometry: &Geometry) -> Result<u32, DiskError> {
    if let Some(fsinfo) = geometry.fsinfo {
        let mut bytes = [0u8; SECTOR];
        disk.read(fsinfo, &mut bytes)?;
        if let Some(count) = fsinfo_free(&bytes).filter(|count| *count <= geometry.clusters) {
            return Ok(count);
        }
    }
    let Some(entry_len) = geometry.entry_len() else {
        return Ok(0);
    };
    let per_sector = (SECTOR / entry_len) as u64;
    let last = u64::from(geometry.clusters) + 1;
    let sectors = (last / per_sector + 1).min(u64::from(geometry.fat_sectors));
    let mut free = 0u32;
    let mut buffer = [0u8; MAX_SECTORS * SECTOR];
    let mut sector = 0u64;
    while sector < sectors {
        let count = (sectors - sector).min(MAX_SECTORS as u64);
        let bytes = buffer
            .get_mut(..count as usize * SECTOR)
            .ok_or(DiskError::Refused)?;
        disk.read(geometry.fat_start + sector, bytes)?;
        for (index, entry) in bytes.chunks_exact(entry_len).enumerate() {
            let cluster = sector * per_sector + index as u64;
            if (2..=last).contains(&cluster) && geometry.entry(entry, 0) == 0 {
                free += 1;
            }
        }
        sector += count;
    }
    Ok(free)
}
