//! The `fs` protocol on an embedded-sdmmc volume.

use crate::disk::{Disk, DiskError, MAX_SECTORS, Sectors};
use crate::layout::{FatType, Geometry, SECTOR, components, first_partition, same_name};
use crate::names::{
    DELETED, ENTRY, LONG_NAME_ATTRIBUTE, alias, alias_text, is_short, is_valid_long, long_entries,
};
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

/// Time stamps of new and changed entries: the real-time clock (the kernel's,
/// through WASI `clock_time_get`); on the host, and if the kernel does not
/// answer, 2025-01-01 00:00 UTC.
pub struct Clock;

/// 2025-01-01 00:00:00 UTC.
const FALLBACK_TIME: u64 = 1_735_689_600;

impl Clock {
    /// Seconds since 1970-01-01 UTC.
    #[must_use]
    pub fn now() -> u64 {
        #[cfg(target_family = "wasm")]
        if let Some(ns) = atoll_sdk::wall_clock_ns() {
            return ns / 1_000_000_000;
        }
        FALLBACK_TIME
    }
}

impl TimeSource for Clock {
    fn get_timestamp(&self) -> Timestamp {
        let (date, time) = crate::names::fat_date_time(Clock::now());
        Timestamp::from_fat(date, time)
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
    /// Free clusters, counted once per mount and kept as writes take them.
    free: Cell<Option<u32>>,
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
        // Requests made of two steps, each with a fresh mount: the second
        // must not meet embedded-sdmmc's view of sectors the first wrote
        // past it.
        match &request {
            Request::Write { path, offset, .. } => {
                // Tried as it is first: a missing file with an 8.3 name is
                // created in the same step, one needing a long name is not.
                let first = self.step(request.clone());
                if first == Response::Error(Error::NotFound) {
                    if let Err(failure) = u32::try_from(*offset)
                        .map_err(|_| Error::Other("offset past 4 GiB".into()).into())
                        .and_then(|offset| gap_allowed(0, offset))
                    {
                        return Response::Error(failure.error);
                    }
                    match self.handle(Request::Create { path: path.clone() }) {
                        Response::Done | Response::Error(Error::Exists) => {}
                        other => return other,
                    }
                } else {
                    return first;
                }
            }
            Request::Rename { from, to } => {
                let (Response::Entry(source), Response::Entry(target)) = (
                    self.handle(Request::Open { path: from.clone() }),
                    self.handle(Request::Open { path: to.clone() }),
                ) else {
                    return self.step(request);
                };
                if crate::layout::same_name(from, to) {
                    return Response::Done;
                }
                let removed = match (source.directory, target.directory) {
                    (false, false) => self.handle(Request::Remove { path: to.clone() }),
                    (true, true) => self.handle(Request::RemoveDirectory { path: to.clone() }),
                    (false, true) => Response::Error(Error::IsADirectory),
                    (true, false) => Response::Error(Error::NotADirectory),
                };
                if removed != Response::Done {
                    return removed;
                }
            }
            _ => {}
        }
        self.step(request)
    }

