//! WASI preview1 files: the program's descriptor table and the translation
//! of its file calls into requests of the file protocol (`atoll_abi::fs`),
//! sent to the file services of its preopened directories.
//!
//! What is here: [`Files`], the descriptors from 3 up (the preopens of
//! `Startup` first, in their order, then its listening sockets, then what
//! `path_open` and `sock_accept` add), each with its service's handle, its
//! path on that service, its rights, flags and position; path resolution
//! (`..` never leaves the preopen: it is `ENOTCAPABLE`), read from the
//! program's memory a piece at a time so that no path is copied whole;
//! every preview1 file function. An operation larger than one request is a
//! loop of blocking calls: a 64 KiB `fd_read` is 22 `Read`s of 3 KiB, a
//! write of more than one message goes in `Stage` pieces (nothing is on the
//! disk until the last is answered), a directory listing longer than one
//! page asks again. The tests (`tests/files.rs`) run it against a fake file
//! service.
//!
//! What is not here: the file system (the FAT service), stdio
//! (`stdio.rs`), sockets (`sockets.rs`, which shares the table), links,
//! symlinks and times set by the program (`path_link`, `path_symlink`,
//! `path_readlink`, `*_set_times` stay stubs). A request that gets no answer
//! (its file service ended under it) leaves its descriptor answering `EIO`
//! from then on ([`Shim::operation`](crate::Shim)); nothing waits for ever.

use crate::program::{Memory, at, buffers, gather, scatter, store, total};
use crate::sockets::{self, Socket};
use crate::{Errno, Exchange, Kernel, Shim, code};
use alloc::string::String;
use alloc::vec::Vec;
use atoll_abi::fs::{self as protocol, Entry, MAX_DATA, MAX_NAME_LEN, Request, Response};
use atoll_abi::startup::{Listener, Preopen};
use atoll_abi::wasi::errno;

/// The first descriptor of the table (0, 1 and 2 are stdio).
pub(crate) const FIRST: i32 = 3;
/// The most descriptors a program may hold open.
const MAX_DESCRIPTORS: usize = 256;
/// The longest path sent to a file service: with [`MAX_DATA`] bytes of data
/// a request still fits a message.
const MAX_PATH_LEN: usize = 768;
/// The most bytes one `fd_write` takes (a shorter write is legal; libcs
/// loop): what one staged write holds.
const MAX_WRITE: usize = protocol::MAX_STAGED as usize;
/// Bytes of a path read from the program at a time.
const PATH_CHUNK: usize = 256;

/// Rights (preview1 `rights` bits).
pub(crate) mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_RENAME_SOURCE: u64 = 1 << 16;
    pub const PATH_RENAME_TARGET: u64 = 1 << 17;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    pub const PATH_UNLINK_FILE: u64 = 1 << 26;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;

    /// What a regular file can be given.
    pub const FILE: u64 = FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | POLL_FD_READWRITE;
    /// What a directory can be given.
    pub const DIRECTORY: u64 = FD_DATASYNC
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_OPEN
        | FD_READDIR
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_SIZE
        | FD_FILESTAT_GET
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE;
    /// What a read-only preopen takes away.
    pub const WRITING: u64 = FD_WRITE
        | FD_ALLOCATE
        | FD_FILESTAT_SET_SIZE
        | PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_FILESTAT_SET_SIZE
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE;
}

/// `oflags` of `path_open`.
pub(crate) const O_CREAT: i32 = 1 << 0;
pub(crate) const O_DIRECTORY: i32 = 1 << 1;
pub(crate) const O_EXCL: i32 = 1 << 2;
pub(crate) const O_TRUNC: i32 = 1 << 3;
/// `fdflags`.
pub(crate) const FDFLAG_APPEND: u16 = 1 << 0;
pub(crate) const FDFLAG_NONBLOCK: u16 = 1 << 2;
/// `filetype`.
pub(crate) const FILETYPE_DIRECTORY: u8 = 3;
pub(crate) const FILETYPE_REGULAR_FILE: u8 = 4;
pub(crate) const FILETYPE_SOCKET_STREAM: u8 = 6;
/// `whence`.
pub(crate) const WHENCE_SET: i32 = 0;
pub(crate) const WHENCE_CURRENT: i32 = 1;
pub(crate) const WHENCE_END: i32 = 2;
/// Sizes of the records written to the program.
pub(crate) const FILESTAT_LEN: usize = 64;
const FDSTAT_LEN: usize = 24;
pub(crate) const DIRENT_LEN: usize = 24;

/// A program's open files, directories and sockets.
#[derive(Debug, Default)]
pub(crate) struct Files {
    /// Descriptor `FIRST + i` is entry `i`.
    descriptors: Vec<Option<Descriptor>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Directory,
    File,
    /// A TCP socket (`sockets.rs`): `handle` is its TCP/IP service's.
    Socket(Socket),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) kind: Kind,
    /// The file (or TCP/IP) service's handle.
    pub(crate) handle: i32,
    /// The preopen's directory on the file service: nothing above it is
    /// reachable.
    root: String,
    /// Components below `root`.
    below: Vec<String>,
    /// The name a preopen is shown by (`fd_prestat_dir_name`).
    pub(crate) preopen: Option<String>,
    pub(crate) rights: u64,
    inheriting: u64,
    pub(crate) flags: u16,
    position: u64,
    read_only: bool,
    /// A request of this descriptor got no answer: its service ended.
    broken: bool,
}

impl Descriptor {
    /// A socket descriptor on the TCP/IP service at `handle`.
    pub(crate) fn socket(handle: i32, socket: Socket, rights: u64) -> Descriptor {
        Descriptor {
            kind: Kind::Socket(socket),
            handle,
            root: String::new(),
            below: Vec::new(),
            preopen: None,
            rights,
            inheriting: 0,
            flags: 0,
            position: 0,
            read_only: false,
            broken: false,
        }
    }

