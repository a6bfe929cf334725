//! WASI preview1 files: a program's descriptor table and the translation of
//! its file calls into requests of the file protocol (`atoll_abi::fs`), sent
//! by the kernel on the program's behalf to the file services of its
//! preopened directories.
//!
//! What is here: [`Files`], the descriptors from 3 up (the preopens from
//! `system.toml` first, in their order, then what `path_open` adds), each
//! with its file service's handle, its path on that service, its rights,
//! flags and position; path resolution (`..` never leaves the preopen: it is
//! `ENOTCAPABLE`); every preview1 file function as a host function. A call
//! that needs the file service suspends the program in a kernel-made `call`
//! whose reply goes through [`answer`] (the way stdin's `fd_read` goes
//! through the console): an operation larger than one request (a 64 KiB
//! `fd_read` is 22 `Read`s of 3 KiB; a directory listing longer than one
//! page) goes on with [`Step::Again`] without the program running in
//! between. The logic works on the descriptor table and the program's
//! memory only ([`Files`], plain bytes), so it is tested on the host with a
//! fake file service (the tests at the end).
//!
//! What is not here: the file system (the FAT service), stdio (`wasi.rs`),
//! links, symlinks and times set by the program (`path_link`,
//! `path_symlink`, `path_readlink`, `*_set_times` stay stubs). A request
//! that gets no answer (its file service ended under it) leaves its
//! descriptor answering `EIO` from then on; it never waits for ever.

use super::sockets::{self, Listener, Socket};
use super::{Errno, MAX_VECTORS, bytes, iovec, store};
use crate::host::{HostResult, HostState, Syscall, charge, suspend};
use crate::ipc::Answer;
use alloc::string::String;
use alloc::vec::Vec;
use atoll_abi::fs::{self as protocol, Entry, MAX_DATA, MAX_NAME_LEN, Request, Response};
use atoll_abi::wasi::errno;
use wasmi::{Caller, Linker};

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

/// Rights (preview1 `rights` bits).
pub(super) mod rights {
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
const O_CREAT: i32 = 1 << 0;
const O_DIRECTORY: i32 = 1 << 1;
const O_EXCL: i32 = 1 << 2;
const O_TRUNC: i32 = 1 << 3;
/// `fdflags`.
const FDFLAG_APPEND: u16 = 1 << 0;
pub(super) const FDFLAG_NONBLOCK: u16 = 1 << 2;
/// `filetype`.
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
/// `whence`.
const WHENCE_SET: i32 = 0;
const WHENCE_CURRENT: i32 = 1;
const WHENCE_END: i32 = 2;
/// Sizes of the records written to the program.
const FILESTAT_LEN: usize = 64;
const FDSTAT_LEN: usize = 24;
/// `filetype::socket_stream`.
const FILETYPE_SOCKET_STREAM: u8 = 6;
const DIRENT_LEN: usize = 24;

/// A preopened directory of a service, resolved at boot: its file service's
/// handle among the service's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Preopen {
    /// The name the program sees.
    pub(crate) guest: String,
    /// Handle of the file service's endpoint.
    pub(crate) handle: i32,
    /// The directory on the file service.
    pub(crate) directory: String,
    pub(crate) read_only: bool,
}

/// A program's open files and directories, and the file operation it is
/// suspended in, if any.
#[derive(Debug, Default)]
pub(crate) struct Files {
    /// Descriptor `FIRST + i` is entry `i`.
    descriptors: Vec<Option<Descriptor>>,
    pub(super) in_flight: Option<InFlight>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Directory,
    File,
    /// A TCP socket (`sockets.rs`): `handle` is its TCP/IP service's.
    Socket(Socket),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Descriptor {
    pub(super) kind: Kind,
    /// The file service's handle.
    pub(super) handle: i32,
    /// The preopen's directory on the file service: nothing above it is
    /// reachable.
    root: String,
    /// Components below `root`.
    below: Vec<String>,
    /// The name a preopen is shown by (`fd_prestat_dir_name`).
    preopen: Option<String>,
    pub(super) rights: u64,
    inheriting: u64,
    pub(super) flags: u16,
    position: u64,
    read_only: bool,
    /// A request of this descriptor got no answer: its file service ended.
    broken: bool,
}

impl Descriptor {
    /// A socket descriptor on the TCP/IP service at `handle`.
    pub(super) fn socket(handle: i32, socket: Socket, rights: u64) -> Descriptor {
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

/// The operation a program is suspended in, with where its results go.
#[derive(Debug)]
pub(super) struct InFlight {
    /// The descriptor it works on (made broken if no answer comes).
    pub(super) fd: Option<i32>,
    pub(super) handle: i32,
    pub(super) operation: Operation,
}

#[derive(Debug)]
pub(super) enum Operation {
    /// A socket operation (`sockets.rs`), answered in the `net` protocol.
    Socket(sockets::Operation),
    /// `path_open`: the descriptor to add once the entry is known, and where
    /// its number goes.
    Open {
        descriptor: Descriptor,
        want_directory: bool,
        out: u32,
    },
    /// A `filestat` record for the entry, at `out`.
    Stat { out: u32, inode: u64, device: u64 },
    /// A request answered `Done`.
    Done,
    /// `fd_read`/`fd_pread`: filling `buffers` from `position`.
    Read {
        fd: i32,
        path: String,
        buffers: Vec<(u32, u32)>,
        position: u64,
        done: u64,
        advance: bool,
        out: u32,
    },
    /// `fd_write`/`fd_pwrite`: `data` from `position` (unknown until the
    /// file's size is asked, for an append).
    Write {
        fd: i32,
        path: String,
        data: Vec<u8>,
        sent: usize,
        position: Option<u64>,
        advance: bool,
        out: u32,
        /// Sent as `Stage` pieces (more than one message's worth): nothing
        /// is on the disk until the last piece is answered.
        staged: bool,
    },
    /// `fd_readdir`: dirents into `buffer` from the entry at `next`.
    Readdir {
        path: String,
        parent: String,
        buffer: u32,
        len: u32,
        used: u32,
        next: u64,
        out: u32,
    },
    /// `fd_seek` from the end: the size is being asked.
    SeekEnd { fd: i32, offset: i64, out: u32 },
}

/// What comes after a file service's reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The program resumes with this errno.
    Done(i32),
    /// The operation goes on: another request to the same service.
    Again { handle: i32, message: Vec<u8> },
}

/// What a host function does next.
#[derive(Debug)]
pub(super) enum Plan {
    /// Answer at once with this errno.
    Now(i32),
    /// Ask the file service.
    Ask(Request, InFlight),
    /// Ask the TCP/IP service.
    Net(atoll_abi::net::Request, InFlight),
}

impl Files {
    /// The table a service starts with: its preopens, then its listening
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
        Files {
            descriptors,
            in_flight: None,
        }
    }