    /// Answers one request in one step.
    fn step(&mut self, request: Request) -> Response {
        let modifies = !matches!(
            request,
            Request::Open { .. } | Request::List { .. } | Request::Read { .. }
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
            Request::Remove { path } => mount.remove(&path, false).map(|()| Response::Done),
            Request::OpenFile {
                path,
                create,
                exclusive,
                truncate,
            } => mount
                .open_file(&path, create, exclusive, truncate)
                .map(Response::Entry),
            Request::CreateDirectory { path } => {
                mount.create_directory(&path).map(|()| Response::Done)
            }
            Request::RemoveDirectory { path } => mount.remove(&path, true).map(|()| Response::Done),
            Request::Rename { from, to } => mount.rename(&from, &to).map(|()| Response::Done),
            Request::SetSize { path, size } => mount.set_size(&path, size).map(|()| Response::Done),
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
            free: Cell::new(None),
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
                modified: 0,
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
                        // Name with its length, size, flag, time (postcard varints).
                        let cost = found.name.len() + 2 + 10 + 1 + 10;
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
                    if !is_short(last) {
                        // Made with its long name by `create` first (see
                        // `FileSystem::handle`).
                        return Err(Error::NotFound.into());
                    }
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
        let cluster = self.geometry.bytes_per_cluster();
        let end = u64::from(offset) + data.len() as u64;
        let needed = end
            .max(u64::from(length))
            .div_ceil(cluster)
            .saturating_sub(u64::from(length).div_ceil(cluster));
        self.take_clusters(u32::try_from(needed).unwrap_or(u32::MAX))?;
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
        self.in_directory(parents, |directory| match self.lookup(directory, last) {
            Ok(_) => Err(Error::Exists.into()),
            Err(Failure {
                error: Error::NotFound,
                ..
            }) => Ok(()),
            Err(failure) => Err(failure),
        })?;
        self.create_entry(parents, last, false).map(|_| ())
    }

    /// `open` with POSIX's flags: the entry, after creating or emptying it.
    fn open_file(
        &self,
        path: &str,
        create: bool,
        exclusive: bool,
        truncate: bool,
    ) -> Outcome<Entry> {
        let parts = components(path)?;
        let Some((last, parents)) = parts.split_last() else {
            return if create || truncate {
                Err(Error::IsADirectory.into())
            } else {
                self.open(path)
            };
        };
        let found = self.in_directory(parents, |directory| match self.lookup(directory, last) {
            Ok(found) => Ok(Some(found)),
            Err(Failure {
                error: Error::NotFound,
                ..
            }) => Ok(None),
            Err(failure) => Err(failure),
        })?;
        match found {
            Some(_) if create && exclusive => Err(Error::Exists.into()),
            Some(found) if found.entry.attributes.is_directory() => {
                if create || truncate {
                    Err(Error::IsADirectory.into())
                } else {
                    Ok(found.to_entry())
                }
            }
            Some(found) => {
                let mut entry = found.to_entry();
                if truncate && entry.size > 0 {
                    self.cut(&found, parents, 0)?;
                    entry.size = 0;
                }
                Ok(entry)
            }
            None if create => {
                self.create_entry(parents, last, false)?;
                Ok(Entry {
                    name: String::from(*last),
                    size: 0,
                    directory: false,
                    modified: Clock::now(),
                })
            }
            None => Err(Error::NotFound.into()),
        }
    }

    fn create_directory(&self, path: &str) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::Exists)?;
        self.in_directory(parents, |directory| match self.lookup(directory, last) {
            Ok(_) => Err(Error::Exists.into()),
            Err(Failure {
                error: Error::NotFound,
                ..
            }) => Ok(()),
            Err(failure) => Err(failure),
        })?;
        self.create_entry(parents, last, true).map(|_| ())
    }

    /// Sets the size of file `path`: extends with zeros, or cuts its chain.
    fn set_size(&self, path: &str, size: u64) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::IsADirectory)?;
        let found = self.in_directory(parents, |directory| self.lookup(directory, last))?;
        if found.entry.attributes.is_directory() {
            return Err(Error::IsADirectory.into());
        }
        let current = u64::from(found.entry.size);
        match size.cmp(&current) {
            core::cmp::Ordering::Equal => Ok(()),
            core::cmp::Ordering::Greater => self.write(path, size, &[]),
            core::cmp::Ordering::Less => self.cut(&found, parents, size),
        }
    }

    /// Cuts the file of `found` (in directory `parents`) to `size` bytes,
    /// freeing the clusters past it.
    fn cut(&self, found: &Found, _parents: &[&str], size: u64) -> Outcome<()> {
        let geometry = self.geometry;
        let (sector, offset) = slot_of(found);
        let mut bytes = self.read_sector(sector)?;
        let entry = bytes.get(offset..offset + ENTRY).ok_or(Error::Device)?;
        let first = first_cluster(entry, geometry.fat_type);
        let keep = size.div_ceil(geometry.bytes_per_cluster());
        let mut freed_from = first;
        if keep == 0 {
            set_first_cluster(&mut bytes, offset, 0);
        } else {
            let mut last = first;
            for _ in 1..keep {
                last = self.fat_get(last)?;
                if !geometry.is_data(last) {
                    return Err(
                        Error::Other("the cluster chain is shorter than the file".into()).into(),
                    );
                }
            }
            freed_from = self.fat_get(last)?;
            self.fat_set(last, geometry.end_of_chain())?;
        }
        let size32 = u32::try_from(size).map_err(|_| Error::NoSpace)?;
        if let Some(field) = bytes.get_mut(offset + 28..offset + 32) {
            field.copy_from_slice(&size32.to_le_bytes());
        }
        stamp(&mut bytes, offset);
        self.write_sector(sector, &bytes)?;
        if geometry.is_data(freed_from) {
            self.manager
                .device(|disk| free_chain(disk, &geometry, freed_from))?;
        }
        Ok(())
    }

    /// Removes the file (or, if `directory`, the empty directory) at `path`,
    /// with its long-name entries and its clusters. Done on the disk itself:
    /// embedded-sdmmc would leave the long name and the clusters behind.
    fn remove(&self, path: &str, directory: bool) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(if directory {
            Error::Other("the root stays".into())
        } else {
            Error::IsADirectory
        })?;
        let found = self.in_directory(parents, |parent| self.lookup(parent, last))?;
        let is_directory = found.entry.attributes.is_directory();
        if is_directory && !directory {
            return Err(Error::IsADirectory.into());
        }
        if directory && !is_directory {
            return Err(Error::NotADirectory.into());
        }
        let geometry = self.geometry;
        let (sector, offset) = slot_of(&found);
        let bytes = self.read_sector(sector)?;
        let entry = bytes.get(offset..offset + ENTRY).ok_or(Error::Device)?;
        let first = first_cluster(entry, geometry.fat_type);
        if is_directory && geometry.is_data(first) {
            for sector in self.chain_sectors(first)? {
                let contents = self.read_sector(sector)?;
                for slot in contents.as_chunks::<ENTRY>().0 {
                    let live = !matches!(slot.first().copied(), Some(0 | DELETED));
                    let dot = slot.get(..11) == Some(b".          ".as_slice())
                        || slot.get(..11) == Some(b"..         ".as_slice());
                    if live && !dot {
                        return Err(Error::NotEmpty.into());
                    }
                }
            }
        }
        self.erase_slots(parents, &found)?;
        if geometry.is_data(first) {
            self.manager
                .device(|disk| free_chain(disk, &geometry, first))?;
        }
        Ok(())
    }

    /// Moves `from` to `to` (no entry at `to`: the caller removed it).
    /// The new entry is made by [`Mount::create_entry`] (with its long name)
    /// and then given the old one's contents; the old entry and its long
    /// name are erased. A directory moved to another parent gets its `..`
    /// pointed there.
    fn rename(&self, from: &str, to: &str) -> Outcome<()> {
        let source = components(from)?;
        let target = components(to)?;
        let (from_last, from_parents) = source
            .split_last()
            .ok_or(Error::Other("the root stays".into()))?;
        let (to_last, to_parents) = target.split_last().ok_or(Error::Exists)?;
        if target.len() > source.len()
            && target
                .iter()
                .zip(source.iter())
                .all(|(a, b)| same_name(a, b))
        {
            return Err(Error::Other("a directory cannot move into itself".into()).into());
        }
        let found = self.in_directory(from_parents, |parent| self.lookup(parent, from_last))?;
        let geometry = self.geometry;
        let (sector, offset) = slot_of(&found);
        let old = self.read_sector(sector)?;
        let old_entry: [u8; ENTRY] = old
            .get(offset..offset + ENTRY)
            .and_then(|entry| entry.try_into().ok())
            .ok_or(Error::Device)?;
        let (new_sector, new_offset) = self.create_entry(to_parents, to_last, false)?;
        // The new entry keeps its own name (its long name's checksum is of
        // it) and takes everything else from the old one.
        let mut bytes = self.read_sector(new_sector)?;
        if let (Some(target), Some(source)) = (
            bytes.get_mut(new_offset + 11..new_offset + ENTRY),
            old_entry.get(11..),
        ) {
            target.copy_from_slice(source);
        }
        self.write_sector(new_sector, &bytes)?;
        self.erase_slots(from_parents, &found)?;
        let moved = first_cluster(&old_entry, geometry.fat_type);
        let parents_differ = from_parents.len() != to_parents.len()
            || from_parents
                .iter()
                .zip(to_parents.iter())
                .any(|(a, b)| !same_name(a, b));
        if found.entry.attributes.is_directory() && parents_differ && geometry.is_data(moved) {
            let parent = match self.directory_cluster(to_parents)? {
                // `..` of a child of the root is 0, FAT32's too.
                Some(cluster) if !to_parents.is_empty() => cluster,
                _ => 0,
            };
            let first = geometry.cluster_sector(moved);
            let mut bytes = self.read_sector(first)?;
            if bytes.get(ENTRY..ENTRY + 2) == Some(b"..".as_slice()) {
                set_first_cluster(&mut bytes, ENTRY, parent);
                self.write_sector(first, &bytes)?;
            }
        }
        Ok(())
    }

    // ---- Directory entries on the disk itself --------------------------

    /// Reads a sector past embedded-sdmmc (through the read-ahead).
    fn read_sector(&self, sector: u64) -> Outcome<[u8; SECTOR]> {
        let mut bytes = [0u8; SECTOR];
        self.manager.device(|disk| disk.read(sector, &mut bytes))?;
        Ok(bytes)
    }

    /// Writes a sector past embedded-sdmmc: the mount is stale afterwards.
    fn write_sector(&self, sector: u64, bytes: &[u8; SECTOR]) -> Outcome<()> {
        self.stale.set(true);
        self.manager.device(|disk| disk.write(sector, bytes))?;
        Ok(())
    }

    /// Counts `clusters` as taken, or refuses with `NoSpace` if fewer than
    /// that many and one more are free. The one to spare: a directory may
    /// grow by a cluster this count does not see, and embedded-sdmmc, when
    /// no valid cluster is free, takes one past the volume's end (from the
    /// FAT sector's padding) and fails on the disk: it must never get there.
    fn take_clusters(&self, clusters: u32) -> Outcome<()> {
        if clusters == 0 {
            return Ok(());
        }
        let free = match self.free.get() {
            Some(free) => free,
            None => {
                let geometry = self.geometry;
                self.manager.device(|disk| free_clusters(disk, &geometry))?
            }
        };
        if u64::from(clusters) + 1 > u64::from(free) {
            self.free.set(Some(free));
            return Err(Error::NoSpace.into());
        }
        self.free.set(Some(free - clusters));
        Ok(())
    }

    /// Adds a zeroed cluster to the end of the directory whose sectors are
    /// `sectors` (not the FAT12/16 root, whose size is fixed); the new
    /// cluster's sectors.
    fn grow_directory(&self, sectors: &[u64]) -> Outcome<Vec<u64>> {
        let geometry = self.geometry;
        let last_sector = sectors.last().copied().ok_or(Error::NoSpace)?;
        if last_sector < geometry.data_start {
            return Err(Error::NoSpace.into());
        }
        let last = u32::try_from(
            (last_sector - geometry.data_start) / u64::from(geometry.sectors_per_cluster),
        )
        .map_err(|_| Error::NoSpace)?
            + 2;
        self.take_clusters(1)?;
        let mut new = None;
        for cluster in 2..geometry.clusters.saturating_add(2) {
            if self.fat_get(cluster)? == 0 {
                new = Some(cluster);
                break;
            }
        }
        let new = new.ok_or(Error::NoSpace)?;
        let first = geometry.cluster_sector(new);
        let added: Vec<u64> = (0..u64::from(geometry.sectors_per_cluster))
            .map(|index| first + index)
            .collect();
        for sector in &added {
            self.write_sector(*sector, &[0u8; SECTOR])?;
        }
        self.fat_set(new, geometry.end_of_chain())?;
        self.fat_set(last, new)?;
        self.count_allocated(1)?;
        Ok(added)
    }

    /// Takes `clusters` off the free count of a FAT32 FSInfo sector.
    fn count_allocated(&self, clusters: u32) -> Outcome<()> {
        let Some(fsinfo) = self.geometry.fsinfo else {
            return Ok(());
        };
        let mut bytes = self.read_sector(fsinfo)?;
        if let Some(count) = fsinfo_free(&bytes)
            && let Some(field) = bytes.get_mut(488..492)
        {
            field.copy_from_slice(&count.saturating_sub(clusters).to_le_bytes());
            self.write_sector(fsinfo, &bytes)?;
        }
        Ok(())
    }

    /// The FAT entry of `cluster`.
    fn fat_get(&self, cluster: u32) -> Outcome<u32> {
        let geometry = self.geometry;
        let (index, offset) = geometry
            .entry_location(cluster)
            .ok_or(Error::Other("a cluster past the FAT".into()))?;
        let bytes = self.read_sector(geometry.fat_start + u64::from(index))?;
        Ok(geometry.entry(&bytes, offset))
    }

    /// Sets the FAT entry of `cluster` in every copy of the FAT.
    fn fat_set(&self, cluster: u32, value: u32) -> Outcome<()> {
        let geometry = self.geometry;
        let (index, offset) = geometry
            .entry_location(cluster)
            .ok_or(Error::Other("a cluster past the FAT".into()))?;
        let mut bytes = self.read_sector(geometry.fat_start + u64::from(index))?;
        geometry.set_entry(&mut bytes, offset, value);
        for copy in 0..geometry.fats {
            let at = geometry.fat_start
                + u64::from(copy) * u64::from(geometry.fat_sectors)
                + u64::from(index);
            self.write_sector(at, &bytes)?;
        }
        Ok(())
    }

    /// The sectors of the cluster chain from `first`.
    fn chain_sectors(&self, first: u32) -> Outcome<Vec<u64>> {
        let geometry = self.geometry;
        let mut sectors = Vec::new();
        let mut cluster = first;
        let mut count = 0u32;
        while geometry.is_data(cluster) && count < geometry.clusters {
            let start = geometry.cluster_sector(cluster);
            sectors.extend((0..u64::from(geometry.sectors_per_cluster)).map(|index| start + index));
            cluster = self.fat_get(cluster)?;
            count += 1;
        }
        Ok(sectors)
    }

    /// The first cluster of directory `parts` (`None`: the FAT12/16 root,
    /// which has no cluster).
    fn directory_cluster(&self, parts: &[&str]) -> Outcome<Option<u32>> {
        let Some((last, parents)) = parts.split_last() else {
            return Ok(match self.geometry.fat_type {
                FatType::Fat32 => Some(self.geometry.root_cluster),
                FatType::Fat12 | FatType::Fat16 => None,
            });
        };
        let found = self.in_directory(parents, |parent| self.lookup(parent, last))?;
        if !found.entry.attributes.is_directory() {
            return Err(Error::NotADirectory.into());
        }
        let (sector, offset) = slot_of(&found);
        let bytes = self.read_sector(sector)?;
        let entry = bytes.get(offset..offset + ENTRY).ok_or(Error::Device)?;
        Ok(Some(first_cluster(entry, self.geometry.fat_type)))
    }

    /// The sectors of directory `parts`, in order.
    fn directory_sectors(&self, parts: &[&str]) -> Outcome<Vec<u64>> {
        match self.directory_cluster(parts)? {
            Some(cluster) => self.chain_sectors(cluster),
            None => Ok((0..u64::from(self.geometry.root_sectors))
                .map(|index| self.geometry.root_start + index)
                .collect()),
        }
    }

    /// Marks the entry of `found` (in directory `parents`) and the long-name
    /// entries before it deleted.
    fn erase_slots(&self, parents: &[&str], found: &Found) -> Outcome<()> {
        let sectors = self.directory_sectors(parents)?;
        let (sector, offset) = slot_of(found);
        let per_sector = SECTOR / ENTRY;
        let position = sectors
            .iter()
            .position(|known| *known == sector)
            .ok_or(Error::Other("an entry outside its directory".into()))?;
        let mut index = position * per_sector + offset / ENTRY;
        let short = self.read_sector(sector)?;
        let sum = short
            .get(offset..offset + 11)
            .map(crate::names::checksum)
            .unwrap_or(0);
        let erase = |index: usize| -> Outcome<bool> {
            let Some(sector) = sectors.get(index / per_sector).copied() else {
                return Ok(false);
            };
            let at = (index % per_sector) * ENTRY;
            let mut bytes = self.read_sector(sector)?;
            bytes[at] = DELETED;
            self.write_sector(sector, &bytes)?;
            Ok(true)
        };
        erase(index)?;
        // The long-name entries just before it that belong to it.
        while index > 0 {
            index -= 1;
            let Some(sector) = sectors.get(index / per_sector).copied() else {
                break;
            };
            let at = (index % per_sector) * ENTRY;
            let bytes = self.read_sector(sector)?;
            let is_long = bytes.get(at + 11) == Some(&LONG_NAME_ATTRIBUTE)
                && bytes.get(at) != Some(&DELETED)
                && bytes.get(at + 13) == Some(&sum);
            if !is_long {
                break;
            }
            erase(index)?;
        }
        Ok(())
    }

    /// Creates an empty file or directory `name` in directory `parents`:
    /// embedded-sdmmc makes it under its 8.3 name, or under an alias that
    /// is then moved behind long-name entries holding `name`. Returns the
    /// slot of its (short) entry.
    fn create_entry(&self, parents: &[&str], name: &str, directory: bool) -> Outcome<(u64, usize)> {
        if name.encode_utf16().count() > 255 {
            return Err(Error::NameTooLong.into());
        }
        if !is_valid_long(name) {
            return Err(Error::InvalidName.into());
        }
        let short = if is_short(name) {
            String::from(name)
        } else {
            let mut chosen = None;
            let upper = name.to_ascii_uppercase();
            for number in 0..10_000u32 {
                // A name that is 8.3 but for its case keeps it through a
                // long name, with itself upper-cased as the alias.
                let candidate = match number {
                    0 if is_short(&upper) => upper.clone(),
                    0 => continue,
                    _ => alias_text(&alias(name, number)),
                };
                let free =
                    self.in_directory(parents, |parent| match self.lookup(parent, &candidate) {
                        Ok(_) => Ok(false),
                        Err(Failure {
                            error: Error::NotFound,
                            ..
                        }) => Ok(true),
                        Err(failure) => Err(failure),
                    })?;
                if free {
                    chosen = Some(candidate);
                    break;
                }
            }
            chosen.ok_or(Error::NoSpace)?
        };
        let short_name = short_name(&short)?;
        // A directory's cluster; or the cluster a full directory grows by.
        self.take_clusters(1)?;
        // embedded-sdmmc grows a full directory without counting the
        // cluster in FSInfo: see how long the directory is before.
        let sectors_before = match self.geometry.fsinfo {
            Some(_) => Some(self.directory_sectors(parents)?.len()),
            None => None,
        };
        let found = self.in_directory(parents, |parent| {
            if directory {
                self.manager.make_dir_in_dir(parent, short_name)?;
            } else {
                let file =
                    self.manager
                        .open_file_in_dir(parent, short_name, Mode::ReadWriteCreate)?;
                self.manager.close_file(file)?;
            }
            self.lookup(parent, &short)
        })?;
        // embedded-sdmmc counts the clusters it takes (a new directory's, or
        // one its parent grew by) in the FSInfo sector only when it closes
        // the volume, which it never does here.
        let mut allocated = u32::from(directory);
        if let Some(before) = sectors_before {
            let after = self.directory_sectors(parents)?.len();
            let per_cluster = self.geometry.sectors_per_cluster as usize;
            allocated +=
                u32::try_from(after.saturating_sub(before) / per_cluster.max(1)).unwrap_or(0);
        }
        if allocated > 0 {
            self.count_allocated(allocated)?;
        }
        let slot = slot_of(&found);
        if is_short(name) {
            return Ok(slot);
        }
        // Find room for the long-name entries and the short entry together
        // (the new entry's own slot counts as free: it moves).
        let sectors = self.directory_sectors(parents)?;
        let mut contents = Vec::with_capacity(sectors.len());
        for sector in &sectors {
            contents.push(self.read_sector(*sector)?);
        }
        let per_sector = SECTOR / ENTRY;
        let here = sectors
            .iter()
            .position(|known| *known == slot.0)
            .map(|position| position * per_sector + slot.1 / ENTRY)
            .ok_or(Error::Other("an entry outside its directory".into()))?;
        let first_byte = |contents: &Vec<[u8; SECTOR]>, index: usize| -> u8 {
            contents
                .get(index / per_sector)
                .and_then(|bytes| bytes.get((index % per_sector) * ENTRY))
                .copied()
                .unwrap_or(0)
        };
        let short_entry: [u8; ENTRY] = contents
            .get(here / per_sector)
            .and_then(|bytes| {
                bytes.get((here % per_sector) * ENTRY..(here % per_sector + 1) * ENTRY)
            })
            .and_then(|entry| entry.try_into().ok())
            .ok_or(Error::Device)?;
        let long = long_entries(name, &short_entry);
        let need = long.len() + 1;
        let find_run = |contents: &Vec<[u8; SECTOR]>| -> Option<usize> {
            let mut run = 0;
            let mut ended = false;
            for index in 0..contents.len() * per_sector {
                let byte = first_byte(contents, index);
                ended |= byte == 0;
                if ended || byte == DELETED || index == here {
                    run += 1;
                    if run == need {
                        return Some(index + 1 - need);
                    }
                } else {
                    run = 0;
                }
            }
            None
        };
        let mut sectors = sectors;
        let mut run_start = find_run(&contents);
        // A directory in clusters grows (by a cluster at a time, at most
        // three: a 255-character name takes 21 entries) until the run fits.
        for _ in 0..3 {
            if run_start.is_some() {
                break;
            }
            let Ok(added) = self.grow_directory(&sectors) else {
                break;
            };
            contents.extend(added.iter().map(|_| [0u8; SECTOR]));
            sectors.extend(added);
            run_start = find_run(&contents);
        }
        let Some(start) = run_start else {
            // No room without growing the directory: take the entry back.
            self.erase_slots(parents, &found)?;
            if directory {
                let first = first_cluster(&short_entry, self.geometry.fat_type);
                let geometry = self.geometry;
                if geometry.is_data(first) {
                    self.manager
                        .device(|disk| free_chain(disk, &geometry, first))?;
                }
            }
            return Err(Error::NoSpace.into());
        };
        let mut touched = Vec::new();
        let mut put = |contents: &mut Vec<[u8; SECTOR]>, index: usize, entry: &[u8]| {
            let at = (index % per_sector) * ENTRY;
            if let Some(field) = contents
                .get_mut(index / per_sector)
                .and_then(|bytes| bytes.get_mut(at..at + ENTRY))
            {
                field.copy_from_slice(entry);
                touched.push(index / per_sector);
            }
        };
        let mut erased = short_entry;
        erased[0] = DELETED;
        put(&mut contents, here, &erased);
        for (step, entry) in long.iter().enumerate() {
            put(&mut contents, start + step, entry);
        }
        let short_at = start + long.len();
        put(&mut contents, short_at, &short_entry);
        touched.sort_unstable();
        touched.dedup();
        for index in touched {
            if let (Some(sector), Some(bytes)) = (sectors.get(index), contents.get(index)) {
                self.write_sector(*sector, bytes)?;
            }
        }
        let sector = sectors
            .get(short_at / per_sector)
            .copied()
            .ok_or(Error::Device)?;
        Ok((sector, (short_at % per_sector) * ENTRY))
    }
}

