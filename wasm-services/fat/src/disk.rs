//! The disk under the file system: sectors from the block service (or an
//! image in memory, for the tests), any number at a time, split into block
//! requests of at most [`MAX_SECTORS`], with a read-ahead for one-sector
//! reads (FAT and directory sectors).

use crate::layout::SECTOR;
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::block;
use core::cell::RefCell;

/// The most sectors one block request carries.
pub const MAX_SECTORS: usize = block::MAX_SECTORS as usize;

/// Why a disk access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The block service is gone or the kernel refused the call.
    Gone,
    /// The block service answered with an error.
    Device(block::Error),
    /// The block service answered something that is not an answer to the
    /// request.
    Protocol,
    /// A buffer that is not whole sectors.
    Refused,
}

impl core::fmt::Display for DiskError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DiskError::Gone => formatter.write_str("the disk driver is gone"),
            DiskError::Device(error) => write!(formatter, "the disk driver reports {error:?}"),
            DiskError::Protocol => formatter.write_str("malformed answer from the disk driver"),
            DiskError::Refused => formatter.write_str("refused disk access"),
        }
    }
}

impl core::error::Error for DiskError {}

/// Raw sectors: the block protocol, or an image in memory for tests.
pub trait Sectors {
    /// How many sectors the disk has.
    fn capacity(&self) -> Result<u64, DiskError>;
    /// Fills `buffer` (1 to [`MAX_SECTORS`] whole sectors) from `sector` on.
    fn read(&self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `data` (1 to [`MAX_SECTORS`] whole sectors) from `sector` on.
    fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Makes earlier writes durable.
    fn flush(&self) -> Result<(), DiskError>;
}

/// The disk as the file system sees it.
pub struct Disk<S> {
    io: S,
    /// The device's sectors.
    capacity: u64,
    /// The sectors read ahead of one-sector reads.
    ahead: RefCell<ReadAhead>,
}

/// How many runs of sectors the read-ahead keeps: a file's data, its FAT
/// sector and a directory or two, so that reading one does not evict the
/// others.
const WINDOWS: usize = 4;

/// FAT and directory sectors are read one at a time; each miss here fetches as many
/// as one block request carries into the least recently used of a few
/// windows, so sequential reads (file data, FAT and directory sectors, also
/// interleaved) cost a seventh of the calls. Writes go through and update
/// it. It lives as long as the mount: a remount starts it empty.
struct ReadAhead {
    /// On the heap: a service has a 64 KiB stack.
    windows: Vec<Window>,
    /// File data read ahead (see [`Disk::read_file`]), apart from the
    /// windows so that a file read never evicts FAT or directory sectors.
    data: Window,
    /// Counts lookups, to find the least recently used window.
    clock: u64,
}

/// Sectors read together.
struct Window {
    /// First device sector held.
    start: u64,
    /// Sectors held (0: none).
    count: usize,
    /// The `clock` when it was last used.
    used: u64,
    data: Vec<u8>,
}

impl Window {
    fn sector(&self, sector: u64) -> Option<&[u8]> {
        let index = usize::try_from(sector.checked_sub(self.start)?).ok()?;
        if index >= self.count {
            return None;
        }
        self.data.get(index * SECTOR..(index + 1) * SECTOR)
    }

    /// Copies written sectors over the ones held.
    fn update(&mut self, sector: u64, data: &[u8]) {
        for (offset, written) in (0u64..).zip(data.chunks(SECTOR)) {
            let Some(index) = (sector + offset)
                .checked_sub(self.start)
                .and_then(|index| usize::try_from(index).ok())
                .filter(|index| *index < self.count)
            else {
                continue;
            };
            if let Some(held) = self.data.get_mut(index * SECTOR..(index + 1) * SECTOR)
                && held.len() == written.len()
            {
                held.copy_from_slice(written);
            }
        }
    }
}

impl ReadAhead {
    fn new() -> Self {
        ReadAhead {
            windows: (0..WINDOWS)
                .map(|_| Window {
                    start: 0,
                    count: 0,
                    used: 0,
                    data: vec![0; MAX_SECTORS * SECTOR],
                })
                .collect(),
            data: Window {
                start: 0,
                count: 0,
                used: 0,
                data: vec![0; MAX_SECTORS * SECTOR],
            },
            clock: 0,
        }
    }

    /// The window holding `sector`, marked used.
    fn find(&mut self, sector: u64) -> Option<&Window> {
        self.clock += 1;
        let window = self
            .windows
            .iter_mut()
            .find(|window| window.sector(sector).is_some())?;
        window.used = self.clock;
        Some(window)
    }

    /// The window to fill next: an empty one, else the least recently used.
    fn victim(&mut self) -> Option<&mut Window> {
        let clock = self.clock;
        let window = self
            .windows
            .iter_mut()
            .min_by_key(|window| if window.count == 0 { 0 } else { window.used })?;
        window.used = clock;
        Some(window)
    }

    fn update(&mut self, sector: u64, data: &[u8]) {
        for window in &mut self.windows {
            window.update(sector, data);
        }
        self.data.update(sector, data);
    }

    fn clear(&mut self) {
        for window in &mut self.windows {
            window.count = 0;
        }
        self.data.count = 0;
    }
}

impl<S: Sectors> Disk<S> {
    /// Asks the device for its size.
    pub fn open(io: S) -> Result<Disk<S>, DiskError> {
        let capacity = io.capacity()?;
        Ok(Disk {
            capacity,
            io,
            ahead: RefCell::new(ReadAhead::new()),
        })
    }

