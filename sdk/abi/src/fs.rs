//! The file protocol: what a file service (the FAT service) serves, and what
//! the WASI shim sends on a WASI program's behalf for its preopened
//! directories. One definition for the file services and their clients.
//!
//! Requests name files by path and carry offsets: the server keeps no
//! per-client state but a client's staged write data ([`Request::Stage`]),
//! which the client can always send again, so a restart of the file system
//! or of the disk driver loses nothing a client holds (the request in flight
//! gets an error).
//! Variants are only ever added at the end (postcard numbers them).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

pub const ENDPOINT: &str = "fs";

/// The most bytes one `Read` returns or one `Write` carries.
pub const MAX_DATA: u32 = 3072;
/// The most bytes one write made of [`Request::Stage`]s covers.
pub const MAX_STAGED: u32 = 64 * 1024;
/// The most entries one `List` answer holds.
pub const MAX_ENTRIES: u32 = 32;
/// The longest name of one path component, in bytes (a FAT long name holds
/// 255 UTF-16 units).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The entry at `path` (`/` separated, from the volume's root): checks it
    /// exists and gives its size, like `stat`. `/` is the root directory.
    Open { path: String },
    /// Up to MAX_ENTRIES entries of directory `path`, from entry `start`.
    List { path: String, start: u32 },
    /// Up to `len` (at most MAX_DATA) bytes of file `path` from `offset`;
    /// fewer at the end of the file.
    Read { path: String, offset: u64, len: u32 },
    /// Writes `data` at `offset` of file `path`, creating it if missing and
    /// extending it as needed.
    Write {
        path: String,
        offset: u64,
        // As bytes: the same wire format as a sequence of u8, decoded with
        // one copy instead of one call per byte (in an interpreted service).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Creates an empty file (`Exists` if there is one).
    Create { path: String },
    /// Removes a file (`IsADirectory` for a directory).
    Remove { path: String },
    /// `open` as POSIX does it, in one request: creates the file if missing
    /// and `create` (`Exists` if it is there and `exclusive`), empties it if
    /// `truncate`; `IsADirectory` if `path` is a directory and `create` or
    /// `truncate` is set. Answers the entry.
    OpenFile {
        path: String,
        create: bool,
        exclusive: bool,
        truncate: bool,
    },
    /// Creates a directory (`Exists` if the name is taken).
    CreateDirectory { path: String },
    /// Removes an empty directory (`NotEmpty`, `NotADirectory`).
    RemoveDirectory { path: String },
    /// Moves `from` to `to`, within or across directories. A file at `to`
    /// is replaced (as POSIX `rename` does); an empty directory at `to` is
    /// replaced by a directory.
    Rename { from: String, to: String },
    /// Cuts file `path` to `size` bytes or extends it with zeros.
    SetSize { path: String, size: u64 },
    /// Makes every change answered so far durable: the file service asks
    /// its disk to put its write cache on stable media (`fsync`). Every
    /// answered request is already on the disk (a restart of the file
    /// service or of the driver loses nothing); requests other than `Write`
    /// are made durable before they are answered, `Write`s by this.
    Sync,
    /// One piece (at most MAX_DATA bytes) of a write larger than a message:
    /// `data` for `offset` of file `path`. Pieces follow each other from one
    /// client, each starting where the last ended, up to MAX_STAGED bytes in
    /// all. A piece that is not `last` is only held by the file service
    /// (answered `Written` with its length; nothing is on the disk). The
    /// `last` piece writes all of them as one `Write` would, and is answered
    /// `Written` with the whole length. Any other request from the client,
    /// or a piece that does not follow, drops what was held; a `last` piece
    /// that finds nothing held before it (the file service restarted, or
    /// held another client's pieces) writes nothing and is answered
    /// `Error(NotStaged)`: the client sends the data again in `Write`s.
    /// Pieces lost before the last leave the later ones a run of their own:
    /// the last piece writes it and is answered with less than the whole
    /// length, and the client sends the data again in `Write`s too.
    Stage {
        path: String,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        last: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Entry(Entry),
    Entries { entries: Vec<Entry>, more: bool },
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    Written(u32),
    Done,
    Error(Error),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub directory: bool,
    /// Last modification, in seconds since 1970-01-01 UTC (0: unknown).
    pub modified: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Error {
    NotFound,
    Exists,
    NotADirectory,
    IsADirectory,
    /// A name the volume cannot hold.
    InvalidName,
    /// The volume is full.
    NoSpace,
    /// The disk driver failed or went away during this request.
    Device,
    /// No FAT volume could be mounted.
    NoVolume,
    /// Anything else, described.
    Other(String),
    /// A directory to remove (or to be replaced by a rename) holds entries.
    NotEmpty,
    /// A path component longer than [`MAX_NAME_LEN`].
    NameTooLong,
    /// The last [`Request::Stage`] piece found the pieces before it gone.
    NotStaged,
}
