//! Host tests of WASI files against a fake file service: the descriptor
//! table, path resolution, the requests each call makes and the errno each
//! failure gives, driven through the same `plan`/`answer` steps the kernel
//! uses (the fake answers where the kernel would queue the request).

use super::*;
use alloc::collections::BTreeMap;
use alloc::vec;
use atoll_abi::fs::{Error as FsError, MAX_ENTRIES};

/// An in-memory file service speaking the file protocol.
#[derive(Default)]
struct Fake {
    /// Path (from the root, `/a/b`) to contents; `None` is a directory.
    nodes: BTreeMap<String, Option<Vec<u8>>>,
    requests: usize,
    /// `Sync` requests seen.
    syncs: usize,
    /// The staged pieces held: path, offset, bytes.
    staged: Option<(String, u64, Vec<u8>)>,
    /// `Stage` requests seen.
    stages: usize,
    /// Drops what is staged before each last piece (as a restart would).
    forget_stages: bool,
    /// Drops what is staged before this `Stage` request (counted from 1),
    /// as a restart between pieces would.
    forget_before: Option<usize>,
}

impl Fake {
    fn new() -> Fake {
        let mut fake = Fake::default();
        fake.nodes.insert("/".into(), None);
        fake
    }

    fn file(mut self, path: &str, data: &[u8]) -> Fake {
        self.nodes.insert(path.into(), Some(data.to_vec()));
        self
    }

    fn directory(mut self, path: &str) -> Fake {
        self.nodes.insert(path.into(), None);
        self
    }

    fn parent(path: &str) -> String {
        match path.rfind('/') {
            Some(0) | None => "/".into(),
            Some(at) => path[..at].into(),
        }
    }

    fn entry(&self, path: &str) -> Result<Entry, FsError> {
        let Some(node) = self.nodes.get(path) else {
            if path != "/" {
                self.parent_is_directory(path)?;
            }
            return Err(FsError::NotFound);
        };
        Ok(Entry {
            name: path.rsplit('/').next().unwrap_or("").into(),
            size: node.as_ref().map_or(0, |data| data.len() as u64),
            directory: node.is_none(),
            modified: 1_700_000_000,
        })
    }