    /// The device's sectors.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The underlying sectors (for `flush`).
    pub fn io(&self) -> &S {
        &self.io
    }

    /// Reads whole sectors from `sector` on (any number).
    pub fn read(&self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError> {
        if !buffer.len().is_multiple_of(SECTOR) {
            return Err(DiskError::Refused);
        }
        let mut sector = sector;
        for chunk in buffer.chunks_mut(MAX_SECTORS * SECTOR) {
            self.read_device(sector, chunk)?;
            sector += (chunk.len() / SECTOR) as u64;
        }
        Ok(())
    }

    /// Reads from the device, one-sector reads through the read-ahead.
    fn read_device(&self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError> {
        if buffer.len() != SECTOR || sector >= self.capacity {
            return self.io.read(sector, buffer);
        }
        let mut ahead = self.ahead.borrow_mut();
        if let Some(window) = ahead.find(sector) {
            let held = window.sector(sector).ok_or(DiskError::Refused)?;
            buffer.copy_from_slice(held);
            return Ok(());
        }
        let window = ahead.victim().ok_or(DiskError::Refused)?;
        let count = (self.capacity - sector).min(MAX_SECTORS as u64) as usize;
        window.count = 0;
        let fill = window
            .data
            .get_mut(..count * SECTOR)
            .ok_or(DiskError::Refused)?;
        self.io.read(sector, fill)?;
        window.start = sector;
        window.count = count;
        let held = window.sector(sector).ok_or(DiskError::Refused)?;
        buffer.copy_from_slice(held);
        Ok(())
    }

    /// Reads file data: whole sectors from `sector` on, where the file goes
    /// on contiguously for `run` sectors (at least the buffer's). A miss
    /// reads as many of those as one block request carries, so sequential
    /// reads of 3 KiB cost about one block request per 7 sectors.
    pub fn read_file(&self, sector: u64, buffer: &mut [u8], run: u64) -> Result<(), DiskError> {
        if !buffer.len().is_multiple_of(SECTOR) {
            return Err(DiskError::Refused);
        }
        let mut ahead = self.ahead.borrow_mut();
        for (offset, chunk) in (0u64..).zip(buffer.chunks_mut(SECTOR)) {
            let at = sector + offset;
            if ahead.data.sector(at).is_none() {
                let count = run
                    .saturating_sub(offset)
                    .min(self.capacity.saturating_sub(at))
                    .clamp(1, MAX_SECTORS as u64) as usize;
                let window = &mut ahead.data;
                window.count = 0;
                let fill = window
                    .data
                    .get_mut(..count * SECTOR)
                    .ok_or(DiskError::Refused)?;
                self.io.read(at, fill)?;
                window.start = at;
                window.count = count;
            }
            let held = ahead.data.sector(at).ok_or(DiskError::Refused)?;
            chunk.copy_from_slice(held);
        }
        Ok(())
    }

    /// Writes whole sectors from `sector` on (any number), as few block
    /// requests as [`MAX_SECTORS`] allows.
    pub fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        if !data.len().is_multiple_of(SECTOR) {
            return Err(DiskError::Refused);
        }
        let mut sector = sector;
        for chunk in data.chunks(MAX_SECTORS * SECTOR) {
            let written = self.io.write(sector, chunk);
            let mut ahead = self.ahead.borrow_mut();
            match written {
                Ok(()) => ahead.update(sector, chunk),
                Err(error) => {
                    // What the device holds now is unknown.
                    ahead.clear();
                    return Err(error);
                }
            }
            sector += (chunk.len() / SECTOR) as u64;
        }
        Ok(())
    }
}

/// The block protocol on an endpoint.
#[cfg(target_family = "wasm")]
#[derive(Clone, Copy, Debug)]
pub struct BlockClient(pub atoll_sdk::Endpoint);

#[cfg(target_family = "wasm")]
impl BlockClient {
    fn call(&self, request: &block::Request) -> Result<block::Response, DiskError> {
        match self.0.request(request) {
            Ok(block::Response::Error(error)) => Err(DiskError::Device(error)),
            Ok(response) => Ok(response),
            Err(atoll_sdk::CallError::Decode) => Err(DiskError::Protocol),
            Err(_) => Err(DiskError::Gone),
        }
    }
}

#[cfg(target_family = "wasm")]
impl Sectors for BlockClient {
    fn capacity(&self) -> Result<u64, DiskError> {
        match self.call(&block::Request::Capacity)? {
            block::Response::Capacity { sectors } => Ok(sectors),
            _ => Err(DiskError::Protocol),
        }
    }

    fn read(&self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError> {
        let count = u32::try_from(buffer.len() / SECTOR).map_err(|_| DiskError::Refused)?;
        match self.call(&block::Request::Read { sector, count })? {
            block::Response::Data(data) if data.len() == buffer.len() => {
                buffer.copy_from_slice(&data);
                Ok(())
            }
            _ => Err(DiskError::Protocol),
        }
    }

    fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let request = block::Request::Write {
            sector,
            data: data.to_vec(),
        };
        match self.call(&request)? {
            block::Response::Done => Ok(()),
            _ => Err(DiskError::Protocol),
        }
    }

    fn flush(&self) -> Result<(), DiskError> {
        match self.call(&block::Request::Flush)? {
            block::Response::Done => Ok(()),
            _ => Err(DiskError::Protocol),
        }
    }
}