/// Where the short entry of `found` lies: sector and byte offset.
fn slot_of(found: &Found) -> (u64, usize) {
    (
        u64::from(found.entry.entry_block.0),
        found.entry.entry_offset as usize,
    )
}

/// The first cluster of a directory entry.
fn first_cluster(entry: &[u8], fat_type: FatType) -> u32 {
    let field = |at: usize| match entry.get(at..at + 2) {
        Some(&[low, high]) => u32::from(u16::from_le_bytes([low, high])),
        _ => 0,
    };
    let high = match fat_type {
        FatType::Fat32 => field(20) << 16,
        FatType::Fat12 | FatType::Fat16 => 0,
    };
    high | field(26)
}

/// Sets the first cluster of the entry at `offset` of a directory sector.
fn set_first_cluster(bytes: &mut [u8], offset: usize, cluster: u32) {
    let [a, b, c, d] = cluster.to_le_bytes();
    if let Some(field) = bytes.get_mut(offset + 20..offset + 22) {
        field.copy_from_slice(&[c, d]);
    }
    if let Some(field) = bytes.get_mut(offset + 26..offset + 28) {
        field.copy_from_slice(&[a, b]);
    }
}

/// Sets the modification time of the entry at `offset` to now.
fn stamp(bytes: &mut [u8], offset: usize) {
    let (date, time) = crate::names::fat_date_time(Clock::now());
    if let Some(field) = bytes.get_mut(offset + 22..offset + 26) {
        field[..2].copy_from_slice(&time.to_le_bytes());
        field[2..].copy_from_slice(&date.to_le_bytes());
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
            modified: seconds_since_1970(&self.entry.mtime),
        }
    }
}

/// A FAT timestamp in seconds since 1970-01-01 (FAT keeps local time; this
/// system's clock is UTC).
fn seconds_since_1970(time: &Timestamp) -> u64 {
    let year = 1970 + u64::from(time.year_since_1970);
    let month = u64::from(time.zero_indexed_month) + 1;
    let day = u64::from(time.zero_indexed_day) + 1;
    // Days from civil (Howard Hinnant's algorithm), for years from 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).saturating_sub(719_468);
    days * 86_400
        + u64::from(time.hours) * 3600
        + u64::from(time.minutes) * 60
        + u64::from(time.seconds)
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