    fn children(&self, path: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|key| key.as_str() != "/" && Self::parent(key) == path)
            .cloned()
            .collect()
    }

    fn write_at(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), FsError> {
        if !self.nodes.contains_key(path) {
            self.parent_is_directory(path)?;
            self.nodes.insert(path.into(), Some(Vec::new()));
        }
        let file = self
            .nodes
            .get_mut(path)
            .and_then(Option::as_mut)
            .ok_or(FsError::IsADirectory)?;
        let end = offset as usize + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn parent_is_directory(&self, path: &str) -> Result<(), FsError> {
        match self.nodes.get(&Self::parent(path)) {
            Some(None) => Ok(()),
            Some(Some(_)) => Err(FsError::NotADirectory),
            None => Err(FsError::NotFound),
        }
    }

    fn serve(&mut self, request: Request) -> Response {
        self.requests += 1;
        if !matches!(request, Request::Stage { .. }) {
            self.staged = None;
        }
        match self.answer(request) {
            Ok(response) => response,
            Err(error) => Response::Error(error),
        }
    }

    fn answer(&mut self, request: Request) -> Result<Response, FsError> {
        Ok(match request {
            Request::Open { path } => Response::Entry(self.entry(&path)?),
            Request::OpenFile {
                path,
                create,
                exclusive,
                truncate,
            } => {
                match self.nodes.get_mut(&path) {
                    Some(_) if create && exclusive => return Err(FsError::Exists),
                    Some(None) if create || truncate => return Err(FsError::IsADirectory),
                    Some(Some(data)) if truncate => data.clear(),
                    Some(_) => {}
                    None if create => {
                        self.parent_is_directory(&path)?;
                        self.nodes.insert(path.clone(), Some(Vec::new()));
                    }
                    None => return Err(FsError::NotFound),
                }
                Response::Entry(self.entry(&path)?)
            }
            Request::List { path, start } => {
                if self.entry(&path)?.directory {
                    let children = self.children(&path);
                    let entries: Vec<Entry> = children
                        .iter()
                        .skip(start as usize)
                        .take(MAX_ENTRIES as usize)
                        .map(|child| self.entry(child))
                        .collect::<Result<_, _>>()?;
                    let more = start as usize + entries.len() < children.len();
                    Response::Entries { entries, more }
                } else {
                    return Err(FsError::NotADirectory);
                }
            }
            Request::Read { path, offset, len } => {
                let data = self
                    .nodes
                    .get(&path)
                    .ok_or(FsError::NotFound)?
                    .as_ref()
                    .ok_or(FsError::IsADirectory)?;
                assert!(len <= MAX_DATA);
                let start = (offset as usize).min(data.len());
                let end = (start + len as usize).min(data.len());
                Response::Data(data[start..end].to_vec())
            }
            Request::Write { path, offset, data } => {
                assert!(data.len() <= MAX_DATA as usize);
                self.write_at(&path, offset, &data)?;
                Response::Written(data.len() as u32)
            }
            Request::Stage {
                path,
                offset,
                data,
                last,
            } => {
                assert!(data.len() <= MAX_DATA as usize);
                self.stages += 1;
                if last && self.forget_stages || self.forget_before == Some(self.stages) {
                    self.staged = None;
                }
                let follows = self.staged.as_ref().is_some_and(|(held, start, bytes)| {
                    *held == path && start + bytes.len() as u64 == offset
                });
                let (start, mut bytes) = match self.staged.take() {
                    Some((_, start, bytes)) if follows => (start, bytes),
                    _ if last => return Err(FsError::NotStaged),
                    _ => (offset, Vec::new()),
                };
                bytes.extend_from_slice(&data);
                if last {
                    self.write_at(&path, start, &bytes)?;
                    Response::Written(bytes.len() as u32)
                } else {
                    self.staged = Some((path, start, bytes));
                    Response::Written(data.len() as u32)
                }
            }
            Request::Create { path } => {
                if self.nodes.contains_key(&path) {
                    return Err(FsError::Exists);
                }
                self.nodes.insert(path, Some(Vec::new()));
                Response::Done
            }
            Request::Remove { path } => match self.nodes.get(&path) {
                None => return Err(FsError::NotFound),
                Some(None) => return Err(FsError::IsADirectory),
                Some(Some(_)) => {
                    self.nodes.remove(&path);
                    Response::Done
                }
            },
            Request::CreateDirectory { path } => {
                if self.nodes.contains_key(&path) {
                    return Err(FsError::Exists);
                }
                self.parent_is_directory(&path)?;
                self.nodes.insert(path, None);
                Response::Done
            }
            Request::RemoveDirectory { path } => match self.nodes.get(&path) {
                None => return Err(FsError::NotFound),
                Some(Some(_)) => return Err(FsError::NotADirectory),
                Some(None) if !self.children(&path).is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                Some(None) => {
                    self.nodes.remove(&path);
                    Response::Done
                }
            },
            Request::Rename { from, to } => {
                let node = self.nodes.remove(&from).ok_or(FsError::NotFound)?;
                self.nodes.insert(to, node);
                Response::Done
            }
            Request::SetSize { path, size } => {
                let file = self
                    .nodes
                    .get_mut(&path)
                    .ok_or(FsError::NotFound)?
                    .as_mut()
                    .ok_or(FsError::IsADirectory)?;
                file.resize(size as usize, 0);
                Response::Done
            }
            Request::Sync => {
                self.syncs += 1;
                Response::Done
            }
        })
    }
}

/// Addresses in the test program's memory.
const PATH: u32 = 0x100;
const OTHER_PATH: u32 = 0x600;
const IOVECS: u32 = 0xb00;
const OUT: u32 = 0xc00;
const BUFFER: u32 = 0x1_0000;
const MEMORY: usize = 0x3_0000;

/// A program with preopens `/` (handle 1, the whole service) and `/docs`
/// (read-only, `/DOCS` on the same service), its memory and the fake.
struct Program {
    files: Files,
    memory: Vec<u8>,
    fake: Fake,
}

