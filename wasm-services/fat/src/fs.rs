//! The `fs` protocol on a FAT12, FAT16 or FAT32 volume: path lookup,
//! directory entries (with long names), file data, and the order in which a
//! request writes them. The FAT itself is `fat.rs`; the on-disk structures
//! are `layout.rs` and `names.rs`.
//!
//! A request that changes the volume writes, in this order: file data (whole
//! runs of contiguous sectors per block request), the FAT sectors it touched
//! (each once, to every copy), the directory entries, the FAT32 FSInfo
//! count; then (all but a `Write`) it asks the driver to flush the disk's
//! write cache. Only then is it answered: an answer means the change is on
//! the disk, and nothing is cached for writing past the request. `Sync`
//! flushes what `Write`s left in the disk's cache. Cached across requests, all of it clean: FAT sectors,
//! the read-ahead of `disk.rs`, the last file looked up and where in its
//! cluster chain the last access ended (so sequential reads and appends do
//! not walk the chain from its start).

use crate::disk::{Disk, DiskError, MAX_SECTORS, Sectors};
use crate::fat::{Fat, FatError};
use crate::layout::{FatType, Geometry, SECTOR, components, first_partition, is_boot_sector};
use crate::names::{
    DELETED, ENTRY, LONG_NAME_ATTRIBUTE, alias, checksum, is_short, is_valid_long, long_entries,
};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::block;
use atoll_protocols::fs::{Entry, Error, MAX_DATA, MAX_ENTRIES, MAX_STAGED, Request, Response};
use atoll_sdk::MAX_MESSAGE_LEN;
use core::cell::{Cell, RefCell};
use core::ops::ControlFlow;

/// The largest gap a write past the end of a file may zero-fill.
const MAX_GAP: u32 = 16 << 20;

/// The most sectors a directory may have (65,536 entries, FAT's limit).
const MAX_DIRECTORY_SECTORS: usize = 65_536 * ENTRY / SECTOR;

/// The most sectors written in one piece of a file write (the disk splits
/// it into block requests of [`MAX_SECTORS`]).
const RUN_SECTORS: u64 = 8 * MAX_SECTORS as u64;

/// Attribute bits of a directory entry.
const READ_ONLY: u8 = 0x01;
const VOLUME: u8 = 0x08;
const DIRECTORY: u8 = 0x10;
const ARCHIVE: u8 = 0x20;

/// Time stamps of new and changed entries: the real-time clock (the kernel's,
/// through the SDK's `wall_clock_ns`); on the host, and if the machine has
/// no clock, 2025-01-01 00:00 UTC.
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

/// A failed operation: the answer, and whether the mount must be dropped
/// (the disk failed, or the volume is inconsistent).
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

impl From<FatError> for Failure {
    fn from(error: FatError) -> Self {
        match error {
            FatError::Disk(error) => error.into(),
            FatError::Full => Error::NoSpace.into(),
            FatError::Corrupt => Failure {
                error: Error::Other("a cluster chain leaves the volume".into()),
                remount: true,
            },
        }
    }
}

type Outcome<T> = Result<T, Failure>;

fn corrupt(what: &str) -> Failure {
    Failure {
        error: Error::Other(format!("corrupt volume: {what}")),
        remount: true,
    }
}

/// What the start-up log says about the volume.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub fat_type: FatType,
    pub superfloppy: bool,
    pub label: Option<String>,
    pub bytes: u64,
    pub free: u64,
}

/// A directory: the fixed root of FAT12/16, or a cluster chain (FAT32's
/// root too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directory {
    Root,
    Chain(u32),
}

/// A directory entry found on the disk, with its long name.
#[derive(Clone, Debug)]
struct Found {
    /// The short (8.3) entry.
    bytes: [u8; ENTRY],
    /// Its sector and byte offset.
    sector: u64,
    offset: usize,
    /// Its index in the directory, and the index of the first of its
    /// long-name entries (the same if it has none).
    index: usize,
    first_index: usize,
    long: Option<String>,
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

impl Found {
    fn attributes(&self) -> u8 {
        self.bytes[11]
    }

    fn is_directory(&self) -> bool {
        self.attributes() & DIRECTORY != 0
    }

    fn size(&self) -> u32 {
        u32_at(&self.bytes, 28)
    }

    fn first_cluster(&self, fat_type: FatType) -> u32 {
        first_cluster(&self.bytes, fat_type)
    }

    fn name(&self) -> String {
        self.long.clone().unwrap_or_else(|| short_text(&self.bytes))
    }

    fn to_entry(&self) -> Entry {
        Entry {
            name: self.name(),
            size: u64::from(self.size()),
            directory: self.is_directory(),
            modified: seconds_since_1970(u16_at(&self.bytes, 24), u16_at(&self.bytes, 22)),
        }
    }