    pub(super) fn slot(&self, fd: i32) -> Errno<&Descriptor> {
        let index = fd
            .checked_sub(FIRST)
            .and_then(|index| usize::try_from(index).ok())
            .ok_or(errno::BADF)?;
        self.descriptors
            .get(index)
            .and_then(Option::as_ref)
            .ok_or(errno::BADF)
    }

    pub(super) fn slot_mut(&mut self, fd: i32) -> Errno<&mut Descriptor> {
        let index = fd
            .checked_sub(FIRST)
            .and_then(|index| usize::try_from(index).ok())
            .ok_or(errno::BADF)?;
        self.descriptors
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or(errno::BADF)
    }

    /// Descriptor `fd`, usable (not broken) and holding `right`.
    pub(super) fn usable(&self, fd: i32, right: u64) -> Errno<&Descriptor> {
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

    /// Settles an operation whose reply never came (its file service ended
    /// with the request taken): that descriptor answers `EIO` from now on.
    pub(super) fn settle(&mut self) {
        if let Some(lost) = self.in_flight.take()
            && let Some(fd) = lost.fd
            && let Ok(descriptor) = self.slot_mut(fd)
        {
            descriptor.broken = true;
        }
    }

    /// Forgets the operation whose request could not be sent: unlike one
    /// whose answer never came, it leaves its descriptor usable.
    pub(crate) fn refused(&mut self) {
        self.in_flight = None;
    }

    /// Whether [`Files::insert`] would find a slot.
    pub(super) fn has_room(&self) -> bool {
        self.descriptors.len() < MAX_DESCRIPTORS || self.descriptors.iter().any(Option::is_none)
    }

    /// Adds a descriptor in the lowest free slot; its number.
    pub(super) fn insert(&mut self, descriptor: Descriptor) -> Errno<i32> {
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

    /// Resolves `path` (the program's bytes) against directory `fd`, which
    /// must hold `right`.
    fn resolve(&self, fd: i32, path: &[u8], right: u64) -> Errno<Target> {
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
        let path = core::str::from_utf8(path).map_err(|_| errno::ILSEQ)?;
        if path.is_empty() {
            return Err(errno::NOENT);
        }
        if path.starts_with('/') || path.contains('\0') {
            return Err(errno::NOTCAPABLE);
        }
        let mut below = directory.below.clone();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    below.pop().ok_or(errno::NOTCAPABLE)?;
                }
                name if name.len() > MAX_NAME_LEN => return Err(errno::NAMETOOLONG),
                name => below.push(String::from(name)),
            }
        }
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

/// An inode number for a path (FAT has none): a hash, never 0.
fn inode(handle: i32, path: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(handle.cast_unsigned());
    for byte in path.bytes() {
        hash = (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

/// The errno of a file service's error.
fn errno_of(error: &protocol::Error) -> i32 {
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
        if let Some(field) = record.get_mut(at..at + 8) {
            field.copy_from_slice(&value.to_le_bytes());
        }
    }
    if let Some(kind) = record.get_mut(16) {
        *kind = filetype;
    }
    record
}

/// Takes a file service's reply to the program's operation: finishes it
/// (results into `memory`, the errno to resume with) or asks again.
pub(crate) fn answer(state: &mut HostState, memory: &mut [u8], reply: &[u8]) -> Step {
    let (step, copied) = continue_operation(&mut state.files, memory, reply);
    // The kernel's copying is charged like the program's own.
    state.fuel_debt = state
        .fuel_debt
        .saturating_add(copied as u64 / crate::host::BYTES_PER_FUEL);
    step
}

/// [`answer`] on the table alone; also the bytes copied.
pub(super) fn continue_operation(
    files: &mut Files,
    memory: &mut [u8],
    reply: &[u8],
) -> (Step, usize) {
    let Some(in_flight) = files.in_flight.take() else {
        return (Step::Done(errno::IO), 0);
    };
    if let Operation::Socket(operation) = in_flight.operation {
        return sockets::advance(files, memory, in_flight.handle, operation, reply);
    }
    let Ok(response) = postcard::from_bytes::<Response>(reply) else {
        mark_broken(files, in_flight.fd);
        return (Step::Done(errno::IO), 0);
    };
    let copied = match &response {
        Response::Data(data) => data.len(),
        _ => 0,
    };
    let handle = in_flight.handle;
    let fd = in_flight.fd;
    match advance(files, memory, in_flight, response) {
        Ok(None) => (Step::Done(errno::SUCCESS), copied),
        Ok(Some((request, next))) => match postcard::to_allocvec(&request) {
            Ok(message) => {
                files.in_flight = Some(next);
                (Step::Again { handle, message }, copied)
            }
            Err(_) => (Step::Done(errno::IO), copied),
        },
        Err(code) => {
            if code == errno::IO {
                mark_broken(files, fd);
            }
            (Step::Done(code), copied)
        }
    }
}

fn mark_broken(files: &mut Files, fd: Option<i32>) {
    if let Some(fd) = fd
        && let Ok(descriptor) = files.slot_mut(fd)
    {
        descriptor.broken = true;
    }
}

/// One step of an operation: `None` when it is finished, else the next
/// request and the operation waiting for its answer.
fn advance(
    files: &mut Files,
    memory: &mut [u8],
    in_flight: InFlight,
    response: Response,
) -> Errno<Option<(Request, InFlight)>> {
    let InFlight {
        fd: in_flight_fd,
        handle,
        operation,
    } = in_flight;
    let again = |request: Request, operation: Operation| {
        Ok(Some((
            request,
            InFlight {
                fd: in_flight_fd,
                handle,
                operation,
            },
        )))
    };
    // The file service lost a staged write's pieces (it restarted, or held
    // another client's): send the data again in plain `Write`s. Lost before
    // the last piece, the pieces after the loss started a run of their own,
    // which the last piece wrote and answered with less than the whole
    // length: sent again too (once: the plain `Write`s are not staged).
    if let Operation::Write {
        fd,
        path,
        data,
        sent,
        position: Some(position),
        advance,
        out,
        staged: true,
    } = &operation
        && match &response {
            Response::Error(protocol::Error::NotStaged) => true,
            Response::Written(count) => {
                let last = data.len().saturating_sub(*sent) <= MAX_DATA as usize;
                last && *count as usize != data.len()
            }
            _ => false,
        }
    {
        let request = write_piece(path, *position, data, 0, false)?;
        let operation = Operation::Write {
            fd: *fd,
            path: path.clone(),
            data: data.clone(),
            sent: 0,
            position: Some(*position),
            advance: *advance,
            out: *out,
            staged: false,
        };
        return again(request, operation);
    }
    if let Response::Error(error) = &response {
        // What a read or write moved before the error is its result (as a
        // POSIX short count); the error comes with the next call.
        let (moved, out, fd, position) = match &operation {
            Operation::Read {
                done,
                out,
                fd,
                position,
                advance,
                ..
            } if *done > 0 => (*done, *out, *fd, advance.then_some(*position)),
            // Staged pieces are not on the disk: nothing moved.
            Operation::Write {
                sent,
                out,
                fd,
                position: Some(position),
                advance,
                staged: false,
                ..
            } if *sent > 0 => (*sent as u64, *out, *fd, advance.then_some(*position)),
            _ => return Err(errno_of(error)),
        };
        let count = u32::try_from(moved).map_err(|_| errno::IO)?;
        store(memory, out, &count.to_le_bytes())?;
        if let Some(position) = position {
            files.slot_mut(fd)?.position = position.saturating_add(moved);
        }
        return Ok(None);
    }
    match operation {
        Operation::Open {
            descriptor,
            want_directory,
            out,
        } => {
            let Response::Entry(entry) = response else {
                return Err(errno::IO);
            };
            if want_directory && !entry.directory {
                return Err(errno::NOTDIR);
            }
            let mut descriptor = descriptor;
            if entry.directory {
                if descriptor.rights & rights::FD_WRITE != 0
                    && descriptor.rights & rights::FD_READ == 0
                {
                    return Err(errno::ISDIR);
                }
                descriptor.kind = Kind::Directory;
                descriptor.rights &= rights::DIRECTORY;
            } else {
                descriptor.rights &= rights::FILE;
            }
            // Check the output before the descriptor exists.
            bytes(memory, out, 4)?;
            let fd = files.insert(descriptor)?;
            store(memory, out, &fd.to_le_bytes())?;
            Ok(None)
        }
        Operation::Stat { out, inode, device } => {
            let Response::Entry(entry) = response else {
                return Err(errno::IO);
            };
            store(memory, out, &filestat(&entry, device, inode))?;
            Ok(None)
        }
        Operation::Socket(_) => Err(errno::IO),
        Operation::Done => match response {
            Response::Done => Ok(None),
            _ => Err(errno::IO),
        },
        Operation::Read {
            fd,
            path,
            buffers,
            position,
            done,
            advance,
            out,
        } => {
            let Response::Data(data) = response else {
                return Err(errno::IO);
            };
            let asked = read_size(&buffers, done);
            if data.len() as u64 > u64::from(asked) {
                return Err(errno::IO);
            }
            scatter(memory, &buffers, done, &data)?;
            let done = done + data.len() as u64;
            let finished = data.len() < asked as usize || read_size(&buffers, done) == 0;
            if !finished {
                let request = Request::Read {
                    path: path.clone(),
                    offset: position.saturating_add(done),
                    len: read_size(&buffers, done),
                };
                return again(
                    request,
                    Operation::Read {
                        fd,
                        path,
                        buffers,
                        position,
                        done,
                        advance,
                        out,
                    },
                );
            }
            let count = u32::try_from(done).map_err(|_| errno::IO)?;
            store(memory, out, &count.to_le_bytes())?;
            if advance {
                files.slot_mut(fd)?.position = position.saturating_add(done);
            }
            Ok(None)
        }
        Operation::Write {
            fd,
            path,
            data,
            sent,
            position,
            advance,
            out,
            staged,
        } => {
            let (position, sent) = match (position, response) {
                // The size of the file asked for an append: write from there.
                (None, Response::Entry(entry)) => (entry.size, 0),
                (Some(position), Response::Written(count)) => {
                    let sent_now = data.len().saturating_sub(sent).min(MAX_DATA as usize);
                    // A staged write's last piece answers for all of them.
                    let expected = if staged && sent + sent_now == data.len() {
                        data.len()
                    } else {
                        sent_now
                    };
                    if count as usize != expected {
                        return Err(errno::IO);
                    }
                    (position, sent + sent_now)
                }
                _ => return Err(errno::IO),
            };
            if sent < data.len() {
                let request = write_piece(&path, position, &data, sent, staged)?;
                return again(
                    request,
                    Operation::Write {
                        fd,
                        path,
                        data,
                        sent,
                        position: Some(position),
                        advance,
                        out,
                        staged,
                    },
                );
            }
            let count = u32::try_from(sent).map_err(|_| errno::IO)?;
            store(memory, out, &count.to_le_bytes())?;
            if advance {
                files.slot_mut(fd)?.position = position.saturating_add(sent as u64);
            }
            Ok(None)
        }
        Operation::Readdir {
            path,
            parent,
            buffer,
            len,
            mut used,
            mut next,
            out,
        } => {
            let Response::Entries { entries, more } = response else {
                return Err(errno::IO);
            };
            let start = next;
            for (index, entry) in entries.iter().enumerate() {
                next = start + index as u64 + 1;
                if entry.name == "." || entry.name == ".." || used >= len {
                    continue;
                }
                let mut dirent = Vec::with_capacity(DIRENT_LEN + entry.name.len());
                dirent.extend_from_slice(&next.to_le_bytes());
                let child = alloc::format!("{}/{}", parent.trim_end_matches('/'), entry.name);
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
                // The last entry may be cut: the program asks again from
                // its cookie with a larger buffer.
                let room = (len - used) as usize;
                let part = dirent.get(..room.min(dirent.len())).unwrap_or(&[]);
                store(memory, buffer.saturating_add(used), part)?;
                used += part.len() as u32;
            }
            if used < len && more && !entries.is_empty() {
                let start = u32::try_from(next).map_err(|_| errno::IO)?;
                return again(
                    Request::List {
                        path: path.clone(),
                        start,
                    },
                    Operation::Readdir {
                        path,
                        parent,
                        buffer,
                        len,
                        used,
                        next,
                        out,
                    },
                );
            }
            store(memory, out, &used.to_le_bytes())?;
            Ok(None)
        }
        Operation::SeekEnd { fd, offset, out } => {
            let Response::Entry(entry) = response else {
                return Err(errno::IO);
            };
            let size = i64::try_from(entry.size).map_err(|_| errno::OVERFLOW)?;
            let position = size.checked_add(offset).ok_or(errno::INVAL)?;
            let position = u64::try_from(position).map_err(|_| errno::INVAL)?;
            store(memory, out, &position.to_le_bytes())?;
            files.slot_mut(fd)?.position = position;
            Ok(None)
        }
    }
}

/// Bytes the next `Read` asks for: what the buffers still lack, at most
/// [`MAX_DATA`].
fn read_size(buffers: &[(u32, u32)], done: u64) -> u32 {
    let total: u64 = buffers.iter().map(|(_, len)| u64::from(*len)).sum();
    u32::try_from(total.saturating_sub(done).min(u64::from(MAX_DATA))).unwrap_or(MAX_DATA)
}

/// Puts `data` into the buffers, from byte `done` of them on.
pub(super) fn scatter(
    memory: &mut [u8],
    buffers: &[(u32, u32)],
    done: u64,
    data: &[u8],
) -> Errno<()> {
    let mut skip = done;
    let mut rest = data;
    for &(base, len) in buffers {
        if rest.is_empty() {
            break;
        }
        let len = u64::from(len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let room = (len - skip) as usize;
        let (now, later) = rest.split_at(room.min(rest.len()));
        let at = base
            .checked_add(u32::try_from(skip).map_err(|_| errno::FAULT)?)
            .ok_or(errno::FAULT)?;
        store(memory, at, now)?;
        rest = later;
        skip = 0;
    }
    Ok(())
}

/// The `iovec`s of a call, checked to lie in memory.
pub(super) fn buffers(memory: &[u8], iovs: i32, count: i32) -> Errno<Vec<(u32, u32)>> {
    let count = usize::try_from(count.cast_unsigned()).map_err(|_| errno::INVAL)?;
    if count > MAX_VECTORS {
        return Err(errno::INVAL);
    }
    let mut buffers = Vec::with_capacity(count);
    for index in 0..count {
        let (base, len) = iovec(memory, iovs, index)?;
        let len_usize = usize::try_from(len).map_err(|_| errno::FAULT)?;
        bytes(memory, base, len_usize)?;
        buffers.push((base, len));
    }
    Ok(buffers)
}

/// The bytes of the buffers of iovec array `iovs`, in order, at most `max`
/// of them (a write takes what fits; the rest is a short count).
pub(super) fn gather(memory: &[u8], iovs: i32, count: i32, max: usize) -> Errno<Vec<u8>> {
    let mut data = Vec::new();
    for (base, len) in buffers(memory, iovs, count)? {
        let room = max - data.len();
        let len = usize::try_from(len).map_err(|_| errno::FAULT)?;
        data.extend_from_slice(bytes(memory, base, len.min(room))?);
        if data.len() == max {
            break;
        }
    }
    Ok(data)
}

// ---- The operations, on the table and the program's memory --------------

fn plan_read(
    files: &mut Files,
    memory: &mut [u8],
    fd: i32,
    iovs: i32,
    count: i32,
    offset: Option<u64>,
    out: u32,
) -> Errno<Plan> {
    let mut right = rights::FD_READ;
    if offset.is_some() {
        right |= rights::FD_SEEK;
    }
    let descriptor = files.usable(fd, 0)?;
    if descriptor.kind == Kind::Directory {
        return Err(errno::ISDIR);
    }
    if matches!(descriptor.kind, Kind::Socket(_)) {
        return Err(errno::SPIPE);
    }
    let descriptor = files.usable(fd, right)?;
    bytes(memory, out, 4)?;
    let buffers = buffers(memory, iovs, count)?;
    let position = offset.unwrap_or(descriptor.position);
    let len = read_size(&buffers, 0);
    if len == 0 {
        store(memory, out, &0u32.to_le_bytes())?;
        return Ok(Plan::Now(errno::SUCCESS));
    }
    let path = descriptor.path();
    let request = Request::Read {
        path: path.clone(),
        offset: position,
        len,
    };
    Ok(Plan::Ask(
        request,
        InFlight {
            fd: Some(fd),
            handle: descriptor.handle,
            operation: Operation::Read {
                fd,
                path,
                buffers,
                position,
                done: 0,
                advance: offset.is_none(),
                out,
            },
        },
    ))
}

fn plan_write(
    files: &mut Files,
    memory: &mut [u8],
    fd: i32,
    iovs: i32,
    count: i32,
    offset: Option<u64>,
    out: u32,
) -> Errno<Plan> {
    let mut right = rights::FD_WRITE;
    if offset.is_some() {
        right |= rights::FD_SEEK;
    }
    let descriptor = files.usable(fd, 0)?;
    if descriptor.kind == Kind::Directory {
        return Err(errno::BADF);
    }
    if matches!(descriptor.kind, Kind::Socket(_)) {
        return Err(errno::SPIPE);
    }
    let descriptor = files.usable(fd, right)?;
    bytes(memory, out, 4)?;
    let data = gather(memory, iovs, count, MAX_WRITE)?;
    if data.is_empty() {
        store(memory, out, &0u32.to_le_bytes())?;
        return Ok(Plan::Now(errno::SUCCESS));
    }
    let path = descriptor.path();
    let append = offset.is_none() && descriptor.flags & FDFLAG_APPEND != 0;
    let position = if append {
        None
    } else {
        Some(offset.unwrap_or(descriptor.position))
    };
    // More than a message holds goes in `Stage` pieces, written at once
    // by the last (docs/design.md, "WASI files").
    let staged = data.len() > MAX_DATA as usize && !cfg!(feature = "plain-writes");
    let request = match position {
        None => Request::Open { path: path.clone() },
        Some(position) => write_piece(&path, position, &data, 0, staged)?,
    };
    Ok(Plan::Ask(
        request,
        InFlight {
            fd: Some(fd),
            handle: descriptor.handle,
            operation: Operation::Write {
                fd,
                path,
                data,
                sent: 0,
                position,
                advance: offset.is_none(),
                out,
                staged,
            },
        },
    ))
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

#[allow(clippy::too_many_arguments, reason = "path_open's own parameters")]
fn plan_open(
    files: &mut Files,
    memory: &mut [u8],
    fd: i32,
    path: (u32, u32),
    oflags: i32,
    rights_base: u64,
    rights_inheriting: u64,
    fdflags: i32,
    out: u32,
) -> Errno<Plan> {
    let name = bytes(memory, path.0, path.1 as usize)?.to_vec();
    bytes(memory, out, 4)?;
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
    let target = files.resolve(fd, &name, needed)?;
    let fdflags = u16::try_from(fdflags).map_err(|_| errno::INVAL)?;
    let mut rights = rights_base & target.inheriting;
    if target.read_only {
        if rights_base & rights::FD_WRITE != 0 && rights_base & rights::FD_READ == 0 {
            // Opened for writing only, where nothing may be written.
            return Err(errno::ACCES);
        }
        rights &= !rights::WRITING;
    }
    let descriptor = Descriptor {
        kind: Kind::File,
        handle: target.handle,
        root: target.root.clone(),
        below: target.below.clone(),
        preopen: None,
        rights,
        inheriting: rights_inheriting & target.inheriting,
        flags: fdflags & !FDFLAG_NONBLOCK,
        position: 0,
        read_only: target.read_only,
        broken: false,
    };
    if target.is_root() && !create && !truncate {
        // The preopen itself: a directory, known without asking.
        let mut descriptor = descriptor;
        descriptor.kind = Kind::Directory;
        descriptor.rights &= rights::DIRECTORY;
        let fd = files.insert(descriptor)?;
        store(memory, out, &fd.to_le_bytes())?;
        return Ok(Plan::Now(errno::SUCCESS));
    }
    let request = if create || truncate || exclusive {
        Request::OpenFile {
            path: target.path(),
            create,
            exclusive,
            truncate,
        }
    } else {
        Request::Open {
            path: target.path(),
        }
    };
    Ok(Plan::Ask(
        request,
        InFlight {
            fd: None,
            handle: target.handle,
            operation: Operation::Open {
                descriptor,
                want_directory,
                out,
            },
        },
    ))
}

/// A request about a path that is answered `Done`.
fn plan_path(
    files: &Files,
    memory: &[u8],
    fd: i32,
    path: (u32, u32),
    right: u64,
    request: impl FnOnce(&Target) -> Errno<Request>,
) -> Errno<Plan> {
    let name = bytes(memory, path.0, path.1 as usize)?;
    let target = files.resolve(fd, name, right)?;
    let request = request(&target)?;
    Ok(Plan::Ask(
        request,
        InFlight {
            fd: None,
            handle: target.handle,
            operation: Operation::Done,
        },
    ))
}

/// The request of `path_create_directory`, `path_remove_directory` or
/// `path_unlink_file` (told apart by their right) on `target`.
fn path_request(right: u64, target: &Target) -> Errno<Request> {
    let path = target.path();
    match right {
        rights::PATH_CREATE_DIRECTORY if target.is_root() => Err(errno::EXIST),
        rights::PATH_CREATE_DIRECTORY => Ok(Request::CreateDirectory { path }),
        rights::PATH_REMOVE_DIRECTORY if target.is_root() => Err(errno::BUSY),
        rights::PATH_REMOVE_DIRECTORY => Ok(Request::RemoveDirectory { path }),
        _ if target.is_root() => Err(errno::ISDIR),
        _ => Ok(Request::Remove { path }),
    }
}

fn plan_rename(
    files: &Files,
    memory: &[u8],
    from: (i32, u32, u32),
    to: (i32, u32, u32),
) -> Errno<Plan> {
    let old = files.resolve(
        from.0,
        bytes(memory, from.1, from.2 as usize)?,
        rights::PATH_RENAME_SOURCE,
    )?;
    let new = files.resolve(
        to.0,
        bytes(memory, to.1, to.2 as usize)?,
        rights::PATH_RENAME_TARGET,
    )?;
    if old.handle != new.handle {
        return Err(errno::XDEV);
    }
    if old.is_root() || new.is_root() {
        return Err(errno::BUSY);
    }
    Ok(Plan::Ask(
        Request::Rename {
            from: old.path(),
            to: new.path(),
        },
        InFlight {
            fd: None,
            handle: old.handle,
            operation: Operation::Done,
        },
    ))
}

fn plan_path_stat(
    files: &Files,
    memory: &[u8],
    fd: i32,
    path: (u32, u32),
    out: u32,
) -> Errno<Plan> {
    let name = bytes(memory, path.0, path.1 as usize)?;
    let target = files.resolve(fd, name, rights::PATH_FILESTAT_GET)?;
    bytes(memory, out, FILESTAT_LEN)?;
    let path = target.path();
    Ok(Plan::Ask(
        Request::Open { path: path.clone() },
        InFlight {
            fd: None,
            handle: target.handle,
            operation: Operation::Stat {
                out,
                inode: inode(target.handle, &path),
                device: u64::from(target.handle.cast_unsigned()),
            },
        },
    ))
}

/// `fd_sync`/`fd_datasync` (`right` is the one each needs): a `Sync` to the
/// descriptor's file service.
fn plan_sync(files: &Files, fd: i32, right: u64) -> Errno<Plan> {
    let descriptor = files.usable(fd, right)?;
    Ok(Plan::Ask(
        Request::Sync,
        InFlight {
            fd: Some(fd),
            handle: descriptor.handle,
            operation: Operation::Done,
        },
    ))
}

fn plan_fd_stat(files: &Files, memory: &[u8], fd: i32, out: u32) -> Errno<Plan> {
    let descriptor = files.usable(fd, rights::FD_FILESTAT_GET)?;
    bytes(memory, out, FILESTAT_LEN)?;
    let path = descriptor.path();
    Ok(Plan::Ask(
        Request::Open { path: path.clone() },
        InFlight {
            fd: Some(fd),
            handle: descriptor.handle,
            operation: Operation::Stat {
                out,
                inode: inode(descriptor.handle, &path),
                device: u64::from(descriptor.handle.cast_unsigned()),
            },
        },
    ))
}

fn plan_readdir(
    files: &Files,
    memory: &[u8],
    fd: i32,
    buffer: u32,
    len: u32,
    cookie: u64,
    out: u32,
) -> Errno<Plan> {
    let descriptor = files.usable(fd, 0)?;
    if descriptor.kind != Kind::Directory {
        return Err(errno::NOTDIR);
    }
    let descriptor = files.usable(fd, rights::FD_READDIR)?;
    bytes(memory, buffer, len as usize)?;
    bytes(memory, out, 4)?;
    let start = u32::try_from(cookie).map_err(|_| errno::INVAL)?;
    let path = descriptor.path();
    Ok(Plan::Ask(
        Request::List {
            path: path.clone(),
            start,
        },
        InFlight {
            fd: Some(fd),
            handle: descriptor.handle,
            operation: Operation::Readdir {
                parent: path.clone(),
                path,
                buffer,
                len,
                used: 0,
                next: cookie,
                out,
            },
        },
    ))
}

fn plan_seek(
    files: &mut Files,
    memory: &mut [u8],
    fd: i32,
    offset: i64,
    whence: i32,
    out: u32,
) -> Errno<Plan> {
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
    bytes(memory, out, 8)?;
    let base = match whence {
        WHENCE_SET => 0,
        WHENCE_CURRENT => i64::try_from(descriptor.position).map_err(|_| errno::OVERFLOW)?,
        WHENCE_END => {
            let path = descriptor.path();
            return Ok(Plan::Ask(
                Request::Open { path },
                InFlight {
                    fd: Some(fd),
                    handle: descriptor.handle,
                    operation: Operation::SeekEnd { fd, offset, out },
                },
            ));
        }
        _ => return Err(errno::INVAL),
    };
    let position = base.checked_add(offset).ok_or(errno::INVAL)?;
    let position = u64::try_from(position).map_err(|_| errno::INVAL)?;
    store(memory, out, &position.to_le_bytes())?;
    files.slot_mut(fd)?.position = position;
    Ok(Plan::Now(errno::SUCCESS))
}

fn fdstat(files: &Files, fd: i32) -> Errno<[u8; FDSTAT_LEN]> {
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

pub(super) fn renumber(files: &mut Files, from: i32, to: i32) -> Errno<()> {
    files.slot(from)?;
    files.slot(to)?;
    if from == to {
        return Ok(());
    }
    let take = |files: &mut Files, fd: i32| {
        fd.checked_sub(FIRST)
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|index| files.descriptors.get_mut(index))
            .and_then(Option::take)
    };
    let moved = take(files, from).ok_or(errno::BADF)?;
    let index = to
        .checked_sub(FIRST)
        .and_then(|index| usize::try_from(index).ok())
        .ok_or(errno::BADF)?;
    let slot = files.descriptors.get_mut(index).ok_or(errno::BADF)?;
    *slot = Some(moved);
    Ok(())
}

pub(super) fn close(files: &mut Files, fd: i32) -> Errno<()> {
    files.slot(fd)?;
    let index = fd
        .checked_sub(FIRST)
        .and_then(|index| usize::try_from(index).ok())
        .ok_or(errno::BADF)?;
    if let Some(slot) = files.descriptors.get_mut(index) {
        *slot = None;
    }
    Ok(())
}

// ---- Host functions: thin adapters from wasmi to the operations above -----

/// The program's memory and host state together.
pub(super) fn split<'a>(
    caller: &'a mut Caller<'_, HostState>,
) -> Errno<(&'a mut [u8], &'a mut HostState)> {
    let memory = crate::host::guest_memory(caller).ok_or(errno::FAULT)?;
    Ok(memory.data_and_store_mut(caller))
}

/// Runs `plan` on the program's table and memory, then answers at once or
/// suspends the program in a call to the file service.
pub(super) fn run(
    mut caller: Caller<'_, HostState>,
    plan: impl FnOnce(&mut Files, &mut [u8]) -> Errno<Plan>,
) -> HostResult {
    let planned = split(&mut caller).and_then(|(memory, state)| {
        state.files.settle();
        plan(&mut state.files, memory)
    });
    let (message, written, in_flight) = match planned {
        Err(code) | Ok(Plan::Now(code)) => return Ok(code),
        Ok(Plan::Ask(request, in_flight)) => {
            let written = match &request {
                Request::Write { data, .. } | Request::Stage { data, .. } => data.len(),
                _ => 0,
            };
            (postcard::to_allocvec(&request), written, in_flight)
        }
        Ok(Plan::Net(request, in_flight)) => {
            let written = match &request {
                atoll_abi::net::Request::Write { data, .. } => data.len(),
                _ => 0,
            };
            (postcard::to_allocvec(&request), written, in_flight)
        }
    };
    let Ok(message) = message else {
        return Ok(errno::IO);
    };
    charge(&mut caller, written as u64 / crate::host::BYTES_PER_FUEL);
    let handle = in_flight.handle;
    caller.data_mut().files.in_flight = Some(in_flight);
    suspend(
        caller,
        Syscall::Call {
            handle,
            message,
            answer: Answer::File,
        },
    )
}

/// Runs an operation that never asks the file service.
fn now(
    mut caller: Caller<'_, HostState>,
    operation: impl FnOnce(&mut Files, &mut [u8]) -> Errno<()>,
) -> i32 {
    let result = split(&mut caller).and_then(|(memory, state)| {
        state.files.settle();
        operation(&mut state.files, memory)
    });
    result.err().unwrap_or(errno::SUCCESS)
}

/// `fd_read` on descriptor 3 and up.
pub(crate) fn fd_read(
    caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    count: i32,
    out: i32,
) -> HostResult {
    run(caller, |files, memory| {
        if sockets::is_socket(files, fd) {
            return sockets::plan_recv(files, memory, fd, iovs, count, out.cast_unsigned());
        }
        plan_read(files, memory, fd, iovs, count, None, out.cast_unsigned())
    })
}

/// `fd_write` on descriptor 3 and up.
pub(crate) fn fd_write(
    caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    count: i32,
    out: i32,
) -> HostResult {
    run(caller, |files, memory| {
        if sockets::is_socket(files, fd) {
            return sockets::plan_send(files, memory, fd, iovs, count, out.cast_unsigned());
        }
        plan_write(files, memory, fd, iovs, count, None, out.cast_unsigned())
    })
}

/// `fd_fdstat_get` on descriptor 3 and up.
pub(crate) fn fd_fdstat_get(caller: Caller<'_, HostState>, fd: i32, out: i32) -> i32 {
    now(caller, |files, memory| {
        let record = fdstat(files, fd)?;
        store(memory, out.cast_unsigned(), &record)
    })
}

/// `fd_prestat_get`: the preopens' name lengths; `EBADF` for anything else
/// (which ends a libc's scan).
pub(crate) fn fd_prestat_get(caller: Caller<'_, HostState>, fd: i32, out: i32) -> i32 {
    now(caller, |files, memory| {
        let name = files.slot(fd)?.preopen.as_ref().ok_or(errno::BADF)?;
        let len = u32::try_from(name.len()).map_err(|_| errno::NAMETOOLONG)?;
        let mut record = [0u8; 8];
        record[4..8].copy_from_slice(&len.to_le_bytes());
        store(memory, out.cast_unsigned(), &record)
    })
}

/// `fd_prestat_dir_name`: a preopen's name, without a NUL.
pub(crate) fn fd_prestat_dir_name(
    caller: Caller<'_, HostState>,
    fd: i32,
    path: i32,
    len: i32,
) -> i32 {
    now(caller, |files, memory| {
        let name = files.slot(fd)?.preopen.clone().ok_or(errno::BADF)?;
        if name.len() > len.cast_unsigned() as usize {
            return Err(errno::NAMETOOLONG);
        }
        store(memory, path.cast_unsigned(), name.as_bytes())
    })
}

/// Whether `fd` is stdio (the functions below answer it as the stubs did).
fn stdio(fd: i32) -> bool {
    (0..FIRST).contains(&fd)
}

/// Defines the file functions in `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    let module = atoll_abi::wasi::IMPORT_MODULE;
    linker.func_wrap(
        module,
        "fd_close",
        |caller: Caller<'_, HostState>, fd: i32| {
            if stdio(fd) {
                return Ok(errno::SUCCESS);
            }
            run(caller, |files, _| sockets::plan_close(files, fd))
        },
    )?;
    for (name, right) in [
        ("fd_sync", rights::FD_SYNC),
        ("fd_datasync", rights::FD_DATASYNC),
    ] {
        // Answered writes are on the disk already; `Sync` asks the file
        // service to have the disk's write cache put on stable media.
        linker.func_wrap(
            module,
            name,
            move |caller: Caller<'_, HostState>, fd: i32| {
                if stdio(fd) {
                    return Ok(errno::INVAL);
                }
                run(caller, |files, _| plan_sync(files, fd, right))
            },
        )?;
    }
    linker.func_wrap(
        module,
        "fd_fdstat_set_flags",
        |caller: Caller<'_, HostState>, fd: i32, flags: i32| {
            if stdio(fd) {
                return errno::NOSYS;
            }
            now(caller, |files, _| {
                let flags = u16::try_from(flags).map_err(|_| errno::INVAL)?;
                let descriptor = files.usable(fd, rights::FD_FDSTAT_SET_FLAGS)?;
                // Only sockets can wait; files never do.
                let kept = if matches!(descriptor.kind, Kind::Socket(_)) {
                    flags
                } else {
                    flags & !FDFLAG_NONBLOCK
                };
                files.slot_mut(fd)?.flags = kept;
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        module,
        "fd_filestat_get",
        |caller: Caller<'_, HostState>, fd: i32, out: i32| {
            if stdio(fd) {
                return Ok(errno::NOSYS);
            }
            run(caller, |files, memory| {
                plan_fd_stat(files, memory, fd, out.cast_unsigned())
            })
        },
    )?;
    linker.func_wrap(
        module,
        "fd_filestat_set_size",
        |caller: Caller<'_, HostState>, fd: i32, size: i64| {
            if stdio(fd) {
                return Ok(errno::NOSYS);
            }
            run(caller, |files, _| {
                let descriptor = files.usable(fd, rights::FD_FILESTAT_SET_SIZE)?;
                let size = u64::try_from(size).map_err(|_| errno::INVAL)?;
                Ok(Plan::Ask(
                    Request::SetSize {
                        path: descriptor.path(),
                        size,
                    },
                    InFlight {
                        fd: Some(fd),
                        handle: descriptor.handle,
                        operation: Operation::Done,
                    },
                ))
            })
        },
    )?;
    linker.func_wrap(
        module,
        "fd_pread",
        |caller: Caller<'_, HostState>, fd: i32, iovs: i32, count: i32, offset: i64, out: i32| {
            if stdio(fd) {
                return Ok(errno::SPIPE);
            }
            run(caller, |files, memory| {
                let offset = u64::try_from(offset).map_err(|_| errno::INVAL)?;
                plan_read(
                    files,
                    memory,
                    fd,
                    iovs,
                    count,
                    Some(offset),
                    out.cast_unsigned(),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "fd_pwrite",
        |caller: Caller<'_, HostState>, fd: i32, iovs: i32, count: i32, offset: i64, out: i32| {
            if stdio(fd) {
                return Ok(errno::SPIPE);
            }
            run(caller, |files, memory| {
                let offset = u64::try_from(offset).map_err(|_| errno::INVAL)?;
                plan_write(
                    files,
                    memory,
                    fd,
                    iovs,
                    count,
                    Some(offset),
                    out.cast_unsigned(),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "fd_readdir",
        |caller: Caller<'_, HostState>, fd: i32, buffer: i32, len: i32, cookie: i64, out: i32| {
            if stdio(fd) {
                return Ok(errno::NOTDIR);
            }
            run(caller, |files, memory| {
                plan_readdir(
                    files,
                    memory,
                    fd,
                    buffer.cast_unsigned(),
                    len.cast_unsigned(),
                    cookie.cast_unsigned(),
                    out.cast_unsigned(),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "fd_renumber",
        |caller: Caller<'_, HostState>, from: i32, to: i32| {
            if stdio(from) || stdio(to) {
                return Ok(errno::NOTSUP);
            }
            run(caller, |files, _| sockets::plan_renumber(files, from, to))
        },
    )?;
    linker.func_wrap(
        module,
        "fd_seek",
        |caller: Caller<'_, HostState>, fd: i32, offset: i64, whence: i32, out: i32| {
            if stdio(fd) {
                return Ok(errno::SPIPE);
            }
            run(caller, |files, memory| {
                plan_seek(files, memory, fd, offset, whence, out.cast_unsigned())
            })
        },
    )?;
    linker.func_wrap(
        module,
        "fd_tell",
        |caller: Caller<'_, HostState>, fd: i32, out: i32| {
            if stdio(fd) {
                return errno::SPIPE;
            }
            now(caller, |files, memory| {
                if sockets::is_socket(files, fd) {
                    return Err(errno::SPIPE);
                }
                let position = files.usable(fd, rights::FD_TELL)?.position;
                store(memory, out.cast_unsigned(), &position.to_le_bytes())
            })
        },
    )?;
    linker.func_wrap(
        module,
        "path_create_directory",
        |caller: Caller<'_, HostState>, fd: i32, path: i32, len: i32| {
            run(caller, |files, memory| {
                plan_path(
                    files,
                    memory,
                    fd,
                    (path.cast_unsigned(), len.cast_unsigned()),
                    rights::PATH_CREATE_DIRECTORY,
                    |target| path_request(rights::PATH_CREATE_DIRECTORY, target),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "path_remove_directory",
        |caller: Caller<'_, HostState>, fd: i32, path: i32, len: i32| {
            run(caller, |files, memory| {
                plan_path(
                    files,
                    memory,
                    fd,
                    (path.cast_unsigned(), len.cast_unsigned()),
                    rights::PATH_REMOVE_DIRECTORY,
                    |target| path_request(rights::PATH_REMOVE_DIRECTORY, target),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "path_unlink_file",
        |caller: Caller<'_, HostState>, fd: i32, path: i32, len: i32| {
            run(caller, |files, memory| {
                plan_path(
                    files,
                    memory,
                    fd,
                    (path.cast_unsigned(), len.cast_unsigned()),
                    rights::PATH_UNLINK_FILE,
                    |target| path_request(rights::PATH_UNLINK_FILE, target),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "path_filestat_get",
        |caller: Caller<'_, HostState>, fd: i32, _flags: i32, path: i32, len: i32, out: i32| {
            run(caller, |files, memory| {
                plan_path_stat(
                    files,
                    memory,
                    fd,
                    (path.cast_unsigned(), len.cast_unsigned()),
                    out.cast_unsigned(),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "path_rename",
        |caller: Caller<'_, HostState>,
         fd: i32,
         old: i32,
         old_len: i32,
         new_fd: i32,
         new: i32,
         new_len: i32| {
            run(caller, |files, memory| {
                plan_rename(
                    files,
                    memory,
                    (fd, old.cast_unsigned(), old_len.cast_unsigned()),
                    (new_fd, new.cast_unsigned(), new_len.cast_unsigned()),
                )
            })
        },
    )?;
    linker.func_wrap(
        module,
        "path_open",
        |caller: Caller<'_, HostState>,
         fd: i32,
         _dirflags: i32,
         path: i32,
         len: i32,
         oflags: i32,
         rights_base: i64,
         rights_inheriting: i64,
         fdflags: i32,
         out: i32| {
            run(caller, |files, memory| {
                plan_open(
                    files,
                    memory,
                    fd,
                    (path.cast_unsigned(), len.cast_unsigned()),
                    oflags,
                    rights_base.cast_unsigned(),
                    rights_inheriting.cast_unsigned(),
                    fdflags,
                    out.cast_unsigned(),
                )
            })
        },
    )?;
    sockets::define(linker)
}

#[cfg(test)]
mod tests;