impl Program {
    fn new(fake: Fake) -> Program {
        let files = Files::new(
            &[
                Preopen {
                    guest: "/".into(),
                    handle: 1,
                    directory: "/".into(),
                    read_only: false,
                },
                Preopen {
                    guest: "/docs".into(),
                    handle: 1,
                    directory: "/DOCS".into(),
                    read_only: true,
                },
            ],
            &[],
        );
        Program {
            files,
            memory: vec![0; MEMORY],
            fake,
        }
    }

    /// Runs a plan to its end against the fake, as the kernel would.
    fn drive(&mut self, plan: impl FnOnce(&mut Files, &mut [u8]) -> Errno<Plan>) -> i32 {
        self.files.settle();
        let (request, in_flight) = match plan(&mut self.files, &mut self.memory) {
            Err(code) | Ok(Plan::Now(code)) => return code,
            Ok(Plan::Ask(request, in_flight)) => (request, in_flight),
            Ok(Plan::Net(..)) => panic!("a file call asked the TCP/IP service"),
        };
        self.files.in_flight = Some(in_flight);
        let mut request = request;
        loop {
            let message = postcard::to_allocvec(&request).unwrap();
            assert!(message.len() <= atoll_abi::MAX_MESSAGE_LEN, "{request:?}");
            let reply = postcard::to_allocvec(&self.fake.serve(request)).unwrap();
            match continue_operation(&mut self.files, &mut self.memory, &reply).0 {
                Step::Done(code) => return code,
                Step::Again { handle, message } => {
                    assert_eq!(handle, 1);
                    request = postcard::from_bytes(&message).unwrap();
                }
            }
        }
    }