    fn is_dot(&self) -> bool {
        self.bytes[..11] == *b".          " || self.bytes[..11] == *b"..         "
    }
}

/// The 8.3 name of a short entry as text (`NAME.EXT`; lower case where the
/// entry's case flags say so, as Windows and Linux write them).
fn short_text(bytes: &[u8; ENTRY]) -> String {
    let flags = bytes[12];
    let part = |range: core::ops::Range<usize>, lower: bool| -> String {
        let mut text = String::new();
        for (at, byte) in range.clone().zip(bytes[range].iter()) {
            let byte = if at == 0 && *byte == 0x05 {
                0xe5
            } else {
                *byte
            };
            let c = char::from(byte);
            text.push(if lower { c.to_ascii_lowercase() } else { c });
        }
        String::from(text.trim_end())
    };
    let base = part(0..8, flags & 0x08 != 0);
    let extension = part(8..11, flags & 0x10 != 0);
    if extension.is_empty() {
        base
    } else {
        format!("{base}.{extension}")
    }
}

/// The 11 bytes of a name that [`is_short`] accepts.
fn short_bytes(name: &str) -> [u8; 11] {
    let mut bytes = [b' '; 11];
    let (base, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    for (slot, byte) in bytes[..8].iter_mut().zip(base.bytes()) {
        *slot = byte;
    }
    for (slot, byte) in bytes[8..].iter_mut().zip(extension.bytes()) {
        *slot = byte;
    }
    bytes
}

/// Long-name entries seen so far, waiting for their short entry.
struct LongName {
    /// UTF-16 units, 13 per entry.
    units: Vec<u16>,
    checksum: u8,
    /// The sequence number expected next (counting down to 1).
    next: u8,
    first_index: usize,
}

impl LongName {
    /// Takes a long-name entry; `None` when it does not continue the name.
    fn take(current: Option<LongName>, slot: &[u8], index: usize) -> Option<LongName> {
        let sequence = *slot.first()?;
        let order = sequence & 0x1f;
        if order == 0 {
            return None;
        }
        let mut name = if sequence & 0x40 != 0 {
            LongName {
                units: vec![0xffff; usize::from(order) * 13],
                checksum: *slot.get(13)?,
                next: order,
                first_index: index,
            }
        } else {
            let name = current?;
            if name.next != order || name.checksum != *slot.get(13)? {
                return None;
            }
            name
        };
        let base = (usize::from(order) - 1) * 13;
        for (slot_index, at) in [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
            .iter()
            .enumerate()
        {
            if let Some(unit) = name.units.get_mut(base + slot_index) {
                *unit = u16_at(slot, *at);
            }
        }
        name.next = order - 1;
        Some(name)
    }

    /// The name, if it is complete and belongs to short entry `short`.
    fn finish(self, short: &[u8]) -> Option<(String, usize)> {
        if self.next != 0 || self.checksum != checksum(short) {
            return None;
        }
        let end = self
            .units
            .iter()
            .position(|unit| *unit == 0 || *unit == 0xffff)
            .unwrap_or(self.units.len());
        let name = char::decode_utf16(self.units.get(..end)?.iter().copied())
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect::<String>();
        (!name.is_empty()).then_some((name, self.first_index))
    }
}

/// Where the last access to a file's chain ended: cluster number `cluster`
/// is the `index`th of the chain starting at `first`.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    first: u32,
    index: u32,
    cluster: u32,
}

/// The mounted volume.
struct Mount<S: Sectors> {
    disk: Disk<S>,
    geometry: Geometry,
    superfloppy: bool,
    fat: RefCell<Fat>,
    cursor: Cell<Option<Cursor>>,
    /// The file last looked up by a `Read` (path components as given),
    /// forgotten by any request that changes the volume.
    reading: RefCell<Option<(Vec<String>, Found)>>,
}

/// The file system service's state: the disk and, once it could be read, the
/// mounted volume (dropped on any disk failure, mounted again on the next
/// request).
pub struct FileSystem<S: Sectors + Clone> {
    io: S,
    mount: Option<Mount<S>>,
    /// Pieces of writes larger than a message ([`Request::Stage`]), one
    /// run per client, at most [`MAX_STAGING_CLIENTS`] (the oldest goes).
    staged: Vec<Staged>,
}

/// The clients whose staged pieces are held at once.
const MAX_STAGING_CLIENTS: usize = 4;

/// One client's staged pieces: `data` for `offset` of `path`.
struct Staged {
    client: u32,
    path: String,
    offset: u64,
    data: Vec<u8>,
}

impl<S: Sectors + Clone> FileSystem<S> {
    #[must_use]
    pub fn new(io: S) -> Self {
        FileSystem {
            io,
            mount: None,
            staged: Vec::new(),
        }
    }

    /// Answers one request from `client` (a service id): [`Self::handle`],
    /// with the client's staged pieces kept for its next `Stage` and
    /// dropped by anything else it asks.
    pub fn handle_from(&mut self, client: u32, request: Request) -> Response {
        let held = self.staged.iter().position(|run| run.client == client);
        let Request::Stage {
            path,
            offset,
            data,
            last,
        } = request
        else {
            if let Some(index) = held {
                self.staged.remove(index);
            }
            return self.handle(request);
        };
        let piece = data.len();
        if piece > MAX_DATA as usize {
            return Response::Error(Error::Other(format!("at most {MAX_DATA} bytes per piece")));
        }
        // The client's run goes on if this piece follows it; else it is
        // dropped, and a piece that is not the last starts a new one.
        let held = held.map(|index| self.staged.remove(index));
        let follows = |run: &Staged| {
            run.path == path && run.offset.checked_add(run.data.len() as u64) == Some(offset)
        };
        let mut run = match held.filter(follows) {
            Some(run) => run,
            None if last => return Response::Error(Error::NotStaged),
            None => Staged {
                client,
                path,
                offset,
                data: Vec::new(),
            },
        };
        if run.data.len() + piece > MAX_STAGED as usize {
            return Response::Error(Error::Other(format!(
                "at most {MAX_STAGED} bytes in one staged write"
            )));
        }
        // Exactly: a run holds at most MAX_STAGED, not a doubled buffer.
        run.data.reserve_exact(piece);
        run.data.extend_from_slice(&data);
        if last {
            let whole = run.data.len() as u32;
            return match self.handle(Request::Write {
                path: run.path,
                offset: run.offset,
                data: run.data,
            }) {
                Response::Written(_) => Response::Written(whole),
                other => other,
            };
        }
        if self.staged.len() >= MAX_STAGING_CLIENTS {
            self.staged.remove(0);
        }
        self.staged.push(run);
        Response::Written(piece as u32)
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
        let modifies = !matches!(
            request,
            Request::Open { .. } | Request::List { .. } | Request::Read { .. } | Request::Sync
        );
        // What the driver is asked to make durable before the answer: every
        // change but a `Write`'s (written to the disk, but left in its write
        // cache until a `Sync`, as POSIX `write` and `fsync` do).
        let flush = modifies && !matches!(request, Request::Write { .. })
            || matches!(request, Request::Sync);
        let mount = match self.mounted() {
            Ok(mount) => mount,
            Err(error) => return Response::Error(error),
        };
        // The file last looked up stays known across reads and writes of
        // it (a write updates it); anything else that changes the volume
        // could move or change its entry.
        if modifies && !matches!(request, Request::Write { .. }) {
            mount.reading.take();
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
            Request::Sync => Ok(Response::Done),
            // Pieces belong to a client: `handle_from`.
            Request::Stage { .. } => Err(Error::NotStaged.into()),
        };
        if modifies
            && outcome.is_ok()
            && let Err(failure) = mount.commit()
        {
            outcome = Err(failure);
        }
        if flush
            && outcome.is_ok()
            && let Err(error) = mount.disk.io().flush()
        {
            outcome = Err(error.into());
        }
        match outcome {
            Ok(response) => response,
            Err(failure) => {
                // Nothing half-done survives a failure: FAT changes not yet
                // written are dropped, and the chain position is forgotten.
                mount.fat.borrow_mut().discard();
                mount.cursor.set(None);
                mount.reading.take();
                if failure.remount {
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
        let mut sector = [0u8; SECTOR];
        disk.read(0, &mut sector).map_err(failed)?;
        let (start, superfloppy) = if is_boot_sector(&sector) {
            (0, true)
        } else {
            let (start, _) = first_partition(&sector).ok_or(Error::NoVolume)?;
            disk.read(start, &mut sector).map_err(failed)?;
            (start, false)
        };
        let geometry = Geometry::parse(&sector, start).ok_or(Error::NoVolume)?;
        // The volume must fit on the disk, and its root must exist.
        let end = geometry
            .data_start
            .saturating_add(u64::from(geometry.clusters) * u64::from(geometry.sectors_per_cluster));
        let root_ok = match geometry.fat_type {
            FatType::Fat32 => geometry.is_data(geometry.root_cluster),
            FatType::Fat12 | FatType::Fat16 => geometry.root_sectors > 0,
        };
        if end > disk.capacity() || !root_ok || geometry.clusters == 0 {
            return Err(Error::NoVolume);
        }
        Ok(Mount {
            disk,
            geometry,
            superfloppy,
            fat: RefCell::new(Fat::new(geometry)),
            cursor: Cell::new(None),
            reading: RefCell::new(None),
        })
    }

    fn summary(&self) -> Outcome<Summary> {
        let geometry = self.geometry;
        let mut label = None;
        self.each_entry(self.root(), |found| {
            if found.attributes() & VOLUME != 0 && found.attributes() != LONG_NAME_ATTRIBUTE {
                let text: String = found.bytes[..11]
                    .iter()
                    .map(|byte| char::from(*byte))
                    .collect();
                label = Some(String::from(text.trim_end()));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        let free = self.fat.borrow_mut().free(&self.disk)?;
        Ok(Summary {
            fat_type: geometry.fat_type,
            superfloppy: self.superfloppy,
            label: label.filter(|name| !name.is_empty() && name != "NO NAME"),
            bytes: u64::from(geometry.clusters) * geometry.bytes_per_cluster(),
            free: u64::from(free) * geometry.bytes_per_cluster(),
        })
    }

    /// Writes the FAT changes of this request (and the FSInfo count).
    fn commit(&self) -> Outcome<()> {
        self.fat.borrow_mut().commit(&self.disk)?;
        Ok(())
    }

    fn root(&self) -> Directory {
        match self.geometry.fat_type {
            FatType::Fat32 => Directory::Chain(self.geometry.root_cluster),
            FatType::Fat12 | FatType::Fat16 => Directory::Root,
        }
    }

    fn fat_get(&self, cluster: u32) -> Outcome<u32> {
        Ok(self.fat.borrow_mut().get(&self.disk, cluster)?)
    }

    fn read_sector(&self, sector: u64) -> Outcome<[u8; SECTOR]> {
        let mut bytes = [0u8; SECTOR];
        self.disk.read(sector, &mut bytes)?;
        Ok(bytes)
    }

    fn write_sector(&self, sector: u64, bytes: &[u8; SECTOR]) -> Outcome<()> {
        self.disk.write(sector, bytes)?;
        Ok(())
    }

    /// The clusters of the chain from `first`, at most `limit` of them (a
    /// longer chain is an error, and so is a loop, found by Brent's method
    /// as in [`Mount::cluster_at`]).
    fn chain(&self, first: u32, limit: usize) -> Outcome<Vec<u32>> {
        let mut clusters = Vec::new();
        let mut cluster = first;
        let (mut mark, mut lap, mut steps) = (0u32, 1u32, 0u32);
        while self.geometry.is_data(cluster) {
            if clusters.len() >= limit || cluster == mark {
                return Err(corrupt("a directory's cluster chain loops or is too long"));
            }
            clusters.push(cluster);
            steps += 1;
            if steps == lap {
                (mark, lap, steps) = (cluster, lap.saturating_mul(2), 0);
            }
            cluster = self.fat_get(cluster)?;
        }
        Ok(clusters)
    }

    /// The sectors of a directory, in order.
    fn directory_sectors(&self, directory: Directory) -> Outcome<Vec<u64>> {
        match directory {
            Directory::Root => Ok((0..u64::from(self.geometry.root_sectors))
                .map(|index| self.geometry.root_start + index)
                .collect()),
            Directory::Chain(first) => {
                let per_cluster = u64::from(self.geometry.sectors_per_cluster);
                let limit = MAX_DIRECTORY_SECTORS.div_ceil(per_cluster.max(1) as usize);
                let mut sectors = Vec::new();
                for cluster in self.chain(first, limit)? {
                    let start = self.geometry.cluster_sector(cluster);
                    sectors.extend((0..per_cluster).map(|index| start + index));
                }
                Ok(sectors)
            }
        }
    }

    /// Calls `visit` for each short entry of `directory` (volume labels,
    /// `.` and `..` included), with its long name; stops at the end mark.
    fn each_entry(
        &self,
        directory: Directory,
        mut visit: impl FnMut(&Found) -> ControlFlow<()>,
    ) -> Outcome<()> {
        let mut long: Option<LongName> = None;
        let mut index = 0usize;
        for sector in self.directory_sectors(directory)? {
            let bytes = self.read_sector(sector)?;
            for (slot, offset) in bytes
                .as_chunks::<ENTRY>()
                .0
                .iter()
                .zip((0..).step_by(ENTRY))
            {
                let here = index;
                index += 1;
                match slot[0] {
                    0 => return Ok(()),
                    DELETED => {
                        long = None;
                        continue;
                    }
                    _ => {}
                }
                if slot[11] & 0x3f == LONG_NAME_ATTRIBUTE {
                    long = LongName::take(long.take(), slot, here);
                    continue;
                }
                let name = long.take().and_then(|name| name.finish(&slot[..11]));
                let (long_name, first_index) = match name {
                    Some((name, first)) => (Some(name), first),
                    None => (None, here),
                };
                let found = Found {
                    bytes: *slot,
                    sector,
                    offset,
                    index: here,
                    first_index,
                    long: long_name,
                };
                if visit(&found).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The entry called `name` in `directory`, by its short name or its
    /// long one (ignoring case).
    fn find(&self, directory: Directory, name: &str) -> Outcome<Option<Found>> {
        let mut result = None;
        self.each_entry(directory, |found| {
            if found.attributes() & VOLUME != 0 {
                return ControlFlow::Continue(());
            }
            let by_long = found
                .long
                .as_deref()
                .is_some_and(|long| same_name(long, name));
            if by_long || same_name(&short_text(&found.bytes), name) {
                result = Some(found.clone());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(result)
    }

    fn lookup(&self, directory: Directory, name: &str) -> Outcome<Found> {
        self.find(directory, name)?
            .ok_or_else(|| Error::NotFound.into())
    }

    /// The directory a found entry is (`..` of a child of the root is 0).
    fn directory_of(&self, found: &Found) -> Outcome<Directory> {
        if !found.is_directory() {
            return Err(Error::NotADirectory.into());
        }
        let first = found.first_cluster(self.geometry.fat_type);
        if first == 0 {
            return Ok(self.root());
        }
        if !self.geometry.is_data(first) {
            return Err(corrupt("a directory outside the volume"));
        }
        Ok(Directory::Chain(first))
    }

    /// The directory at `path` (components from the root).
    fn directory(&self, path: &[&str]) -> Outcome<Directory> {
        let mut directory = self.root();
        for name in path {
            let found = self.lookup(directory, name)?;
            directory = self.directory_of(&found)?;
        }
        Ok(directory)
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
        let parent = self.directory(parents)?;
        Ok(self.lookup(parent, last)?.to_entry())
    }

    fn list(&self, path: &str, start: u32) -> Outcome<Response> {
        let parts = components(path)?;
        let directory = self.directory(&parts)?;
        let mut entries = Vec::new();
        // Long names can be 765 bytes: stop early rather than answer more
        // than a message holds.
        let mut room = MAX_MESSAGE_LEN - 16;
        let mut index = 0u32;
        let mut more = false;
        self.each_entry(directory, |found| {
            if found.attributes() & VOLUME != 0 || found.is_dot() {
                return ControlFlow::Continue(());
            }
            if index >= start {
                let entry = found.to_entry();
                // Name with its length, size, flag, time (postcard varints).
                let cost = entry.name.len() + 2 + 10 + 1 + 10;
                if entries.len() >= MAX_ENTRIES as usize || cost > room {
                    more = true;
                    return ControlFlow::Break(());
                }
                room -= cost;
                entries.push(entry);
            }
            index += 1;
            ControlFlow::Continue(())
        })?;
        Ok(Response::Entries { entries, more })
    }

    /// The cluster `index` of the chain from `first`, from the cursor when
    /// it is on this chain at or before `index`. With `grow`, a chain that
    /// ends early gets new clusters.
    fn cluster_at(&self, first: u32, index: u32, grow: bool) -> Outcome<u32> {
        let (mut at, mut cluster) = match self.cursor.get() {
            Some(cursor) if cursor.first == first && cursor.index <= index => {
                (cursor.index, cursor.cluster)
            }
            _ => (0, first),
        };
        if !self.geometry.is_data(cluster) {
            return Err(corrupt("a file starts outside the volume"));
        }
        // A loop is found by Brent's method: `mark` is a cluster seen
        // `lap` steps back, `lap` doubling; coming back to it is a loop.
        let (mut mark, mut lap, mut steps) = (cluster, 1u32, 0u32);
        while at < index {
            if at >= self.geometry.clusters {
                return Err(corrupt("a cluster chain loops"));
            }
            let next = self.fat_get(cluster)?;
            cluster = if self.geometry.is_data(next) {
                next
            } else if grow {
                self.fat.borrow_mut().allocate(&self.disk, Some(cluster))?
            } else {
                return Err(corrupt("a cluster chain is shorter than its file"));
            };
            at += 1;
            if cluster == mark {
                return Err(corrupt("a cluster chain loops"));
            }
            steps += 1;
            if steps == lap {
                (mark, lap, steps) = (cluster, lap.saturating_mul(2), 0);
            }
        }
        self.cursor.set(Some(Cursor {
            first,
            index,
            cluster,
        }));
        Ok(cluster)
    }

    /// The file at `path` and its directory.
    fn file(&self, parts: &[&str]) -> Outcome<(Directory, Found)> {
        let (last, parents) = parts.split_last().ok_or(Error::IsADirectory)?;
        let parent = self.directory(parents)?;
        let found = self.lookup(parent, last)?;
        if found.is_directory() {
            return Err(Error::IsADirectory.into());
        }
        Ok((parent, found))
    }

    fn read(&self, path: &str, offset: u64, len: u32) -> Outcome<Vec<u8>> {
        let parts = components(path)?;
        let found = match self.kept(&parts) {
            Some(found) => found,
            None => {
                let (_, found) = self.file(&parts)?;
                let path = parts.iter().map(|part| (*part).to_string()).collect();
                *self.reading.borrow_mut() = Some((path, found.clone()));
                found
            }
        };
        let size = u64::from(found.size());
        if offset >= size {
            return Ok(Vec::new());
        }
        let want = u64::from(len.min(MAX_DATA)).min(size - offset) as usize;
        let mut data = vec![0u8; want];
        let geometry = self.geometry;
        let first = found.first_cluster(geometry.fat_type);
        let cluster_bytes = geometry.bytes_per_cluster() as usize;
        let mut index = u32::try_from(offset / cluster_bytes as u64)
            .map_err(|_| corrupt("a file past 4 GiB"))?;
        let mut cluster = self.cluster_at(first, index, false)?;
        let mut in_cluster = (offset % cluster_bytes as u64) as usize;
        let mut done = 0usize;
        loop {
            // A run of clusters that follow each other on the disk, as far
            // as the request needs, then as far as a block request would
            // read ahead.
            let needed = want - done;
            let mut run_bytes = cluster_bytes - in_cluster;
            let (mut last, mut last_index) = (cluster, index);
            let mut after = None;
            while run_bytes < needed + MAX_SECTORS * SECTOR {
                let next = self.fat_get(last)?;
                if run_bytes < needed {
                    // The data goes on in `next`: it must be a data cluster.
                    if !geometry.is_data(next) || last_index >= geometry.clusters {
                        return Err(corrupt("a cluster chain is shorter than its file"));
                    }
                    if next != last + 1 {
                        after = Some(next);
                        break;
                    }
                    last_index += 1;
                } else if next != last + 1 || !geometry.is_data(next) {
                    break;
                }
                last = next;
                run_bytes += cluster_bytes;
            }
            let take = needed.min(run_bytes);
            let skip = in_cluster % SECTOR;
            let sector = geometry.cluster_sector(cluster) + (in_cluster / SECTOR) as u64;
            let sectors = (skip + take).div_ceil(SECTOR);
            let run = (skip + run_bytes).div_ceil(SECTOR) as u64;
            let mut buffer = vec![0u8; sectors * SECTOR];
            self.disk.read_file(sector, &mut buffer, run)?;
            let piece = buffer.get(skip..skip + take).ok_or(Error::Device)?;
            data.get_mut(done..done + take)
                .ok_or(Error::Device)?
                .copy_from_slice(piece);
            done += take;
            // The cursor goes to the cluster holding the last byte read
            // (the run's clusters follow each other).
            let clusters_in = ((in_cluster + take - 1) / cluster_bytes) as u32;
            self.cursor.set(Some(Cursor {
                first,
                index: index + clusters_in,
                cluster: cluster + clusters_in,
            }));
            if done >= want {
                break;
            }
            // Jump to the next piece of the chain.
            cluster = after.ok_or(corrupt("a cluster chain is shorter than its file"))?;
            index = last_index + 1;
            in_cluster = 0;
        }
        Ok(data)
    }

    fn write(&self, path: &str, offset: u64, data: &[u8]) -> Outcome<()> {
        // A `Write` holds at most MAX_DATA bytes; the last piece of a
        // staged write brings all of its pieces here at once.
        if data.len() > MAX_STAGED as usize {
            return Err(Error::Other(format!("at most {MAX_STAGED} bytes per write")).into());
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > u64::from(u32::MAX) {
            return Err(Error::Other("a FAT file ends before 4 GiB".into()).into());
        }
        let parts = components(path)?;
        let kept = self.kept(&parts);
        let found = match kept.map_or_else(|| self.file(&parts).map(|(_, found)| found), Ok) {
            Ok(found) => found,
            Err(Failure {
                error: Error::NotFound,
                ..
            }) => {
                // A write creates a missing file.
                gap_allowed(0, offset as u32)?;
                let (last, parents) = parts.split_last().ok_or(Error::IsADirectory)?;
                let parent = self.directory(parents)?;
                self.create_entry(parent, last, None)?
            }
            Err(failure) => return Err(failure),
        };
        if found.attributes() & READ_ONLY != 0 {
            return Err(Error::Other("the file is read-only".into()).into());
        }
        let bytes = self.write_found(&found, offset as u32, data)?;
        let path = parts.iter().map(|part| (*part).to_string()).collect();
        *self.reading.borrow_mut() = Some((path, Found { bytes, ..found }));
        Ok(())
    }

    /// The file last looked up, if it was at `parts`.
    fn kept(&self, parts: &[&str]) -> Option<Found> {
        self.reading
            .borrow()
            .as_ref()
            .filter(|(kept, _)| kept.iter().eq(parts.iter()))
            .map(|(_, found)| found.clone())
    }

    /// Writes `data` at `offset` of the file of `found` (zero-filling from
    /// its end if `offset` is past it), then its entry; the entry as
    /// written.
    fn write_found(&self, found: &Found, offset: u32, data: &[u8]) -> Outcome<[u8; ENTRY]> {
        let geometry = self.geometry;
        let size = found.size();
        gap_allowed(size, offset)?;
        let end = offset
            .checked_add(u32::try_from(data.len()).map_err(|_| Error::NoSpace)?)
            .ok_or(Error::Other("a FAT file ends before 4 GiB".into()))?;
        let new_size = size.max(end);
        let cluster_bytes = geometry.bytes_per_cluster();
        // Refuse before changing anything if the clusters are not there.
        let have = u64::from(size).div_ceil(cluster_bytes);
        let need = u64::from(new_size).div_ceil(cluster_bytes);
        if need > have {
            let free = self.fat.borrow_mut().free(&self.disk)?;
            if need - have > u64::from(free) {
                return Err(Error::NoSpace.into());
            }
        }
        let mut first = found.first_cluster(geometry.fat_type);
        if first != 0 && !geometry.is_data(first) {
            return Err(corrupt("a file starts outside the volume"));
        }
        if first == 0 && new_size > 0 {
            first = self.fat.borrow_mut().allocate(&self.disk, None)?;
            self.cursor.set(None);
        }
        // Zeros from the old end to `offset`, then the data.
        let from = size.min(offset);
        let mut at = from;
        while at < end {
            let cluster = self.cluster_at(first, (u64::from(at) / cluster_bytes) as u32, true)?;
            let in_cluster = u64::from(at) % cluster_bytes;
            let sector = geometry.cluster_sector(cluster) + in_cluster / SECTOR as u64;
            // A run: to the end of this cluster, and on through the clusters
            // that follow it on the disk.
            let mut run_end = (u64::from(at) - in_cluster + cluster_bytes).min(u64::from(end));
            let mut last = cluster;
            while run_end < u64::from(end)
                && (run_end - u64::from(at)) / (SECTOR as u64) < RUN_SECTORS
            {
                let index = (run_end / cluster_bytes) as u32;
                let next = self.cluster_at(first, index, true)?;
                if next != last + 1 {
                    break;
                }
                last = next;
                run_end = (run_end + cluster_bytes).min(u64::from(end));
            }
            let run_end = run_end as u32;
            let skip = (in_cluster % SECTOR as u64) as usize;
            let len = (run_end - at) as usize;
            let sectors = (skip + len).div_ceil(SECTOR);
            let mut buffer = vec![0u8; sectors * SECTOR];
            // Bytes of the first and last sectors outside the write that
            // the file holds are kept (read first); past its end, zeros.
            let sector_start = at - skip as u32;
            let head = skip > 0 && sector_start < size;
            if head {
                let first = buffer.get_mut(..SECTOR).ok_or(Error::Device)?;
                self.disk.read(sector, first)?;
            }
            let ragged_end = !(skip + len).is_multiple_of(SECTOR);
            if ragged_end && run_end < size && !(head && sectors == 1) {
                let tail = buffer
                    .get_mut((sectors - 1) * SECTOR..)
                    .ok_or(Error::Device)?;
                self.disk.read(sector + (sectors - 1) as u64, tail)?;
            }
            // Zeros up to `offset` (the buffer's), then the data.
            let zeros = offset.saturating_sub(at).min(run_end - at) as usize;
            if let Some(zeroed) = buffer.get_mut(skip..skip + zeros) {
                zeroed.fill(0);
            }
            let data_from = at.max(offset);
            if data_from < run_end {
                let source = data
                    .get((data_from - offset) as usize..(run_end - offset) as usize)
                    .ok_or(Error::Device)?;
                let at_buffer = skip + (data_from - at) as usize;
                buffer
                    .get_mut(at_buffer..at_buffer + source.len())
                    .ok_or(Error::Device)?
                    .copy_from_slice(source);
            }
            self.disk.write(sector, &buffer)?;
            at = run_end;
        }
        // The FAT before the entry that points into it.
        self.commit()?;
        let mut bytes = self.read_sector(found.sector)?;
        let slot = bytes
            .get_mut(found.offset..found.offset + ENTRY)
            .ok_or(Error::Device)?;
        set_first_cluster(slot, first);
        slot[28..32].copy_from_slice(&new_size.to_le_bytes());
        slot[11] |= ARCHIVE;
        stamp(slot);
        let entry: [u8; ENTRY] = (*slot).try_into().map_err(|_| Error::Device)?;
        self.write_sector(found.sector, &bytes)?;
        Ok(entry)
    }

    fn create(&self, path: &str) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::Exists)?;
        let parent = self.directory(parents)?;
        if self.find(parent, last)?.is_some() {
            return Err(Error::Exists.into());
        }
        self.create_entry(parent, last, None).map(|_| ())
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
        let parent = self.directory(parents)?;
        match self.find(parent, last)? {
            Some(_) if create && exclusive => Err(Error::Exists.into()),
            Some(found) if found.is_directory() => {
                if create || truncate {
                    Err(Error::IsADirectory.into())
                } else {
                    Ok(found.to_entry())
                }
            }
            Some(found) => {
                let mut entry = found.to_entry();
                if truncate && entry.size > 0 {
                    self.cut(&found, 0)?;
                    entry.size = 0;
                }
                Ok(entry)
            }
            None if create => {
                let found = self.create_entry(parent, last, None)?;
                Ok(found.to_entry())
            }
            None => Err(Error::NotFound.into()),
        }
    }

    fn create_directory(&self, path: &str) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(Error::Exists)?;
        let parent = self.directory(parents)?;
        if self.find(parent, last)?.is_some() {
            return Err(Error::Exists.into());
        }
        // The new directory's cluster, with `.` and `..`.
        let geometry = self.geometry;
        let cluster = self.fat.borrow_mut().allocate(&self.disk, None)?;
        let parent_cluster = match parent {
            Directory::Chain(first) if first != geometry.root_cluster || !self.is_fat32() => first,
            _ => 0,
        };
        let mut contents = vec![0u8; geometry.bytes_per_cluster() as usize];
        let dot = new_entry(*b".          ", DIRECTORY, cluster);
        let dot_dot = new_entry(*b"..         ", DIRECTORY, parent_cluster);
        contents
            .get_mut(..ENTRY)
            .ok_or(Error::Device)?
            .copy_from_slice(&dot);
        contents
            .get_mut(ENTRY..2 * ENTRY)
            .ok_or(Error::Device)?
            .copy_from_slice(&dot_dot);
        self.disk
            .write(geometry.cluster_sector(cluster), &contents)?;
        let template = new_entry([b' '; 11], DIRECTORY, cluster);
        self.create_entry(parent, last, Some(template)).map(|_| ())
    }

    fn is_fat32(&self) -> bool {
        self.geometry.fat_type == FatType::Fat32
    }

    /// Sets the size of file `path`: extends with zeros, or cuts its chain.
    fn set_size(&self, path: &str, size: u64) -> Outcome<()> {
        let parts = components(path)?;
        let (_, found) = self.file(&parts)?;
        let current = u64::from(found.size());
        match size.cmp(&current) {
            core::cmp::Ordering::Equal => Ok(()),
            core::cmp::Ordering::Greater => {
                let size = u32::try_from(size)
                    .map_err(|_| Error::Other("a FAT file ends before 4 GiB".into()))?;
                self.write_found(&found, size, &[]).map(|_| ())
            }
            core::cmp::Ordering::Less => self.cut(&found, size),
        }
    }

    /// Cuts the file of `found` to `size` bytes, freeing the clusters past
    /// it.
    fn cut(&self, found: &Found, size: u64) -> Outcome<()> {
        let geometry = self.geometry;
        let first = found.first_cluster(geometry.fat_type);
        let keep = size.div_ceil(geometry.bytes_per_cluster());
        let size32 = u32::try_from(size).map_err(|_| Error::NoSpace)?;
        let mut bytes = self.read_sector(found.sector)?;
        let slot = bytes
            .get_mut(found.offset..found.offset + ENTRY)
            .ok_or(Error::Device)?;
        slot[28..32].copy_from_slice(&size32.to_le_bytes());
        stamp(slot);
        self.cursor.set(None);
        if keep == 0 || !geometry.is_data(first) {
            // The entry lets go of the chain first, then the chain is freed.
            set_first_cluster(slot, 0);
            self.write_sector(found.sector, &bytes)?;
            if geometry.is_data(first) {
                self.fat.borrow_mut().free_chain(&self.disk, first)?;
            }
            return Ok(());
        }
        let last = self.cluster_at(first, (keep - 1) as u32, false)?;
        self.cursor.set(None);
        let rest = self.fat_get(last)?;
        let mut fat = self.fat.borrow_mut();
        fat.set(&self.disk, last, geometry.end_of_chain())?;
        if geometry.is_data(rest) {
            fat.free_chain(&self.disk, rest)?;
        }
        drop(fat);
        self.commit()?;
        self.write_sector(found.sector, &bytes)?;
        Ok(())
    }

    /// Removes the file (or, if `directory`, the empty directory) at `path`,
    /// with its long-name entries and its clusters.
    fn remove(&self, path: &str, directory: bool) -> Outcome<()> {
        let parts = components(path)?;
        let (last, parents) = parts.split_last().ok_or(if directory {
            Error::Other("the root stays".into())
        } else {
            Error::IsADirectory
        })?;
        let parent = self.directory(parents)?;
        let found = self.lookup(parent, last)?;
        self.remove_found(parent, &found, directory)
    }

    fn remove_found(&self, parent: Directory, found: &Found, directory: bool) -> Outcome<()> {
        let is_directory = found.is_directory();
        if is_directory && !directory {
            return Err(Error::IsADirectory.into());
        }
        if directory && !is_directory {
            return Err(Error::NotADirectory.into());
        }
        let first = found.first_cluster(self.geometry.fat_type);
        if is_directory && self.geometry.is_data(first) {
            let mut empty = true;
            self.each_entry(Directory::Chain(first), |entry| {
                if entry.is_dot() {
                    return ControlFlow::Continue(());
                }
                empty = false;
                ControlFlow::Break(())
            })?;
            if !empty {
                return Err(Error::NotEmpty.into());
            }
        }
        self.erase(parent, found)?;
        if self.geometry.is_data(first) {
            self.cursor.set(None);
            self.fat.borrow_mut().free_chain(&self.disk, first)?;
        }
        Ok(())
    }

    /// Moves `from` to `to`, replacing a file (or an empty directory) there.
    /// The new entry gets the old one's contents under its new name; the old
    /// entry and its long name are erased. A directory moved to another
    /// parent gets its `..` pointed there.
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
        let from_parent = self.directory(from_parents)?;
        let found = self.lookup(from_parent, from_last)?;
        let to_parent = self.directory(to_parents)?;
        if let Some(existing) = self.find(to_parent, to_last)? {
            if to_parent == from_parent && existing.index == found.index {
                // The same entry (the name differs at most in case).
                return Ok(());
            }
            match (found.is_directory(), existing.is_directory()) {
                (false, false) => self.remove_found(to_parent, &existing, false)?,
                (true, true) => self.remove_found(to_parent, &existing, true)?,
                (false, true) => return Err(Error::IsADirectory.into()),
                (true, false) => return Err(Error::NotADirectory.into()),
            }
        }
        self.create_entry(to_parent, to_last, Some(found.bytes))?;
        // The source entry has not moved: creating only fills free slots.
        self.erase(from_parent, &found)?;
        let moved = found.first_cluster(self.geometry.fat_type);
        if found.is_directory() && to_parent != from_parent && self.geometry.is_data(moved) {
            let parent_cluster = match to_parent {
                Directory::Chain(first)
                    if first != self.geometry.root_cluster || !self.is_fat32() =>
                {
                    first
                }
                _ => 0,
            };
            let first = self.geometry.cluster_sector(moved);
            let mut bytes = self.read_sector(first)?;
            if bytes.get(ENTRY..ENTRY + 2) == Some(b"..".as_slice())
                && let Some(slot) = bytes.get_mut(ENTRY..2 * ENTRY)
            {
                set_first_cluster(slot, parent_cluster);
                self.write_sector(first, &bytes)?;
            }
        }
        Ok(())
    }

    /// Marks the entry of `found` and its long-name entries deleted.
    fn erase(&self, directory: Directory, found: &Found) -> Outcome<()> {
        let sectors = self.directory_sectors(directory)?;
        let per_sector = SECTOR / ENTRY;
        let mut current: Option<(u64, [u8; SECTOR])> = None;
        for index in found.first_index..=found.index {
            let sector = sectors
                .get(index / per_sector)
                .copied()
                .ok_or(corrupt("an entry outside its directory"))?;
            if current.as_ref().is_none_or(|(held, _)| *held != sector) {
                if let Some((held, bytes)) = &current {
                    self.write_sector(*held, bytes)?;
                }
                current = Some((sector, self.read_sector(sector)?));
            }
            if let Some((_, bytes)) = current.as_mut()
                && let Some(byte) = bytes.get_mut((index % per_sector) * ENTRY)
            {
                *byte = DELETED;
            }
        }
        if let Some((held, bytes)) = &current {
            self.write_sector(*held, bytes)?;
        }
        Ok(())
    }

    /// Adds a zeroed cluster to the end of a directory in clusters; its
    /// sectors.
    fn grow(&self, directory: Directory, sectors: &[u64]) -> Outcome<Vec<u64>> {
        let Directory::Chain(_) = directory else {
            return Err(Error::NoSpace.into());
        };
        if sectors.len() >= MAX_DIRECTORY_SECTORS {
            return Err(Error::NoSpace.into());
        }
        let last_sector = sectors.last().copied().ok_or(Error::NoSpace)?;
        let geometry = self.geometry;
        let last = u32::try_from(
            last_sector.saturating_sub(geometry.data_start)
                / u64::from(geometry.sectors_per_cluster),
        )
        .map_err(|_| Error::NoSpace)?
            + 2;
        let new = self.fat.borrow_mut().allocate(&self.disk, Some(last))?;
        let first = geometry.cluster_sector(new);
        self.disk
            .write(first, &vec![0u8; geometry.bytes_per_cluster() as usize])?;
        Ok((0..u64::from(geometry.sectors_per_cluster))
            .map(|index| first + index)
            .collect())
    }

    /// Creates an entry `name` in `directory`, behind long-name entries if
    /// the name is not an upper-case 8.3 one. `template` gives everything
    /// but the name (a directory's cluster, a renamed entry's contents);
    /// without one it is an empty file stamped now.
    fn create_entry(
        &self,
        directory: Directory,
        name: &str,
        template: Option<[u8; ENTRY]>,
    ) -> Outcome<Found> {
        if name.encode_utf16().count() > 255 {
            return Err(Error::NameTooLong.into());
        }
        if !is_valid_long(name) {
            return Err(Error::InvalidName.into());
        }
        // The short names taken, and the directory's free slots.
        let sectors = self.directory_sectors(directory)?;
        let mut contents = Vec::with_capacity(sectors.len());
        for sector in &sectors {
            contents.push(self.read_sector(*sector)?);
        }
        let per_sector = SECTOR / ENTRY;
        let slot_of = |contents: &Vec<[u8; SECTOR]>, index: usize| -> Option<[u8; ENTRY]> {
            let bytes = contents.get(index / per_sector)?;
            let at = (index % per_sector) * ENTRY;
            bytes.get(at..at + ENTRY)?.try_into().ok()
        };
        let mut taken: Vec<[u8; 11]> = Vec::new();
        for index in 0..contents.len() * per_sector {
            let Some(slot) = slot_of(&contents, index) else {
                break;
            };
            if slot[0] == 0 {
                break;
            }
            if slot[0] != DELETED && slot[11] & 0x3f != LONG_NAME_ATTRIBUTE {
                let mut short = [0u8; 11];
                short.copy_from_slice(&slot[..11]);
                taken.push(short);
            }
        }
        let short = if is_short(name) {
            short_bytes(name)
        } else {
            let upper = name.to_ascii_uppercase();
            let mut chosen = None;
            for number in 0..1_000_000u32 {
                // A name that is 8.3 but for its case keeps it through a
                // long name, with itself upper-cased as the alias.
                let candidate = match number {
                    0 if is_short(&upper) => short_bytes(&upper),
                    0 => continue,
                    _ => alias(name, number),
                };
                if !taken.contains(&candidate) {
                    chosen = Some(candidate);
                    break;
                }
            }
            chosen.ok_or(Error::NoSpace)?
        };
        let mut entry = template.unwrap_or_else(|| new_entry([b' '; 11], ARCHIVE, 0));
        entry[..11].copy_from_slice(&short);
        let long = if is_short(name) {
            Vec::new()
        } else {
            long_entries(name, &short)
        };
        let need = long.len() + 1;
        let find_run = |contents: &Vec<[u8; SECTOR]>| -> Option<usize> {
            let mut run = 0;
            let mut ended = false;
            for index in 0..contents.len() * per_sector {
                let byte = slot_of(contents, index).map_or(0, |slot| slot[0]);
                ended |= byte == 0;
                if ended || byte == DELETED {
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
        let mut start = find_run(&contents);
        // A directory in clusters grows (a cluster at a time, at most
        // three: a 255-character name takes 21 entries) until the run fits.
        for _ in 0..3 {
            if start.is_some() {
                break;
            }
            let added = self.grow(directory, &sectors)?;
            contents.extend(added.iter().map(|_| [0u8; SECTOR]));
            sectors.extend(added);
            start = find_run(&contents);
        }
        let start = start.ok_or(Error::NoSpace)?;
        // The FAT (a new directory's cluster, a grown directory) before the
        // entries that rely on it.
        self.commit()?;
        let mut touched = Vec::new();
        let mut put = |contents: &mut Vec<[u8; SECTOR]>, index: usize, slot: &[u8]| {
            let at = (index % per_sector) * ENTRY;
            if let Some(field) = contents
                .get_mut(index / per_sector)
                .and_then(|bytes| bytes.get_mut(at..at + ENTRY))
            {
                field.copy_from_slice(slot);
                touched.push(index / per_sector);
            }
        };
        for (step, slot) in long.iter().enumerate() {
            put(&mut contents, start + step, slot);
        }
        let short_at = start + long.len();
        put(&mut contents, short_at, &entry);
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
        Ok(Found {
            bytes: entry,
            sector,
            offset: (short_at % per_sector) * ENTRY,
            index: short_at,
            first_index: start,
            long: (!is_short(name)).then(|| String::from(name)),
        })
    }
}

/// Whether two names are the same, ignoring case (as FAT does).
fn same_name(a: &str, b: &str) -> bool {
    crate::layout::same_name(a, b)
}

/// A new short entry named `name` (11 bytes), stamped now.
fn new_entry(name: [u8; 11], attributes: u8, cluster: u32) -> [u8; ENTRY] {
    let mut entry = [0u8; ENTRY];
    entry[..11].copy_from_slice(&name);
    entry[11] = attributes;
    let (date, time) = crate::names::fat_date_time(Clock::now());
    entry[14..16].copy_from_slice(&time.to_le_bytes());
    entry[16..18].copy_from_slice(&date.to_le_bytes());
    entry[18..20].copy_from_slice(&date.to_le_bytes());
    entry[22..24].copy_from_slice(&time.to_le_bytes());
    entry[24..26].copy_from_slice(&date.to_le_bytes());
    set_first_cluster(&mut entry, cluster);
    entry
}

/// The first cluster of a directory entry.
fn first_cluster(entry: &[u8], fat_type: FatType) -> u32 {
    let high = match fat_type {
        FatType::Fat32 => u32::from(u16_at(entry, 20)) << 16,
        FatType::Fat12 | FatType::Fat16 => 0,
    };
    high | u32::from(u16_at(entry, 26))
}

/// Sets the first cluster of a directory entry.
fn set_first_cluster(entry: &mut [u8], cluster: u32) {
    let [a, b, c, d] = cluster.to_le_bytes();
    if let Some(field) = entry.get_mut(20..22) {
        field.copy_from_slice(&[c, d]);
    }
    if let Some(field) = entry.get_mut(26..28) {
        field.copy_from_slice(&[a, b]);
    }
}

/// Sets the modification time (and access date) of an entry to now.
fn stamp(entry: &mut [u8]) {
    let (date, time) = crate::names::fat_date_time(Clock::now());
    if let Some(field) = entry.get_mut(18..20) {
        field.copy_from_slice(&date.to_le_bytes());
    }
    if let Some(field) = entry.get_mut(22..26) {
        field[..2].copy_from_slice(&time.to_le_bytes());
        field[2..].copy_from_slice(&date.to_le_bytes());
    }
}

/// A FAT date and time in seconds since 1970-01-01 (FAT keeps local time;
/// this system's clock is UTC).
fn seconds_since_1970(date: u16, time: u16) -> u64 {
    let year = 1980 + u64::from(date >> 9);
    let month = u64::from((date >> 5) & 0x0f).clamp(1, 12);
    let day = u64::from(date & 0x1f).max(1);
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
        + u64::from(time >> 11) * 3600
        + u64::from((time >> 5) & 0x3f) * 60
        + u64::from(time & 0x1f) * 2
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