    fn path(&self) -> String {
        join(&self.root, &self.below)
    }
}

/// `root` and the components below it as one path of the file service.
fn join(root: &str, below: &[String]) -> String {
    let mut path = String::from(root.trim_end_matches('/'));
    for part in below {
        path.push('/');
        path.push_str(part);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// A path resolved against a directory descriptor.
#[derive(Clone, Debug)]
struct Target {
    handle: i32,
    root: String,
    below: Vec<String>,
    read_only: bool,
    inheriting: u64,
}

impl Target {
    fn path(&self) -> String {
        join(&self.root, &self.below)
    }

    /// Whether the path is the preopen itself.
    fn is_root(&self) -> bool {
        self.below.is_empty()
    }
}

impl Files {
    /// The table a program starts with: its preopens, then its listening
    /// sockets.
    pub(crate) fn new(preopens: &[Preopen], listeners: &[Listener]) -> Files {
        let mut descriptors: Vec<_> = preopens
            .iter()
            .map(|preopen| {
                let mut rights = rights::DIRECTORY;
                let mut inheriting = rights::DIRECTORY | rights::FILE;
                if preopen.read_only {
                    rights &= !rights::WRITING;
                    inheriting &= !rights::WRITING;
                }
                Some(Descriptor {
                    kind: Kind::Directory,
                    handle: preopen.handle,
                    root: preopen.directory.clone(),
                    below: Vec::new(),
                    preopen: Some(preopen.guest.clone()),
                    rights,
                    inheriting,
                    flags: 0,
                    position: 0,
                    read_only: preopen.read_only,
                    broken: false,
                })
            })
            .collect();
        descriptors.extend(
            listeners
                .iter()
                .map(|listener| Some(sockets::listener(listener))),
        );
        Files { descriptors }
    }

    fn index(fd: i32) -> Errno<usize> {
        fd.checked_sub(FIRST)
            .and_then(|index| usize::try_from(index).ok())
            .ok_or(errno::BADF)
    }

    pub(crate) fn slot(&self, fd: i32) -> Errno<&Descriptor> {
        self.descriptors
            .get(Files::index(fd)?)
            .and_then(Option::as_ref)
            .ok_or(errno::BADF)
    }

    pub(crate) fn slot_mut(&mut self, fd: i32) -> Errno<&mut Descriptor> {
        self.descriptors
            .get_mut(Files::index(fd)?)
            .and_then(Option::as_mut)
            .ok_or(errno::BADF)
    }

    pub(crate) fn is_open(&self, fd: i32) -> bool {
        self.slot(fd).is_ok()
    }

    /// Descriptor `fd`, usable (not broken) and holding `right`.
    pub(crate) fn usable(&self, fd: i32, right: u64) -> Errno<&Descriptor> {
        let descriptor = self.slot(fd)?;
        if descriptor.broken {
            return Err(errno::IO);
        }
        if descriptor.rights & right != right {
            // Reading or writing without the right is what POSIX calls a
            // descriptor not open for it.
            return Err(if right & (rights::FD_READ | rights::FD_WRITE) != 0 {
                errno::BADF
            } else {
                errno::NOTCAPABLE
            });
        }
        Ok(descriptor)
    }

    /// Makes descriptor `fd` answer `EIO` from now on.
    pub(crate) fn break_descriptor(&mut self, fd: i32) {
        if let Ok(descriptor) = self.slot_mut(fd) {
            descriptor.broken = true;
        }
    }

    /// Whether [`Files::insert`] would find a slot.
    pub(crate) fn has_room(&self) -> bool {
        self.descriptors.len() < MAX_DESCRIPTORS || self.descriptors.iter().any(Option::is_none)
    }

    /// Adds a descriptor in the lowest free slot; its number.
    pub(crate) fn insert(&mut self, descriptor: Descriptor) -> Errno<i32> {
        let index = match self.descriptors.iter().position(Option::is_none) {
            Some(index) => index,
            None if self.descriptors.len() < MAX_DESCRIPTORS => {
                self.descriptors.push(None);
                self.descriptors.len() - 1
            }
            None => return Err(errno::MFILE),
        };
        let slot = self.descriptors.get_mut(index).ok_or(errno::MFILE)?;
        *slot = Some(descriptor);
        i32::try_from(index)
            .ok()
            .and_then(|index| index.checked_add(FIRST))
            .ok_or(errno::MFILE)
    }

    /// Takes descriptor `fd` out of the table.
    fn take(&mut self, fd: i32) -> Errno<Descriptor> {
        self.descriptors
            .get_mut(Files::index(fd)?)
            .and_then(Option::take)
            .ok_or(errno::BADF)
    }

    /// Moves descriptor `from` onto `to` (both open), replacing it.
    pub(crate) fn renumber(&mut self, from: i32, to: i32) -> Errno<()> {
        self.slot(from)?;
        self.slot(to)?;
        if from == to {
            return Ok(());
        }
        let moved = self.take(from)?;
        let slot = self
            .descriptors
            .get_mut(Files::index(to)?)
            .ok_or(errno::BADF)?;
        *slot = Some(moved);
        Ok(())
    }

    pub(crate) fn close(&mut self, fd: i32) -> Errno<()> {
        self.take(fd).map(|_| ())
    }

    /// Resolves the path of `len` bytes at `ptr` of the program's memory
    /// (checked by the caller) against directory `fd`, which must hold
    /// `right`.
    fn resolve(
        &self,
        memory: &impl Memory,
        fd: i32,
        path: (u32, u32),
        right: u64,
    ) -> Errno<Target> {
        let directory = self.usable(fd, 0)?;
        if directory.kind != Kind::Directory {
            return Err(errno::NOTDIR);
        }
        if directory.rights & right != right {
            return Err(if directory.read_only && right & rights::WRITING != 0 {
                errno::ACCES
            } else {
                errno::NOTCAPABLE
            });
        }
        let below = walk(memory, &directory.root, directory.below.clone(), path)?;
        let target = Target {
            handle: directory.handle,
            root: directory.root.clone(),
            below,
            read_only: directory.read_only,
            inheriting: directory.inheriting,
        };
        if target.path().len() > MAX_PATH_LEN {
            return Err(errno::NAMETOOLONG);
        }
        Ok(target)
    }
}

/// The components below `root` that `path` (the program's bytes, `len` at
/// `ptr`) leads to from `below`, with the kernel's errors in the kernel's
/// order: the whole path's (`EILSEQ` not UTF-8, `ENOENT` empty,
/// `ENOTCAPABLE` absolute or with a NUL), then the first component's that
/// fails (`ENOTCAPABLE` for a `..` above the preopen, `ENAMETOOLONG` for a
/// name over [`MAX_NAME_LEN`]), then `ENAMETOOLONG` for a result longer than
/// [`MAX_PATH_LEN`].
///
/// The path is read [`PATH_CHUNK`] bytes at a time and never held whole:
/// components that would make the result too long are only counted
/// (`beyond`), since a `..` may still take them off again; what is kept is
/// bounded by the limits, however long the program's path.
fn walk(
    memory: &impl Memory,
    root: &str,
    below: Vec<String>,
    path: (u32, u32),
) -> Errno<Vec<String>> {
    let (ptr, len) = path;
    let mut walk = Walk {
        base: root.trim_end_matches('/').len(),
        length: below.iter().map(|part| part.len() + 1).sum(),
        below,
        beyond: 0,
        name: Vec::new(),
        failed: None,
    };
    let mut buffer = [0u8; PATH_CHUNK + 3];
    // Bytes of a character cut at the end of the last chunk, at the start
    // of `buffer`.
    let mut carried = 0usize;
    let mut first = None;
    let mut nul = false;
    let mut offset = 0u32;
    while offset < len {
        let take = (len - offset).min(PATH_CHUNK as u32) as usize;
        let end = carried + take;
        let fresh = buffer.get_mut(carried..end).ok_or(errno::FAULT)?;
        memory.read(at(ptr, offset as usize)?, fresh)?;
        for &byte in fresh.iter() {
            first.get_or_insert(byte);
            nul |= byte == 0;
            walk.byte(byte);
        }
        offset += take as u32;
        let filled = buffer.get(..end).ok_or(errno::FAULT)?;
        carried = match core::str::from_utf8(filled) {
            Ok(_) => 0,
            Err(error) if error.error_len().is_none() => {
                let valid = error.valid_up_to();
                buffer.copy_within(valid..end, 0);
                end - valid
            }
            Err(_) => return Err(errno::ILSEQ),
        };
    }
    if carried != 0 {
        return Err(errno::ILSEQ);
    }
    if len == 0 {
        return Err(errno::NOENT);
    }
    if first == Some(b'/') || nul {
        return Err(errno::NOTCAPABLE);
    }
    walk.component();
    if let Some(code) = walk.failed {
        return Err(code);
    }
    if walk.beyond > 0 {
        return Err(errno::NAMETOOLONG);
    }
    Ok(walk.below)
}

/// The state of [`walk`]: the components so far.
struct Walk {
    /// Length of the root, without its trailing `/`.
    base: usize,
    below: Vec<String>,
    /// Bytes `below` adds to the root (each component and its `/`).
    length: usize,
    /// Components past [`MAX_PATH_LEN`], counted only.
    beyond: u64,
    /// The component being read (at most one byte over [`MAX_NAME_LEN`]).
    name: Vec<u8>,
    /// The first component's error.
    failed: Option<i32>,
}

impl Walk {
    fn byte(&mut self, byte: u8) {
        if byte == b'/' {
            self.component();
        } else if self.name.len() <= MAX_NAME_LEN {
            self.name.push(byte);
        }
    }

    /// Ends the component being read.
    fn component(&mut self) {
        let name = core::mem::take(&mut self.name);
        if self.failed.is_some() {
            return;
        }
        match name.as_slice() {
            b"" | b"." => {}
            b".." => {
                if self.beyond > 0 {
                    self.beyond -= 1;
                } else if let Some(last) = self.below.pop() {
                    self.length -= last.len() + 1;
                } else {
                    self.failed = Some(errno::NOTCAPABLE);
                }
            }
            long if long.len() > MAX_NAME_LEN => self.failed = Some(errno::NAMETOOLONG),
            _ => {
                let length = self.length + name.len() + 1;
                if self.beyond > 0 || self.base + length > MAX_PATH_LEN {
                    self.beyond += 1;
                } else if let Ok(name) = String::from_utf8(name) {
                    self.below.push(name);
                    self.length = length;
                } else {
                    // The whole path is not UTF-8: `walk` answers EILSEQ.
                    self.failed = Some(errno::ILSEQ);
                }
            }
        }
    }
}

/// An inode number for a path (FAT has none): a hash, never 0.
fn inode(handle: i32, path: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(handle.cast_unsigned());
    for byte in path.bytes() {
        hash = (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

/// The errno of a file service's error.
fn fs_errno(error: &protocol::Error) -> i32 {
    use protocol::Error as E;
    match error {
        E::NotFound => errno::NOENT,
        E::Exists => errno::EXIST,
        E::NotADirectory => errno::NOTDIR,
        E::IsADirectory => errno::ISDIR,
        E::InvalidName => errno::INVAL,
        E::NoSpace => errno::NOSPC,
        E::NotEmpty => errno::NOTEMPTY,
        E::NameTooLong => errno::NAMETOOLONG,
        E::Device | E::NoVolume | E::Other(_) | E::NotStaged => errno::IO,
    }
}

/// A `filestat` record.
fn filestat(entry: &Entry, device: u64, inode: u64) -> [u8; FILESTAT_LEN] {
    let mut record = [0u8; FILESTAT_LEN];
    let filetype = if entry.directory {
        FILETYPE_DIRECTORY
    } else {
        FILETYPE_REGULAR_FILE
    };
    let time = entry.modified.saturating_mul(1_000_000_000);
    let fields: [(usize, u64); 7] = [
        (0, device),
        (8, inode),
        (24, 1),
        (32, entry.size),
        (40, time),
        (48, time),
        (56, time),
    ];
    for (at, value) in fields {
        record[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    record[16] = filetype;
    record
}

/// The `fdstat` record of descriptor `fd`.
pub(crate) fn fdstat(files: &Files, fd: i32) -> Errno<[u8; FDSTAT_LEN]> {
    let descriptor = files.slot(fd)?;
    let mut record = [0u8; FDSTAT_LEN];
    record[0] = match descriptor.kind {
        Kind::Directory => FILETYPE_DIRECTORY,
        Kind::File => FILETYPE_REGULAR_FILE,
        Kind::Socket(_) => FILETYPE_SOCKET_STREAM,
    };
    record[2..4].copy_from_slice(&descriptor.flags.to_le_bytes());
    record[8..16].copy_from_slice(&descriptor.rights.to_le_bytes());
    record[16..24].copy_from_slice(&descriptor.inheriting.to_le_bytes());
    Ok(record)
}

/// Bytes the next `Read` asks for: what the buffers still lack, at most
/// [`MAX_DATA`].
fn read_size(buffers: &[(u32, u32)], done: u64) -> u32 {
    u32::try_from(total(buffers).saturating_sub(done).min(u64::from(MAX_DATA))).unwrap_or(MAX_DATA)
}

/// Where a read or write moves the descriptor to at its end (`None`: a
/// `pread`/`pwrite`, which leaves it alone).
fn finish(
    files: &mut Files,
    memory: &mut impl Memory,
    fd: i32,
    out: u32,
    moved: u64,
    advance: Option<u64>,
) -> Errno<()> {
    let count = u32::try_from(moved).map_err(|_| errno::IO)?;
    store(memory, out, &count.to_le_bytes())?;
    if let Some(position) = advance {
        files.slot_mut(fd)?.position = position.saturating_add(moved);
    }
    Ok(())
}

// ---- The operations, on the table, the program's memory and its services --

/// File descriptor `fd` for a read or write needing `right` (and `FD_SEEK`
/// at an `offset`): `on_directory` for a directory, `ESPIPE` for a socket,
/// each before the rights are checked.
fn file(
    files: &Files,
    fd: i32,
    right: u64,
    offset: Option<u64>,
    on_directory: i32,
) -> Errno<&Descriptor> {
    match files.usable(fd, 0)?.kind {
        Kind::Directory => return Err(on_directory),
        Kind::Socket(_) => return Err(errno::SPIPE),
        Kind::File => {}
    }
    let seek = if offset.is_some() { rights::FD_SEEK } else { 0 };
    files.usable(fd, right | seek)
}

/// `fd_read` or `fd_pread` (`offset`) on a file: `Read`s of at most
/// [`MAX_DATA`] until the buffers are full or the file ends.
fn read<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    (iovs, count): (u32, i32),
    offset: Option<u64>,
    out: u32,
) -> Errno<()> {
    let descriptor = file(files, fd, rights::FD_READ, offset, errno::ISDIR)?;
    memory.check(out, 4)?;
    let buffers = buffers(memory, iovs, count)?;
    let position = offset.unwrap_or(descriptor.position);
    let advance = offset.is_none().then_some(position);
    let (handle, path) = (descriptor.handle, descriptor.path());
    let mut done = 0u64;
    while read_size(&buffers, done) > 0 {
        let asked = read_size(&buffers, done);
        let request = Request::Read {
            path: path.clone(),
            offset: position.saturating_add(done),
            len: asked,
        };
        let data = match exchange.ask(handle, &request)? {
            Response::Data(data) => data,
            // What a read moved before the error is its result (as a
            // POSIX short count); the error comes with the next call.
            Response::Error(_) if done > 0 => break,
            Response::Error(error) => return Err(fs_errno(&error)),
            _ => return Err(errno::IO),
        };
        if data.len() as u64 > u64::from(asked) {
            return Err(errno::IO);
        }
        scatter(memory, &buffers, done, &data)?;
        done += data.len() as u64;
        if data.len() < asked as usize {
            break;
        }
    }
    finish(files, memory, fd, out, done, advance)
}

/// `fd_write` or `fd_pwrite` (`offset`) on a file: at most [`MAX_WRITE`]
/// bytes, in one `Write`, or in `Stage` pieces when more than a message.
fn write<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    (iovs, count): (u32, i32),
    offset: Option<u64>,
    out: u32,
) -> Errno<()> {
    let descriptor = file(files, fd, rights::FD_WRITE, offset, errno::BADF)?;
    memory.check(out, 4)?;
    let data = gather(memory, iovs, count, MAX_WRITE)?;
    if data.is_empty() {
        return store(memory, out, &0u32.to_le_bytes());
    }
    let (handle, path) = (descriptor.handle, descriptor.path());
    let append = offset.is_none() && descriptor.flags & FDFLAG_APPEND != 0;
    let position = match offset {
        Some(offset) => offset,
        None if append => match exchange.ask(handle, &Request::Open { path: path.clone() })? {
            // The size of the file: an append writes from there.
            Response::Entry(entry) => entry.size,
            Response::Error(error) => return Err(fs_errno(&error)),
            _ => return Err(errno::IO),
        },
        None => descriptor.position,
    };
    let advance = offset.is_none().then_some(position);
    // More than a message holds goes in `Stage` pieces, written at once by
    // the last (docs/design.md, "The FAT service and its writes").
    let mut staged = data.len() > MAX_DATA as usize && !cfg!(feature = "plain-writes");
    let mut sent = 0usize;
    while sent < data.len() {
        let request = write_piece(&path, position, &data, sent, staged)?;
        let response = exchange.ask(handle, &request)?;
        let end = data.len().min(sent + MAX_DATA as usize);
        let last = end == data.len();
        if staged
            && match &response {
                Response::Error(protocol::Error::NotStaged) => true,
                Response::Written(count) => last && *count as usize != data.len(),
                _ => false,
            }
        {
            // The file service lost pieces (it restarted, or held another
            // client's): the last piece found nothing before it, or wrote
            // only the run after a loss. Everything again, in plain
            // `Write`s (once: those are not staged).
            staged = false;
            sent = 0;
            continue;
        }
        match response {
            Response::Written(count) => {
                // A staged write's last piece answers for all of them.
                let expected = if staged && last {
                    data.len()
                } else {
                    end - sent
                };
                if count as usize != expected {
                    return Err(errno::IO);
                }
                sent = end;
            }
            // Staged pieces are not on the disk: nothing moved. Plain
            // `Write`s answered so far are the result (a short count).
            Response::Error(_) if !staged && sent > 0 => break,
            Response::Error(error) => return Err(fs_errno(&error)),
            _ => return Err(errno::IO),
        }
    }
    finish(files, memory, fd, out, sent as u64, advance)
}

/// The request that carries the next piece of `data`, from `sent`, to
/// `position + sent` of `path`: a `Write`, or a `Stage` piece (the last one
/// marked) when `staged`.
fn write_piece(
    path: &str,
    position: u64,
    data: &[u8],
    sent: usize,
    staged: bool,
) -> Errno<Request> {
    let end = data.len().min(sent.saturating_add(MAX_DATA as usize));
    let piece = data.get(sent..end).ok_or(errno::IO)?.to_vec();
    let offset = position.saturating_add(sent as u64);
    Ok(if staged {
        Request::Stage {
            path: path.into(),
            offset,
            data: piece,
            last: end == data.len(),
        }
    } else {
        Request::Write {
            path: path.into(),
            offset,
            data: piece,
        }
    })
}

/// `path_open`'s arguments after the directory descriptor.
pub(crate) struct Open {
    pub(crate) path: (u32, u32),
    pub(crate) oflags: i32,
    pub(crate) rights_base: u64,
    pub(crate) rights_inheriting: u64,
    pub(crate) fdflags: i32,
    pub(crate) out: u32,
}

fn open<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    open: &Open,
) -> Errno<()> {
    memory.check(open.path.0, open.path.1 as usize)?;
    memory.check(open.out, 4)?;
    let oflags = open.oflags;
    let create = oflags & O_CREAT != 0;
    let truncate = oflags & O_TRUNC != 0;
    let exclusive = oflags & O_EXCL != 0;
    let want_directory = oflags & O_DIRECTORY != 0;
    if oflags & !(O_CREAT | O_DIRECTORY | O_EXCL | O_TRUNC) != 0
        || (want_directory && (create || truncate))
    {
        return Err(errno::INVAL);
    }
    let mut needed = rights::PATH_OPEN;
    if create {
        needed |= rights::PATH_CREATE_FILE;
    }
    if truncate {
        needed |= rights::PATH_FILESTAT_SET_SIZE;
    }
    let target = files.resolve(memory, fd, open.path, needed)?;
    let fdflags = u16::try_from(open.fdflags).map_err(|_| errno::INVAL)?;
    let mut rights = open.rights_base & target.inheriting;
    if target.read_only {
        if open.rights_base & rights::FD_WRITE != 0 && open.rights_base & rights::FD_READ == 0 {
            // Opened for writing only, where nothing may be written.
            return Err(errno::ACCES);
        }
        rights &= !rights::WRITING;
    }
    let path = target.path();
    let mut descriptor = Descriptor {
        kind: Kind::File,
        handle: target.handle,
        root: target.root,
        below: target.below,
        preopen: None,
        rights,
        inheriting: open.rights_inheriting & target.inheriting,
        flags: fdflags & !FDFLAG_NONBLOCK,
        position: 0,
        read_only: target.read_only,
        broken: false,
    };
    if descriptor.below.is_empty() && !create && !truncate {
        // The preopen itself: a directory, known without asking.
        descriptor.kind = Kind::Directory;
        descriptor.rights &= rights::DIRECTORY;
        let fd = files.insert(descriptor)?;
        return store(memory, open.out, &fd.to_le_bytes());
    }
    let request = if create || truncate || exclusive {
        Request::OpenFile {
            path,
            create,
            exclusive,
            truncate,
        }
    } else {
        Request::Open { path }
    };
    let entry = match exchange.ask(target.handle, &request)? {
        Response::Entry(entry) => entry,
        Response::Error(error) => return Err(fs_errno(&error)),
        _ => return Err(errno::IO),
    };
    if want_directory && !entry.directory {
        return Err(errno::NOTDIR);
    }
    if entry.directory {
        if descriptor.rights & rights::FD_WRITE != 0 && descriptor.rights & rights::FD_READ == 0 {
            return Err(errno::ISDIR);
        }
        descriptor.kind = Kind::Directory;
        descriptor.rights &= rights::DIRECTORY;
    } else {
        descriptor.rights &= rights::FILE;
    }
    let fd = files.insert(descriptor)?;
    store(memory, open.out, &fd.to_le_bytes())
}

/// A request answered `Done` (or an error).
fn done<K: Kernel>(exchange: &mut Exchange<'_, K>, handle: i32, request: &Request) -> Errno<()> {
    match exchange.ask(handle, request)? {
        Response::Done => Ok(()),
        Response::Error(error) => Err(fs_errno(&error)),
        _ => Err(errno::IO),
    }
}

/// `path_create_directory`, `path_remove_directory` or `path_unlink_file`
/// (told apart by the right each needs).
fn path_call<K: Kernel>(
    files: &Files,
    memory: &impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    path: (u32, u32),
    right: u64,
) -> Errno<()> {
    memory.check(path.0, path.1 as usize)?;
    let target = files.resolve(memory, fd, path, right)?;
    let path = target.path();
    let request = match right {
        rights::PATH_CREATE_DIRECTORY if target.is_root() => return Err(errno::EXIST),
        rights::PATH_CREATE_DIRECTORY => Request::CreateDirectory { path },
        rights::PATH_REMOVE_DIRECTORY if target.is_root() => return Err(errno::BUSY),
        rights::PATH_REMOVE_DIRECTORY => Request::RemoveDirectory { path },
        _ if target.is_root() => return Err(errno::ISDIR),
        _ => Request::Remove { path },
    };
    done(exchange, target.handle, &request)
}

fn rename<K: Kernel>(
    files: &Files,
    memory: &impl Memory,
    exchange: &mut Exchange<'_, K>,
    from: (i32, u32, u32),
    to: (i32, u32, u32),
) -> Errno<()> {
    memory.check(from.1, from.2 as usize)?;
    let old = files.resolve(memory, from.0, (from.1, from.2), rights::PATH_RENAME_SOURCE)?;
    memory.check(to.1, to.2 as usize)?;
    let new = files.resolve(memory, to.0, (to.1, to.2), rights::PATH_RENAME_TARGET)?;
    if old.handle != new.handle {
        return Err(errno::XDEV);
    }
    if old.is_root() || new.is_root() {
        return Err(errno::BUSY);
    }
    let request = Request::Rename {
        from: old.path(),
        to: new.path(),
    };
    done(exchange, old.handle, &request)
}

/// A `filestat` record of `path` on `handle`, at `out`.
fn stat<K: Kernel>(
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    handle: i32,
    path: String,
    out: u32,
) -> Errno<()> {
    let inode = inode(handle, &path);
    let entry = match exchange.ask(handle, &Request::Open { path })? {
        Response::Entry(entry) => entry,
        Response::Error(error) => return Err(fs_errno(&error)),
        _ => return Err(errno::IO),
    };
    let device = u64::from(handle.cast_unsigned());
    store(memory, out, &filestat(&entry, device, inode))
}

fn readdir<K: Kernel>(
    files: &Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    (buffer, len): (u32, u32),
    cookie: u64,
    out: u32,
) -> Errno<()> {
    let descriptor = files.usable(fd, 0)?;
    if descriptor.kind != Kind::Directory {
        return Err(errno::NOTDIR);
    }
    let descriptor = files.usable(fd, rights::FD_READDIR)?;
    memory.check(buffer, len as usize)?;
    memory.check(out, 4)?;
    let mut start = u32::try_from(cookie).map_err(|_| errno::INVAL)?;
    let (handle, path) = (descriptor.handle, descriptor.path());
    let parent = path.trim_end_matches('/');
    let mut next = cookie;
    let mut used = 0u32;
    loop {
        let request = Request::List {
            path: path.clone(),
            start,
        };
        let (entries, more) = match exchange.ask(handle, &request)? {
            Response::Entries { entries, more } => (entries, more),
            Response::Error(error) => return Err(fs_errno(&error)),
            _ => return Err(errno::IO),
        };
        let first = next;
        for (index, entry) in entries.iter().enumerate() {
            next = first + index as u64 + 1;
            if entry.name == "." || entry.name == ".." || used >= len {
                continue;
            }
            let mut dirent = Vec::with_capacity(DIRENT_LEN + entry.name.len());
            dirent.extend_from_slice(&next.to_le_bytes());
            let child = alloc::format!("{parent}/{}", entry.name);
            dirent.extend_from_slice(&inode(handle, &child).to_le_bytes());
            let name_len = u32::try_from(entry.name.len()).map_err(|_| errno::IO)?;
            dirent.extend_from_slice(&name_len.to_le_bytes());
            dirent.push(if entry.directory {
                FILETYPE_DIRECTORY
            } else {
                FILETYPE_REGULAR_FILE
            });
            dirent.extend_from_slice(&[0, 0, 0]);
            dirent.extend_from_slice(entry.name.as_bytes());
            // The last entry may be cut: the program asks again from its
            // cookie with a larger buffer.
            let room = (len - used) as usize;
            let part = dirent.get(..room.min(dirent.len())).unwrap_or(&[]);
            store(memory, buffer.saturating_add(used), part)?;
            used += part.len() as u32;
        }
        if used < len && more && !entries.is_empty() {
            start = u32::try_from(next).map_err(|_| errno::IO)?;
            continue;
        }
        return store(memory, out, &used.to_le_bytes());
    }
}

fn seek<K: Kernel>(
    files: &mut Files,
    memory: &mut impl Memory,
    exchange: &mut Exchange<'_, K>,
    fd: i32,
    offset: i64,
    whence: i32,
    out: u32,
) -> Errno<()> {
    let descriptor = files.usable(fd, 0)?;
    if descriptor.kind == Kind::Directory {
        return Err(errno::BADF);
    }
    if matches!(descriptor.kind, Kind::Socket(_)) {
        return Err(errno::SPIPE);
    }
    let right = if offset == 0 && whence == WHENCE_CURRENT {
        rights::FD_TELL
    } else {
        rights::FD_SEEK
    };
    let descriptor = files.usable(fd, right)?;
    memory.check(out, 8)?;
    let base = match whence {
        WHENCE_SET => 0,
        WHENCE_CURRENT => i64::try_from(descriptor.position).map_err(|_| errno::OVERFLOW)?,
        WHENCE_END => {
            let path = descriptor.path();
            let entry = match exchange.ask(descriptor.handle, &Request::Open { path })? {
                Response::Entry(entry) => entry,
                Response::Error(error) => return Err(fs_errno(&error)),
                _ => return Err(errno::IO),
            };
            i64::try_from(entry.size).map_err(|_| errno::OVERFLOW)?
        }
        _ => return Err(errno::INVAL),
    };
    let position = base.checked_add(offset).ok_or(errno::INVAL)?;
    let position = u64::try_from(position).map_err(|_| errno::INVAL)?;
    store(memory, out, &position.to_le_bytes())?;
    files.slot_mut(fd)?.position = position;
    Ok(())
}

// ---- The preview1 functions on descriptors 3 and up --------------------------

/// Whether `fd` is stdio (the functions below answer it as the kernel's
/// stubs did before files existed).
fn stdio(fd: i32) -> bool {
    (0..FIRST).contains(&fd)
}

impl<K: Kernel, M: Memory> Shim<K, M> {
    /// `fd_read` on descriptor 3 and up.
    pub(crate) fn file_read(&mut self, fd: i32, iovs: i32, count: i32, out: i32) -> i32 {
        let (iovs, out) = (iovs.cast_unsigned(), out.cast_unsigned());
        if sockets::is_socket(&self.files, fd) {
            // A socket is never broken: its restarted service listens again.
            return self.operation(None, |files, memory, exchange| {
                sockets::recv(files, memory, exchange, fd, (iovs, count), out)
            });
        }
        self.operation(Some(fd), |files, memory, exchange| {
            read(files, memory, exchange, fd, (iovs, count), None, out)
        })
    }

    /// `fd_write` on descriptor 3 and up.
    pub(crate) fn file_write(&mut self, fd: i32, iovs: i32, count: i32, out: i32) -> i32 {
        let (iovs, out) = (iovs.cast_unsigned(), out.cast_unsigned());
        if sockets::is_socket(&self.files, fd) {
            return self.operation(None, |files, memory, exchange| {
                sockets::send(files, memory, exchange, fd, (iovs, count), out)
            });
        }
        self.operation(Some(fd), |files, memory, exchange| {
            write(files, memory, exchange, fd, (iovs, count), None, out)
        })
    }

    /// `fd_fdstat_get` on descriptor 3 and up.
    pub(crate) fn file_fdstat_get(&mut self, fd: i32, out: i32) -> i32 {
        code(
            fdstat(&self.files, fd)
                .and_then(|record| store(&mut self.memory, out.cast_unsigned(), &record)),
        )
    }

    /// `fd_prestat_get`: the preopens' name lengths; `EBADF` for anything
    /// else (which ends a libc's scan).
    pub fn fd_prestat_get(&mut self, fd: i32, out: i32) -> i32 {
        let record = (|| {
            let name = self.files.slot(fd)?.preopen.as_ref().ok_or(errno::BADF)?;
            let len = u32::try_from(name.len()).map_err(|_| errno::NAMETOOLONG)?;
            let mut record = [0u8; 8];
            record[4..8].copy_from_slice(&len.to_le_bytes());
            Ok(record)
        })();
        code(record.and_then(|record| store(&mut self.memory, out.cast_unsigned(), &record)))
    }

    /// `fd_prestat_dir_name`: a preopen's name, without a NUL.
    pub fn fd_prestat_dir_name(&mut self, fd: i32, path: i32, len: i32) -> i32 {
        let name = self
            .files
            .slot(fd)
            .and_then(|descriptor| descriptor.preopen.as_ref().ok_or(errno::BADF));
        code(name.and_then(|name| {
            if name.len() > len.cast_unsigned() as usize {
                return Err(errno::NAMETOOLONG);
            }
            store(&mut self.memory, path.cast_unsigned(), name.as_bytes())
        }))
    }

    pub fn fd_close(&mut self, fd: i32) -> i32 {
        if stdio(fd) {
            return errno::SUCCESS;
        }
        self.operation(None, |files, _, exchange| {
            sockets::close(files, exchange, fd)
        })
    }

    /// `fd_sync`: answered writes are on the disk already; `Sync` asks the
    /// file service to have the disk's write cache put on stable media.
    pub fn fd_sync(&mut self, fd: i32) -> i32 {
        self.sync(fd, rights::FD_SYNC)
    }

    pub fn fd_datasync(&mut self, fd: i32) -> i32 {
        self.sync(fd, rights::FD_DATASYNC)
    }

    fn sync(&mut self, fd: i32, right: u64) -> i32 {
        if stdio(fd) {
            return errno::INVAL;
        }
        self.operation(Some(fd), |files, _, exchange| {
            let handle = files.usable(fd, right)?.handle;
            done(exchange, handle, &Request::Sync)
        })
    }

    pub fn fd_fdstat_set_flags(&mut self, fd: i32, flags: i32) -> i32 {
        if stdio(fd) {
            return errno::NOSYS;
        }
        code((|| {
            let flags = u16::try_from(flags).map_err(|_| errno::INVAL)?;
            let descriptor = self.files.usable(fd, rights::FD_FDSTAT_SET_FLAGS)?;
            // Only sockets can wait; files never do.
            let kept = if matches!(descriptor.kind, Kind::Socket(_)) {
                flags
            } else {
                flags & !FDFLAG_NONBLOCK
            };
            self.files.slot_mut(fd)?.flags = kept;
            Ok(())
        })())
    }

    pub fn fd_filestat_get(&mut self, fd: i32, out: i32) -> i32 {
        if stdio(fd) {
            return errno::NOSYS;
        }
        self.operation(Some(fd), |files, memory, exchange| {
            let descriptor = files.usable(fd, rights::FD_FILESTAT_GET)?;
            memory.check(out.cast_unsigned(), FILESTAT_LEN)?;
            let (handle, path) = (descriptor.handle, descriptor.path());
            stat(memory, exchange, handle, path, out.cast_unsigned())
        })
    }

    pub fn fd_filestat_set_size(&mut self, fd: i32, size: i64) -> i32 {
        if stdio(fd) {
            return errno::NOSYS;
        }
        self.operation(Some(fd), |files, _, exchange| {
            let descriptor = files.usable(fd, rights::FD_FILESTAT_SET_SIZE)?;
            let size = u64::try_from(size).map_err(|_| errno::INVAL)?;
            let request = Request::SetSize {
                path: descriptor.path(),
                size,
            };
            done(exchange, descriptor.handle, &request)
        })
    }

    pub fn fd_pread(&mut self, fd: i32, iovs: i32, count: i32, offset: i64, out: i32) -> i32 {
        if stdio(fd) {
            return errno::SPIPE;
        }
        let (iovs, out) = (iovs.cast_unsigned(), out.cast_unsigned());
        self.operation(Some(fd), |files, memory, exchange| {
            let offset = u64::try_from(offset).map_err(|_| errno::INVAL)?;
            read(
                files,
                memory,
                exchange,
                fd,
                (iovs, count),
                Some(offset),
                out,
            )
        })
    }

    pub fn fd_pwrite(&mut self, fd: i32, iovs: i32, count: i32, offset: i64, out: i32) -> i32 {
        if stdio(fd) {
            return errno::SPIPE;
        }
        let (iovs, out) = (iovs.cast_unsigned(), out.cast_unsigned());
        self.operation(Some(fd), |files, memory, exchange| {
            let offset = u64::try_from(offset).map_err(|_| errno::INVAL)?;
            write(
                files,
                memory,
                exchange,
                fd,
                (iovs, count),
                Some(offset),
                out,
            )
        })
    }

    pub fn fd_readdir(&mut self, fd: i32, buffer: i32, len: i32, cookie: i64, out: i32) -> i32 {
        if stdio(fd) {
            return errno::NOTDIR;
        }
        let buffer = (buffer.cast_unsigned(), len.cast_unsigned());
        self.operation(Some(fd), |files, memory, exchange| {
            let (cookie, out) = (cookie.cast_unsigned(), out.cast_unsigned());
            readdir(files, memory, exchange, fd, buffer, cookie, out)
        })
    }

    pub fn fd_renumber(&mut self, from: i32, to: i32) -> i32 {
        if stdio(from) || stdio(to) {
            return errno::NOTSUP;
        }
        self.operation(None, |files, _, exchange| {
            sockets::renumber(files, exchange, from, to)
        })
    }

    pub fn fd_seek(&mut self, fd: i32, offset: i64, whence: i32, out: i32) -> i32 {
        if stdio(fd) {
            return errno::SPIPE;
        }
        self.operation(Some(fd), |files, memory, exchange| {
            seek(
                files,
                memory,
                exchange,
                fd,
                offset,
                whence,
                out.cast_unsigned(),
            )
        })
    }

    pub fn fd_tell(&mut self, fd: i32, out: i32) -> i32 {
        if stdio(fd) {
            return errno::SPIPE;
        }
        code((|| {
            if sockets::is_socket(&self.files, fd) {
                return Err(errno::SPIPE);
            }
            let position = self.files.usable(fd, rights::FD_TELL)?.position;
            store(
                &mut self.memory,
                out.cast_unsigned(),
                &position.to_le_bytes(),
            )
        })())
    }

    fn path_call(&mut self, fd: i32, path: i32, len: i32, right: u64) -> i32 {
        let path = (path.cast_unsigned(), len.cast_unsigned());
        self.operation(None, |files, memory, exchange| {
            path_call(files, memory, exchange, fd, path, right)
        })
    }

    pub fn path_create_directory(&mut self, fd: i32, path: i32, len: i32) -> i32 {
        self.path_call(fd, path, len, rights::PATH_CREATE_DIRECTORY)
    }

    pub fn path_remove_directory(&mut self, fd: i32, path: i32, len: i32) -> i32 {
        self.path_call(fd, path, len, rights::PATH_REMOVE_DIRECTORY)
    }

    pub fn path_unlink_file(&mut self, fd: i32, path: i32, len: i32) -> i32 {
        self.path_call(fd, path, len, rights::PATH_UNLINK_FILE)
    }

    pub fn path_filestat_get(
        &mut self,
        fd: i32,
        _flags: i32,
        path: i32,
        len: i32,
        out: i32,
    ) -> i32 {
        let (path, out) = (
            (path.cast_unsigned(), len.cast_unsigned()),
            out.cast_unsigned(),
        );
        self.operation(None, |files, memory, exchange| {
            memory.check(path.0, path.1 as usize)?;
            let target = files.resolve(memory, fd, path, rights::PATH_FILESTAT_GET)?;
            memory.check(out, FILESTAT_LEN)?;
            stat(memory, exchange, target.handle, target.path(), out)
        })
    }

    pub fn path_rename(
        &mut self,
        fd: i32,
        old: i32,
        old_len: i32,
        new_fd: i32,
        new: i32,
        new_len: i32,
    ) -> i32 {
        let from = (fd, old.cast_unsigned(), old_len.cast_unsigned());
        let to = (new_fd, new.cast_unsigned(), new_len.cast_unsigned());
        self.operation(None, |files, memory, exchange| {
            rename(files, memory, exchange, from, to)
        })
    }

    #[allow(clippy::too_many_arguments, reason = "path_open's own parameters")]
    pub fn path_open(
        &mut self,
        fd: i32,
        _dirflags: i32,
        path: i32,
        len: i32,
        oflags: i32,
        rights_base: i64,
        rights_inheriting: i64,
        fdflags: i32,
        out: i32,
    ) -> i32 {
        let arguments = Open {
            path: (path.cast_unsigned(), len.cast_unsigned()),
            oflags,
            rights_base: rights_base.cast_unsigned(),
            rights_inheriting: rights_inheriting.cast_unsigned(),
            fdflags,
            out: out.cast_unsigned(),
        };
        self.operation(None, |files, memory, exchange| {
            open(files, memory, exchange, fd, &arguments)
        })
    }
}