    fn put(&mut self, at: u32, bytes: &[u8]) {
        self.memory[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }

    fn u32_at(&self, at: u32) -> u32 {
        u32::from_le_bytes(
            self.memory[at as usize..at as usize + 4]
                .try_into()
                .unwrap(),
        )
    }

    fn u64_at(&self, at: u32) -> u64 {
        u64::from_le_bytes(
            self.memory[at as usize..at as usize + 8]
                .try_into()
                .unwrap(),
        )
    }

    fn path(&mut self, path: &str) -> (u32, u32) {
        self.put(PATH, path.as_bytes());
        (PATH, path.len() as u32)
    }

    /// `path_open` in directory `fd`: the new descriptor or the errno.
    fn open(&mut self, fd: i32, path: &str, oflags: i32, rights: u64) -> Result<i32, i32> {
        let path = self.path(path);
        match self.drive(|files, memory| {
            plan_open(files, memory, fd, path, oflags, rights, u64::MAX, 0, OUT)
        }) {
            0 => Ok(self.u32_at(OUT) as i32),
            code => Err(code),
        }
    }

    /// One iovec of `len` bytes at BUFFER.
    fn iovec(&mut self, len: u32) {
        let mut record = BUFFER.to_le_bytes().to_vec();
        record.extend_from_slice(&len.to_le_bytes());
        self.put(IOVECS, &record);
    }

    fn write(&mut self, fd: i32, data: &[u8]) -> Result<u32, i32> {
        self.put(BUFFER, data);
        self.iovec(data.len() as u32);
        match self.drive(|files, memory| plan_write(files, memory, fd, IOVECS as i32, 1, None, OUT))
        {
            0 => Ok(self.u32_at(OUT)),
            code => Err(code),
        }
    }

    fn read(&mut self, fd: i32, len: u32) -> Result<Vec<u8>, i32> {
        self.iovec(len);
        match self.drive(|files, memory| plan_read(files, memory, fd, IOVECS as i32, 1, None, OUT))
        {
            0 => {
                let count = self.u32_at(OUT);
                Ok(self.memory[BUFFER as usize..(BUFFER + count) as usize].to_vec())
            }
            code => Err(code),
        }
    }

    fn seek(&mut self, fd: i32, offset: i64, whence: i32) -> Result<u64, i32> {
        match self.drive(|files, memory| plan_seek(files, memory, fd, offset, whence, OUT)) {
            0 => Ok(self.u64_at(OUT)),
            code => Err(code),
        }
    }

    /// A request about one path answered `Done`.
    fn path_call(&mut self, fd: i32, path: &str, right: u64) -> i32 {
        let path = self.path(path);
        let make = |target: &Target| path_request(right, target);
        self.drive(|files, memory| plan_path(files, memory, fd, path, right, make))
    }

    /// The names `fd_readdir` gives with a buffer of `len` bytes, asking
    /// again from the last whole entry's cookie while the buffer fills.
    fn list(&mut self, fd: i32, len: u32) -> Result<Vec<String>, i32> {
        let mut names = Vec::new();
        let mut cookie = 0u64;
        loop {
            let code = self
                .drive(|files, memory| plan_readdir(files, memory, fd, BUFFER, len, cookie, OUT));
            if code != 0 {
                return Err(code);
            }
            let used = self.u32_at(OUT);
            let mut at = 0u32;
            while at + DIRENT_LEN as u32 <= used {
                let next = self.u64_at(BUFFER + at);
                let name_len = self.u32_at(BUFFER + at + 16);
                let end = at + DIRENT_LEN as u32 + name_len;
                if end > used {
                    break;
                }
                let start = (BUFFER + at) as usize + DIRENT_LEN;
                names.push(
                    String::from_utf8(self.memory[start..start + name_len as usize].to_vec())
                        .unwrap(),
                );
                cookie = next;
                at = end;
            }
            if used < len {
                return Ok(names);
            }
        }
    }
}

const READ_WRITE: u64 = rights::FILE;
const READ_ONLY: u64 = rights::FILE & !rights::FD_WRITE;

#[test]
fn preopens_are_descriptors_three_and_up() {
    let mut program = Program::new(Fake::new());
    let mut record = [0u8; 8];
    for (fd, name) in [(3, "/"), (4, "/docs")] {
        let files = &program.files;
        let found = files.slot(fd).unwrap().preopen.clone().unwrap();
        assert_eq!(found, name);
        record[4..].copy_from_slice(&(name.len() as u32).to_le_bytes());
    }
    assert_eq!(program.files.slot(5).err(), Some(errno::BADF));
    assert_eq!(program.files.slot(2).err(), Some(errno::BADF));
    assert_eq!(program.files.slot(-1).err(), Some(errno::BADF));
    let stat = fdstat(&program.files, 4).unwrap();
    assert_eq!(stat[0], FILETYPE_DIRECTORY);
    let granted = u64::from_le_bytes(stat[8..16].try_into().unwrap());
    assert_eq!(granted & rights::PATH_CREATE_FILE, 0, "read-only preopen");
    assert_eq!(program.open(3, ".", O_DIRECTORY, 0), Ok(5));
}

#[test]
fn files_are_created_written_sought_and_read() {
    let mut program = Program::new(Fake::new().directory("/DOCS"));
    let fd = program
        .open(3, "notes.txt", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    assert_eq!(fd, 5);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(program.write(fd, &data), Ok(10_000));
    assert_eq!(program.fake.nodes["/notes.txt"], Some(data.clone()));
    assert_eq!(program.seek(fd, 0, WHENCE_CURRENT), Ok(10_000));
    assert_eq!(program.seek(fd, -100, WHENCE_END), Ok(9_900));
    assert_eq!(program.read(fd, 1000).unwrap(), data[9_900..]);
    assert_eq!(program.read(fd, 1000).unwrap(), b"", "end of file");
    assert_eq!(program.seek(fd, 0, WHENCE_SET), Ok(0));
    assert_eq!(program.read(fd, 65_536).unwrap(), data);
    assert_eq!(program.seek(fd, -1, WHENCE_SET), Err(errno::INVAL));
    // pread and pwrite leave the position alone.
    program.put(BUFFER, b"XY");
    program.iovec(2);
    assert_eq!(
        program.drive(|files, memory| plan_write(
            files,
            memory,
            fd,
            IOVECS as i32,
            1,
            Some(3),
            OUT
        )),
        0
    );
    assert_eq!(
        &program.fake.nodes["/notes.txt"].as_ref().unwrap()[3..5],
        b"XY"
    );
    assert_eq!(program.seek(fd, 0, WHENCE_CURRENT), Ok(10_000));
    // Exclusive creation of an existing file.
    assert_eq!(
        program.open(3, "notes.txt", O_CREAT | O_EXCL, READ_WRITE),
        Err(errno::EXIST)
    );
    // Truncate empties it; append writes at the end.
    let fd2 = program.open(3, "./notes.txt", O_TRUNC, READ_WRITE).unwrap();
    assert_eq!(program.fake.nodes["/notes.txt"], Some(Vec::new()));
    assert_eq!(program.write(fd2, b"one"), Ok(3));
    program.files.slot_mut(fd).unwrap().flags = FDFLAG_APPEND;
    assert_eq!(program.write(fd, b"two"), Ok(3));
    assert_eq!(program.fake.nodes["/notes.txt"], Some(b"onetwo".to_vec()));
    // Stat through the descriptor and through the path.
    assert_eq!(
        program.drive(|files, memory| plan_fd_stat(files, memory, fd, OUT)),
        0
    );
    assert_eq!(program.memory[OUT as usize + 16], FILETYPE_REGULAR_FILE);
    assert_eq!(program.u64_at(OUT + 32), 6);
    assert_eq!(program.u64_at(OUT + 48), 1_700_000_000 * 1_000_000_000);
    let inode = program.u64_at(OUT + 8);
    let path = program.path("notes.txt");
    assert_eq!(
        program.drive(|files, memory| plan_path_stat(files, memory, 3, path, OUT)),
        0
    );
    assert_eq!(program.u64_at(OUT + 8), inode);
    // Renumber and close.
    assert_eq!(renumber(&mut program.files, fd2, fd), Ok(()));
    assert_eq!(program.files.slot(fd2).err(), Some(errno::BADF));
    assert_eq!(close(&mut program.files, fd), Ok(()));
    assert_eq!(close(&mut program.files, fd), Err(errno::BADF));
    assert_eq!(program.read(fd, 10), Err(errno::BADF));
}

#[test]
fn a_four_mib_file_reads_whole_in_64_kib_chunks() {
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut program = Program::new(Fake::new().file("/big.bin", &data));
    let fd = program.open(3, "big.bin", 0, READ_ONLY).unwrap();
    let mut read = Vec::new();
    loop {
        let chunk = program.read(fd, 64 << 10).unwrap();
        if chunk.is_empty() {
            break;
        }
        assert_eq!(chunk.len(), 64 << 10, "whole chunks until the end");
        read.extend_from_slice(&chunk);
    }
    assert!(read == data);
    // 64 KiB in requests of at most 3 KiB: 22 each.
    assert_eq!(program.fake.requests, 1 + 64 * 22 + 1);
}

#[test]
fn errors_have_their_posix_errno() {
    let mut program = Program::new(
        Fake::new()
            .directory("/DOCS")
            .file("/DOCS/ABOUT.TXT", b"about")
            .directory("/full")
            .file("/full/x", b"x")
            .file("/file.txt", b"data"),
    );
    assert_eq!(
        program.open(3, "missing.txt", 0, READ_ONLY),
        Err(errno::NOENT)
    );
    assert_eq!(
        program.open(3, "file.txt", O_DIRECTORY, READ_ONLY),
        Err(errno::NOTDIR)
    );
    assert_eq!(
        program.open(3, "file.txt/x", 0, READ_ONLY),
        Err(errno::NOTDIR)
    );
    // A directory opened for reading is a directory; reading it is EISDIR.
    let directory = program.open(3, "full", 0, READ_ONLY).unwrap();
    assert_eq!(program.read(directory, 10), Err(errno::ISDIR));
    assert_eq!(
        program.open(3, "full", O_CREAT, READ_WRITE),
        Err(errno::ISDIR)
    );
    assert_eq!(
        program.open(3, "full", 0, rights::FD_WRITE),
        Err(errno::ISDIR),
        "a directory opened for writing only"
    );
    // `..` stays inside the preopen.
    assert_eq!(
        program.open(3, "../etc", 0, READ_ONLY),
        Err(errno::NOTCAPABLE)
    );
    assert_eq!(
        program.open(4, "../file.txt", 0, READ_ONLY),
        Err(errno::NOTCAPABLE)
    );
    assert_eq!(
        program.open(3, "full/../../x", 0, READ_ONLY),
        Err(errno::NOTCAPABLE)
    );
    assert_eq!(
        program.open(3, "/file.txt", 0, READ_ONLY),
        Err(errno::NOTCAPABLE)
    );
    assert!(program.open(3, "full/../file.txt", 0, READ_ONLY).is_ok());
    assert!(program.open(4, "ABOUT.TXT", 0, READ_ONLY).is_ok());
    // Names too long.
    let long = "n".repeat(256);
    assert_eq!(
        program.open(3, &long, O_CREAT, READ_WRITE),
        Err(errno::NAMETOOLONG)
    );
    // Directories.
    assert_eq!(
        program.path_call(3, "full", rights::PATH_REMOVE_DIRECTORY),
        errno::NOTEMPTY
    );
    assert_eq!(
        program.path_call(3, "full", rights::PATH_UNLINK_FILE),
        errno::ISDIR
    );
    assert_eq!(
        program.path_call(3, "file.txt", rights::PATH_REMOVE_DIRECTORY),
        errno::NOTDIR
    );
    assert_eq!(
        program.path_call(3, "full", rights::PATH_CREATE_DIRECTORY),
        errno::EXIST
    );
    assert_eq!(
        program.path_call(3, ".", rights::PATH_REMOVE_DIRECTORY),
        errno::BUSY
    );
    assert_eq!(
        program.path_call(3, "new", rights::PATH_CREATE_DIRECTORY),
        0
    );
    assert_eq!(
        program.path_call(3, "new", rights::PATH_REMOVE_DIRECTORY),
        0
    );
    assert_eq!(program.path_call(3, "full/x", rights::PATH_UNLINK_FILE), 0);
    assert_eq!(
        program.path_call(3, "full", rights::PATH_REMOVE_DIRECTORY),
        0
    );
    // The read-only preopen.
    assert_eq!(
        program.open(4, "new.txt", O_CREAT, READ_WRITE),
        Err(errno::ACCES)
    );
    assert_eq!(
        program.path_call(4, "ABOUT.TXT", rights::PATH_UNLINK_FILE),
        errno::ACCES
    );
    let about = program.open(4, "ABOUT.TXT", 0, READ_WRITE).unwrap();
    assert_eq!(program.write(about, b"no"), Err(errno::BADF));
    assert_eq!(program.read(about, 10).unwrap(), b"about");
    // A descriptor opened for reading only.
    let reader = program.open(3, "file.txt", 0, READ_ONLY).unwrap();
    assert_eq!(program.write(reader, b"no"), Err(errno::BADF));
    // A file is no directory to resolve paths in.
    assert_eq!(program.open(reader, "x", 0, READ_ONLY), Err(errno::NOTDIR));
    assert_eq!(program.read(99, 1), Err(errno::BADF));
    // A full volume.
    let mut full = Program::new(Fake::new());
    let fd = full.open(3, "a", O_CREAT, READ_WRITE).unwrap();
    full.files.settle();
    full.files.in_flight = Some(InFlight {
        fd: Some(fd),
        handle: 1,
        operation: Operation::Done,
    });
    let reply = postcard::to_allocvec(&Response::Error(FsError::NoSpace)).unwrap();
    assert_eq!(
        continue_operation(&mut full.files, &mut full.memory, &reply).0,
        Step::Done(errno::NOSPC)
    );
}

#[test]
fn renames_within_and_across_directories() {
    let mut program = Program::new(Fake::new().directory("/a").file("/a/one", b"1"));
    program.put(PATH, b"a/one");
    program.put(OTHER_PATH, b"two");
    assert_eq!(
        program.drive(|files, memory| plan_rename(files, memory, (3, PATH, 5), (3, OTHER_PATH, 3))),
        0
    );
    assert_eq!(program.fake.nodes.get("/two"), Some(&Some(b"1".to_vec())));
    assert!(!program.fake.nodes.contains_key("/a/one"));
    // Out of the read-only preopen: refused.
    program.put(OTHER_PATH, b"x");
    assert_eq!(
        program.drive(|files, memory| plan_rename(files, memory, (3, PATH, 3), (4, OTHER_PATH, 1))),
        errno::ACCES
    );
}

#[test]
fn long_directories_list_across_pages_and_small_buffers() {
    let mut fake = Fake::new().directory("/many");
    let mut expected = Vec::new();
    for index in 0..75 {
        let name = alloc::format!("file number {index:03}.txt");
        fake = fake.file(&alloc::format!("/many/{name}"), b"");
        expected.push(name);
    }
    let mut program = Program::new(fake);
    let fd = program
        .open(3, "many", O_DIRECTORY, rights::DIRECTORY)
        .unwrap();
    assert_eq!(program.list(fd, 4096).unwrap(), expected);
    assert_eq!(
        program.list(fd, 100).unwrap(),
        expected,
        "entries cut at the end"
    );
    let file = program
        .open(3, "many/file number 001.txt", 0, READ_ONLY)
        .unwrap();
    assert_eq!(program.list(file, 4096), Err(errno::NOTDIR));
}

#[test]
fn a_request_without_an_answer_makes_its_descriptor_eio() {
    let mut program = Program::new(Fake::new().file("/f", b"data"));
    let fd = program.open(3, "f", 0, READ_ONLY).unwrap();
    // The program is suspended in a read; its file service ends, the
    // kernel answers the call EIO and the operation is left behind.
    program.iovec(4);
    let plan = plan_read(
        &mut program.files,
        &mut program.memory,
        fd,
        IOVECS as i32,
        1,
        None,
        OUT,
    );
    let Ok(Plan::Ask(_, in_flight)) = plan else {
        panic!("{plan:?}");
    };
    program.files.in_flight = Some(in_flight);
    // The next call settles it.
    assert_eq!(program.read(fd, 4), Err(errno::IO));
    assert_eq!(program.seek(fd, 0, WHENCE_SET), Err(errno::IO));
    // Other descriptors go on.
    let other = program.open(3, "f", 0, READ_ONLY).unwrap();
    assert_eq!(program.read(other, 4).unwrap(), b"data");
    // A request the kernel could not even queue leaves its descriptor alone.
    program.iovec(4);
    let plan = plan_read(
        &mut program.files,
        &mut program.memory,
        other,
        IOVECS as i32,
        1,
        Some(0),
        OUT,
    );
    let Ok(Plan::Ask(_, in_flight)) = plan else {
        panic!("{plan:?}");
    };
    program.files.in_flight = Some(in_flight);
    program.files.refused();
    assert_eq!(program.seek(other, 0, WHENCE_SET), Ok(0));
    assert_eq!(program.read(other, 4).unwrap(), b"data");
    // A reply out of protocol is EIO too.
    program.iovec(4);
    let plan = plan_read(
        &mut program.files,
        &mut program.memory,
        other,
        IOVECS as i32,
        1,
        None,
        OUT,
    );
    let Ok(Plan::Ask(_, in_flight)) = plan else {
        panic!("{plan:?}");
    };
    program.files.in_flight = Some(in_flight);
    assert_eq!(
        continue_operation(&mut program.files, &mut program.memory, b"\xff\xff").0,
        Step::Done(errno::IO)
    );
}

#[test]
fn a_socket_given_to_file_and_path_calls_gets_their_errno() {
    let mut program = Program::new(Fake::new());
    // Descriptors 4 and 5, after the preopen.
    program.files = Files::new(
        &[Preopen {
            guest: "/".into(),
            handle: 1,
            directory: "/".into(),
            read_only: false,
        }],
        &[
            Listener {
                handle: 2,
                port: 80,
                nonblocking: false,
            },
            Listener {
                handle: 2,
                port: 81,
                nonblocking: true,
            },
        ],
    );
    let socket = 4;
    assert!(program.files.slot(socket).unwrap().preopen.is_none());
    let record = fdstat(&program.files, socket).unwrap();
    assert_eq!(record[0], FILETYPE_SOCKET_STREAM);
    assert_eq!(u16::from_le_bytes([record[2], record[3]]), 0);
    let record = fdstat(&program.files, socket + 1).unwrap();
    assert_eq!(u16::from_le_bytes([record[2], record[3]]), FDFLAG_NONBLOCK);
    // Paths need a directory.
    assert_eq!(
        program.open(socket, "a.txt", O_CREAT, u64::MAX),
        Err(errno::NOTDIR)
    );
    let path = program.path("d");
    assert_eq!(
        program.drive(|files, memory| plan_path(
            files,
            memory,
            socket,
            path,
            rights::PATH_CREATE_DIRECTORY,
            |target| path_request(rights::PATH_CREATE_DIRECTORY, target),
        )),
        errno::NOTDIR
    );
    // No positions, no listing, no file status.
    assert_eq!(program.seek(socket, 0, WHENCE_SET), Err(errno::SPIPE));
    program.iovec(4);
    assert_eq!(
        program.drive(|files, memory| plan_read(
            files,
            memory,
            socket,
            IOVECS as i32,
            1,
            Some(0),
            OUT
        )),
        errno::SPIPE
    );
    assert_eq!(
        program.drive(|files, memory| plan_write(
            files,
            memory,
            socket,
            IOVECS as i32,
            1,
            Some(0),
            OUT
        )),
        errno::SPIPE
    );
    assert_eq!(
        program.drive(|files, memory| plan_readdir(files, memory, socket, BUFFER, 256, 0, OUT)),
        errno::NOTDIR
    );
    assert_eq!(
        program.drive(|files, memory| plan_fd_stat(files, memory, socket, OUT)),
        errno::NOTCAPABLE
    );
    // Nothing reached the file service.
    assert_eq!(program.fake.requests, 0);
}

#[test]
fn fd_sync_asks_the_file_service_for_a_sync() {
    let mut program = Program::new(Fake::new());
    let fd = program
        .open(3, "data.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    assert_eq!(program.write(fd, b"durable"), Ok(7));
    assert_eq!(program.fake.syncs, 0, "writes alone do not sync");
    assert_eq!(
        program.drive(|files, _| plan_sync(files, fd, rights::FD_SYNC)),
        errno::SUCCESS
    );
    assert_eq!(
        program.drive(|files, _| plan_sync(files, fd, rights::FD_DATASYNC)),
        errno::SUCCESS
    );
    assert_eq!(program.fake.syncs, 2);
    assert_eq!(
        program.drive(|files, _| plan_sync(files, 42, rights::FD_SYNC)),
        errno::BADF
    );
    assert_eq!(program.fake.syncs, 2);
}

#[test]
fn a_write_larger_than_a_message_goes_in_staged_pieces() {
    let mut program = Program::new(Fake::new());
    let fd = program
        .open(3, "big.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(program.write(fd, &data), Ok(10_000));
    // Four pieces (3 x 3 KiB and the rest), no plain `Write`.
    assert_eq!(program.fake.stages, 4);
    assert_eq!(program.fake.nodes["/big.bin"], Some(data.clone()));
    // A small write stays one `Write`.
    assert_eq!(program.write(fd, b"tail"), Ok(4));
    assert_eq!(program.fake.stages, 4);
}

#[test]
fn pieces_the_file_service_lost_are_sent_again_as_writes() {
    let mut program = Program::new(Fake::new());
    program.fake.forget_stages = true;
    let fd = program
        .open(3, "big.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..7_000u32).map(|i| (i % 251) as u8).collect();
    let before = program.fake.requests;
    assert_eq!(program.write(fd, &data), Ok(7_000));
    assert_eq!(program.fake.nodes["/big.bin"], Some(data));
    // Three pieces (the last answered NotStaged), then three `Write`s.
    assert_eq!(program.fake.stages, 3);
    assert_eq!(program.fake.requests - before, 6);
}

#[test]
fn pieces_the_file_service_lost_before_the_last_are_sent_again_as_writes() {
    let mut program = Program::new(Fake::new());
    // Lost before the second of four pieces: the second starts a run of its
    // own, which the last piece writes and answers with less than the whole.
    program.fake.forget_before = Some(2);
    let fd = program
        .open(3, "big.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let before = program.fake.requests;
    assert_eq!(program.write(fd, &data), Ok(10_000));
    assert_eq!(program.fake.nodes["/big.bin"], Some(data));
    // Four pieces, then four `Write`s.
    assert_eq!(program.fake.stages, 4);
    assert_eq!(program.fake.requests - before, 8);
}
