//! Files against the fake file service: the descriptor table, path
//! resolution, the requests each call makes and the errno each failure
//! gives (the kernel's tests, through the WASI functions).

use super::fake_fs::FakeFs;
use super::*;
use crate::files::{
    DIRENT_LEN, FDFLAG_APPEND, FDFLAG_NONBLOCK, FILETYPE_DIRECTORY, FILETYPE_REGULAR_FILE,
    FILETYPE_SOCKET_STREAM, O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC, WHENCE_CURRENT, WHENCE_END,
    WHENCE_SET, rights,
};
use atoll_abi::fs::{Error as FsError, MAX_NAME_LEN};

const READ_WRITE: u64 = rights::FILE;
const READ_ONLY: u64 = rights::FILE & !rights::FD_WRITE;

fn files(fs: FakeFs) -> Program {
    program(preopens(), vec![], fs)
}

impl Program {
    /// A request about one path answered `Done`: `path_create_directory`,
    /// `path_remove_directory` or `path_unlink_file`, by the right each needs.
    fn on_path(&mut self, fd: i32, path: &str, right: u64) -> i32 {
        let (ptr, len) = self.path(path);
        match right {
            rights::PATH_CREATE_DIRECTORY => self.path_create_directory(fd, ptr, len),
            rights::PATH_REMOVE_DIRECTORY => self.path_remove_directory(fd, ptr, len),
            _ => self.path_unlink_file(fd, ptr, len),
        }
    }

    /// The names `fd_readdir` gives with a buffer of `len` bytes, asking
    /// again from the last whole entry's cookie while the buffer fills.
    fn list(&mut self, fd: i32, len: u32) -> Result<Vec<String>, i32> {
        let mut names = Vec::new();
        let mut cookie = 0u64;
        loop {
            let code = self.fd_readdir(fd, BUFFER as i32, len as i32, cookie as i64, OUT as i32);
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
                let start = BUFFER + at + DIRENT_LEN as u32;
                names.push(String::from_utf8(self.bytes(start, name_len as usize)).unwrap());
                cookie = next;
                at = end;
            }
            if used < len {
                return Ok(names);
            }
        }
    }

    fn filestat(&mut self, fd: i32) -> i32 {
        self.fd_filestat_get(fd, OUT as i32)
    }
}

#[test]
fn preopens_are_descriptors_three_and_up() {
    let mut program = files(FakeFs::new());
    for (fd, name) in [(3, "/"), (4, "/docs")] {
        assert_eq!(program.fd_prestat_get(fd, OUT as i32), 0);
        assert_eq!(program.u32_at(OUT), 0, "tag: a directory");
        assert_eq!(program.u32_at(OUT + 4), name.len() as u32);
        assert_eq!(
            program.fd_prestat_dir_name(fd, PATH as i32, 0),
            errno::NAMETOOLONG
        );
        assert_eq!(program.fd_prestat_dir_name(fd, PATH as i32, 16), 0);
        assert_eq!(program.bytes(PATH, name.len()), name.as_bytes());
    }
    for fd in [5, 2, -1] {
        assert_eq!(program.fd_prestat_get(fd, OUT as i32), errno::BADF, "{fd}");
    }
    let (filetype, _, granted) = program.fdstat(4).unwrap();
    assert_eq!(filetype, FILETYPE_DIRECTORY);
    assert_eq!(granted & rights::PATH_CREATE_FILE, 0, "read-only preopen");
    assert_eq!(program.open(3, ".", O_DIRECTORY, 0), Ok(5));
    assert_eq!(program.kernel.fs.requests, 0, "the preopen itself is known");
}

#[test]
fn files_are_created_written_sought_and_read() {
    let mut program = files(FakeFs::new().directory("/DOCS"));
    let fd = program
        .open(3, "notes.txt", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    assert_eq!(fd, 5);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(program.write(fd, &data), Ok(10_000));
    assert_eq!(program.kernel.fs.nodes["/notes.txt"], Some(data.clone()));
    assert_eq!(program.seek(fd, 0, WHENCE_CURRENT), Ok(10_000));
    assert_eq!(program.seek(fd, -100, WHENCE_END), Ok(9_900));
    assert_eq!(program.read(fd, 1000).unwrap(), data[9_900..]);
    assert_eq!(program.read(fd, 1000).unwrap(), b"", "end of file");
    assert_eq!(program.seek(fd, 0, WHENCE_SET), Ok(0));
    assert_eq!(program.read(fd, 65_536).unwrap(), data);
    assert_eq!(program.seek(fd, -1, WHENCE_SET), Err(errno::INVAL));
    assert_eq!(program.fd_tell(fd, OUT as i32), 0);
    assert_eq!(program.u64_at(OUT), 10_000);
    // pread and pwrite leave the position alone.
    program.iovec(b"XY", 2);
    assert_eq!(program.fd_pwrite(fd, IOVECS as i32, 1, 3, OUT as i32), 0);
    assert_eq!(
        &program.kernel.fs.nodes["/notes.txt"].as_ref().unwrap()[3..5],
        b"XY"
    );
    program.iovec(&[], 4);
    assert_eq!(program.fd_pread(fd, IOVECS as i32, 1, 2, OUT as i32), 0);
    assert_eq!(program.bytes(BUFFER, 4), [2, b'X', b'Y', 5]);
    assert_eq!(program.seek(fd, 0, WHENCE_CURRENT), Ok(10_000));
    assert_eq!(
        program.fd_pread(fd, IOVECS as i32, 1, -1, OUT as i32),
        errno::INVAL
    );
    // Exclusive creation of an existing file.
    assert_eq!(
        program.open(3, "notes.txt", O_CREAT | O_EXCL, READ_WRITE),
        Err(errno::EXIST)
    );
    // Truncate empties it; append writes at the end.
    let fd2 = program.open(3, "./notes.txt", O_TRUNC, READ_WRITE).unwrap();
    assert_eq!(program.kernel.fs.nodes["/notes.txt"], Some(Vec::new()));
    assert_eq!(program.write(fd2, b"one"), Ok(3));
    let flags = i32::from(FDFLAG_APPEND | FDFLAG_NONBLOCK);
    assert_eq!(program.fd_fdstat_set_flags(fd, flags), 0);
    let (_, kept, _) = program.fdstat(fd).unwrap();
    assert_eq!(kept, FDFLAG_APPEND, "files never wait");
    assert_eq!(program.write(fd, b"two"), Ok(3));
    assert_eq!(
        program.kernel.fs.nodes["/notes.txt"],
        Some(b"onetwo".to_vec())
    );
    assert_eq!(
        program.seek(fd, 0, WHENCE_CURRENT),
        Ok(6),
        "after the append"
    );
    // Stat through the descriptor and through the path.
    assert_eq!(program.filestat(fd), 0);
    assert_eq!(program.bytes(OUT + 16, 1), [FILETYPE_REGULAR_FILE]);
    assert_eq!(program.u64_at(OUT + 32), 6);
    assert_eq!(program.u64_at(OUT + 48), 1_700_000_000 * 1_000_000_000);
    let inode = program.u64_at(OUT + 8);
    let (ptr, len) = program.path("notes.txt");
    assert_eq!(program.path_filestat_get(3, 0, ptr, len, OUT as i32), 0);
    assert_eq!(program.u64_at(OUT + 8), inode);
    // Cut to a size.
    assert_eq!(program.fd_filestat_set_size(fd, 2), 0);
    assert_eq!(program.kernel.fs.nodes["/notes.txt"], Some(b"on".to_vec()));
    assert_eq!(program.fd_filestat_set_size(fd, -1), errno::INVAL);
    // Renumber and close.
    assert_eq!(program.fd_renumber(fd2, fd), 0);
    assert_eq!(program.fdstat(fd2), Err(errno::BADF));
    assert_eq!(program.fd_close(fd), 0);
    assert_eq!(program.fd_close(fd), errno::BADF);
    assert_eq!(program.read(fd, 10), Err(errno::BADF));
    // Stdio is not a file.
    assert_eq!(program.fd_renumber(1, 3), errno::NOTSUP);
    assert_eq!(program.fd_seek(1, 0, WHENCE_SET, OUT as i32), errno::SPIPE);
    assert_eq!(program.fd_sync(2), errno::INVAL);
    assert_eq!(program.fd_close(2), 0);
}

#[test]
fn a_four_mib_file_reads_whole_in_64_kib_chunks() {
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut program = files(FakeFs::new().file("/big.bin", &data));
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
    assert_eq!(program.kernel.fs.requests, 1 + 64 * 22 + 1);
}

#[test]
fn errors_have_their_posix_errno() {
    let mut program = files(
        FakeFs::new()
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
    assert_eq!(program.write(directory, b"x"), Err(errno::BADF));
    assert_eq!(
        program.open(3, "full", O_CREAT, READ_WRITE),
        Err(errno::ISDIR)
    );
    assert_eq!(
        program.open(3, "full", 0, rights::FD_WRITE),
        Err(errno::ISDIR),
        "a directory opened for writing only"
    );
    assert_eq!(
        program.open(3, "x", O_DIRECTORY | O_CREAT, READ_ONLY),
        Err(errno::INVAL)
    );
    assert_eq!(program.open(3, "x", 1 << 4, READ_ONLY), Err(errno::INVAL));
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
        program.open(directory, "x", 0, READ_ONLY),
        Err(errno::NOTCAPABLE),
        "opened without the right to open in it"
    );
    let subdirectory = program
        .open(3, "full", O_DIRECTORY, rights::DIRECTORY)
        .unwrap();
    assert!(
        program
            .open(subdirectory, "../file.txt", 0, READ_ONLY)
            .is_ok(),
        "up from a subdirectory, still inside"
    );
    assert_eq!(
        program.open(subdirectory, "../../x", 0, READ_ONLY),
        Err(errno::NOTCAPABLE)
    );
    assert_eq!(
        program.open(3, "/file.txt", 0, READ_ONLY),
        Err(errno::NOTCAPABLE)
    );
    assert_eq!(
        program.open(3, "a\0b", 0, READ_ONLY),
        Err(errno::NOTCAPABLE)
    );
    assert_eq!(program.open(3, "", 0, READ_ONLY), Err(errno::NOENT));
    program.put(PATH, b"\xff/..");
    assert_eq!(
        program.path_open(3, 0, PATH as i32, 4, 0, READ_ONLY as i64, 0, 0, OUT as i32),
        errno::ILSEQ,
        "not UTF-8 comes before the `..`"
    );
    assert!(program.open(3, "full/../file.txt", 0, READ_ONLY).is_ok());
    assert!(program.open(4, "ABOUT.TXT", 0, READ_ONLY).is_ok());
    // Names too long.
    let long = "n".repeat(MAX_NAME_LEN + 1);
    assert_eq!(
        program.open(3, &long, O_CREAT, READ_WRITE),
        Err(errno::NAMETOOLONG)
    );
    // Directories.
    assert_eq!(
        program.on_path(3, "full", rights::PATH_REMOVE_DIRECTORY),
        errno::NOTEMPTY
    );
    assert_eq!(
        program.on_path(3, "full", rights::PATH_UNLINK_FILE),
        errno::ISDIR
    );
    assert_eq!(
        program.on_path(3, "file.txt", rights::PATH_REMOVE_DIRECTORY),
        errno::NOTDIR
    );
    assert_eq!(
        program.on_path(3, "full", rights::PATH_CREATE_DIRECTORY),
        errno::EXIST
    );
    assert_eq!(
        program.on_path(3, ".", rights::PATH_REMOVE_DIRECTORY),
        errno::BUSY
    );
    assert_eq!(
        program.on_path(3, ".", rights::PATH_CREATE_DIRECTORY),
        errno::EXIST
    );
    assert_eq!(
        program.on_path(3, ".", rights::PATH_UNLINK_FILE),
        errno::ISDIR
    );
    assert_eq!(program.on_path(3, "new", rights::PATH_CREATE_DIRECTORY), 0);
    assert_eq!(program.on_path(3, "new", rights::PATH_REMOVE_DIRECTORY), 0);
    assert_eq!(program.on_path(3, "full/x", rights::PATH_UNLINK_FILE), 0);
    assert_eq!(program.on_path(3, "full", rights::PATH_REMOVE_DIRECTORY), 0);
    // The read-only preopen.
    assert_eq!(
        program.open(4, "new.txt", O_CREAT, READ_WRITE),
        Err(errno::ACCES)
    );
    assert_eq!(
        program.open(4, "ABOUT.TXT", 0, rights::FD_WRITE),
        Err(errno::ACCES)
    );
    assert_eq!(
        program.on_path(4, "ABOUT.TXT", rights::PATH_UNLINK_FILE),
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
    // Bad pointers are EFAULT, before anything is asked.
    let asked = program.kernel.fs.requests;
    assert_eq!(
        program.path_open(3, 0, MEMORY as i32 - 2, 4, 0, 0, 0, 0, OUT as i32),
        errno::FAULT
    );
    assert_eq!(
        program.fd_read(reader, IOVECS as i32, 1, MEMORY as i32 - 3),
        errno::FAULT
    );
    program.iovec(&[], u32::MAX);
    assert_eq!(
        program.fd_read(reader, IOVECS as i32, 1, OUT as i32),
        errno::FAULT
    );
    assert_eq!(
        program.fd_read(reader, IOVECS as i32, 1025, OUT as i32),
        errno::INVAL
    );
    assert_eq!(program.kernel.fs.requests, asked);
    // A full volume.
    let mut full = files(FakeFs::new());
    let fd = full.open(3, "a", O_CREAT, READ_WRITE).unwrap();
    full.kernel.fs.nodes.clear();
    full.kernel.fs.nodes.insert("/".into(), None);
    assert_eq!(full.fd_filestat_set_size(fd, 1), errno::NOENT);
    assert_eq!(full.fd_sync(fd), 0, "not broken by an error answer");
    full.kernel.fs.nodes.insert("/a".into(), Some(Vec::new()));
    full.kernel.fs.full = true;
    assert_eq!(full.write(fd, b"x"), Err(errno::NOSPC));
}

#[test]
fn paths_longer_than_any_limit_resolve_as_the_kernel_did() {
    let mut program = files(FakeFs::new().file("/x", b"x").directory("/d"));
    // Long, but back to something short: resolved (read a piece at a time,
    // never held whole).
    let dots = "./".repeat(20_000) + "x";
    assert!(program.open(3, &dots, 0, READ_ONLY).is_ok());
    let deep = "d/".repeat(3_000) + &"../".repeat(3_000) + "x";
    assert!(program.open(3, &deep, 0, READ_ONLY).is_ok());
    let names = "long-name/".repeat(100) + &"../".repeat(100) + "d";
    assert_eq!(
        program.open(3, &names, O_DIRECTORY, rights::DIRECTORY),
        Ok(7)
    );
    // Too long at the end: ENAMETOOLONG; above the preopen on the way:
    // ENOTCAPABLE, whatever the length.
    let long = "d/".repeat(400) + "x";
    assert_eq!(
        program.open(3, &long, 0, READ_ONLY),
        Err(errno::NAMETOOLONG)
    );
    let up = "d/".repeat(3_000) + &"../".repeat(3_001) + "x";
    assert_eq!(program.open(3, &up, 0, READ_ONLY), Err(errno::NOTCAPABLE));
    // A name too long comes before a later `..` above the preopen, and
    // after an earlier one.
    let name = "n".repeat(MAX_NAME_LEN + 1);
    let both = std::format!("{name}/../..");
    assert_eq!(
        program.open(3, &both, 0, READ_ONLY),
        Err(errno::NAMETOOLONG)
    );
    let both = std::format!("../{name}");
    assert_eq!(program.open(3, &both, 0, READ_ONLY), Err(errno::NOTCAPABLE));
    // Not UTF-8 anywhere, even after a cut between pieces: EILSEQ first.
    let mut bytes = ("a/".repeat(127) + "a").into_bytes();
    bytes.extend_from_slice("é".as_bytes());
    bytes.extend_from_slice(b"/../../x");
    assert_eq!(bytes[255], 0xc3, "the é starts at the end of a piece");
    program.put(PATH, &bytes);
    let len = bytes.len() as i32;
    assert_eq!(
        program.path_open(
            3,
            0,
            PATH as i32,
            len,
            0,
            READ_ONLY as i64,
            0,
            0,
            OUT as i32
        ),
        errno::NOENT,
        "a valid character across pieces"
    );
    bytes.truncate(256);
    program.put(PATH, &bytes);
    assert_eq!(
        program.path_open(
            3,
            0,
            PATH as i32,
            256,
            0,
            READ_ONLY as i64,
            0,
            0,
            OUT as i32
        ),
        errno::ILSEQ,
        "a character cut by the end of the path"
    );
}

#[test]
fn renames_within_and_across_directories() {
    let mut program = files(FakeFs::new().directory("/a").file("/a/one", b"1"));
    program.put(PATH, b"a/one");
    program.put(OTHER_PATH, b"two");
    let (path, other) = (PATH as i32, OTHER_PATH as i32);
    assert_eq!(program.path_rename(3, path, 5, 3, other, 3), 0);
    assert_eq!(
        program.kernel.fs.nodes.get("/two"),
        Some(&Some(b"1".to_vec()))
    );
    assert!(!program.kernel.fs.nodes.contains_key("/a/one"));
    // Out of the read-only preopen: refused.
    program.put(OTHER_PATH, b"x");
    assert_eq!(program.path_rename(3, path, 3, 4, other, 1), errno::ACCES);
    // The preopen itself cannot move; another file service is another
    // volume.
    program.put(PATH, b".");
    assert_eq!(program.path_rename(3, path, 1, 3, other, 1), errno::BUSY);
    let mut two = preopens();
    two[1].handle = FS + 10;
    two[1].read_only = false;
    let mut program = program_with(two);
    program.put(PATH, b"a");
    program.put(OTHER_PATH, b"b");
    assert_eq!(program.path_rename(3, path, 1, 4, other, 1), errno::XDEV);
}

fn program_with(preopens: Vec<Preopen>) -> Program {
    program(preopens, vec![], FakeFs::new())
}

#[test]
fn long_directories_list_across_pages_and_small_buffers() {
    let mut fake = FakeFs::new().directory("/many");
    let mut expected = Vec::new();
    for index in 0..75 {
        let name = std::format!("file number {index:03}.txt");
        fake = fake.file(&std::format!("/many/{name}"), b"");
        expected.push(name);
    }
    let mut program = files(fake);
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
    assert_eq!(program.list(1, 4096), Err(errno::NOTDIR));
}

#[test]
fn a_request_without_an_answer_makes_its_descriptor_eio() {
    let mut program = files(FakeFs::new().file("/f", b"data"));
    let fd = program.open(3, "f", 0, READ_ONLY).unwrap();
    // The file service ends with the read taken: EIO, and the descriptor
    // answers EIO from then on.
    program.kernel.fs_next.push_back(Next::Lose);
    assert_eq!(program.read(fd, 4), Err(errno::IO));
    assert_eq!(program.read(fd, 4), Err(errno::IO));
    assert_eq!(program.seek(fd, 0, WHENCE_SET), Err(errno::IO));
    // Other descriptors go on.
    let other = program.open(3, "f", 0, READ_ONLY).unwrap();
    assert_eq!(program.read(other, 4).unwrap(), b"data");
    // A request the kernel refused leaves its descriptor alone.
    program.kernel.fs_next.push_back(Next::Refuse);
    assert_eq!(program.seek(other, 0, WHENCE_SET), Ok(0));
    assert_eq!(program.read(other, 4), Err(errno::IO));
    assert_eq!(program.seek(other, 0, WHENCE_SET), Ok(0));
    assert_eq!(program.read(other, 4).unwrap(), b"data");
    // A reply out of protocol is EIO, and breaks the descriptor.
    program.kernel.fs_next.push_back(Next::Garble);
    assert_eq!(program.read(other, 4), Err(errno::IO));
    assert_eq!(program.seek(other, 0, WHENCE_SET), Err(errno::IO));
    // A path call has no descriptor to break.
    program.kernel.fs_next.push_back(Next::Lose);
    assert_eq!(program.open(3, "f", 0, READ_ONLY), Err(errno::IO));
    let third = program.open(3, "f", 0, READ_ONLY).unwrap();
    // A read half done when its service ends (the second request refused:
    // the operation cannot go on) breaks it too.
    let mut big = files(FakeFs::new().file("/f", &[7; 10_000]));
    let fd = big.open(3, "f", 0, READ_ONLY).unwrap();
    big.kernel.fs_next.extend([Next::Serve, Next::Refuse]);
    assert_eq!(big.read(fd, 10_000), Err(errno::IO));
    assert_eq!(big.read(fd, 4), Err(errno::IO));
    assert_eq!(program.read(third, 4).unwrap(), b"data");
}

#[test]
fn a_socket_given_to_file_and_path_calls_gets_their_errno() {
    let mut program = program(
        preopens()[..1].to_vec(),
        vec![listener(80, false), listener(81, true)],
        FakeFs::new(),
    );
    // Descriptors 4 and 5, after the preopen.
    let socket = 4;
    assert_eq!(program.fd_prestat_get(socket, OUT as i32), errno::BADF);
    let (filetype, flags, _) = program.fdstat(socket).unwrap();
    assert_eq!((filetype, flags), (FILETYPE_SOCKET_STREAM, 0));
    let (_, flags, _) = program.fdstat(socket + 1).unwrap();
    assert_eq!(flags, FDFLAG_NONBLOCK);
    // Paths need a directory.
    assert_eq!(
        program.open(socket, "a.txt", O_CREAT, u64::MAX),
        Err(errno::NOTDIR)
    );
    assert_eq!(
        program.on_path(socket, "d", rights::PATH_CREATE_DIRECTORY),
        errno::NOTDIR
    );
    // No positions, no listing, no file status.
    assert_eq!(program.seek(socket, 0, WHENCE_SET), Err(errno::SPIPE));
    assert_eq!(program.fd_tell(socket, OUT as i32), errno::SPIPE);
    program.iovec(&[], 4);
    assert_eq!(
        program.fd_pread(socket, IOVECS as i32, 1, 0, OUT as i32),
        errno::SPIPE
    );
    assert_eq!(
        program.fd_pwrite(socket, IOVECS as i32, 1, 0, OUT as i32),
        errno::SPIPE
    );
    assert_eq!(program.list(socket, 256), Err(errno::NOTDIR));
    assert_eq!(program.filestat(socket), errno::NOTCAPABLE);
    assert_eq!(program.fd_sync(socket), errno::NOTCAPABLE);
    // Nothing reached a service.
    assert_eq!(program.kernel.calls, 0);
}

#[test]
fn fd_sync_asks_the_file_service_for_a_sync() {
    let mut program = files(FakeFs::new());
    let fd = program
        .open(3, "data.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    assert_eq!(program.write(fd, b"durable"), Ok(7));
    assert_eq!(program.kernel.fs.syncs, 0, "writes alone do not sync");
    assert_eq!(program.fd_sync(fd), errno::SUCCESS);
    assert_eq!(program.fd_datasync(fd), errno::SUCCESS);
    assert_eq!(program.kernel.fs.syncs, 2);
    assert_eq!(program.fd_sync(42), errno::BADF);
    assert_eq!(program.kernel.fs.syncs, 2);
}

#[test]
fn a_write_larger_than_a_message_goes_in_staged_pieces() {
    let mut program = files(FakeFs::new());
    let fd = program
        .open(3, "big.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(program.write(fd, &data), Ok(10_000));
    // Four pieces (3 x 3 KiB and the rest), no plain `Write`.
    assert_eq!(program.kernel.fs.stages, 4);
    assert_eq!(program.kernel.fs.nodes["/big.bin"], Some(data.clone()));
    // A small write stays one `Write`.
    assert_eq!(program.write(fd, b"tail"), Ok(4));
    assert_eq!(program.kernel.fs.stages, 4);
    // At most 64 KiB a call: the rest is a short count.
    let huge = vec![1u8; 70_000];
    assert_eq!(program.write(fd, &huge), Ok(65_536));
}

#[test]
fn nothing_is_on_the_disk_until_the_last_piece_is_answered() {
    let mut program = files(FakeFs::new());
    let fd = program
        .open(3, "big.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    let data = vec![9u8; 7_000];
    // The service ends with the last piece taken: nothing written, EIO,
    // and the descriptor broken.
    program
        .kernel
        .fs_next
        .extend([Next::Serve, Next::Serve, Next::Lose]);
    assert_eq!(program.write(fd, &data), Err(errno::IO));
    assert_eq!(program.kernel.fs.nodes["/big.bin"], Some(Vec::new()));
    assert_eq!(program.write(fd, b"x"), Err(errno::IO));
    // An error answer to a piece: nothing moved, its errno.
    let fd = program.open(3, "big.bin", 0, READ_WRITE).unwrap();
    program.kernel.fs.full = true;
    assert_eq!(program.write(fd, &data), Err(errno::NOSPC));
    assert_eq!(program.kernel.fs.nodes["/big.bin"], Some(Vec::new()));
}

#[test]
fn pieces_the_file_service_lost_are_sent_again_as_writes() {
    let mut program = files(FakeFs::new());
    program.kernel.fs.forget_stages = true;
    let fd = program
        .open(3, "big.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..7_000u32).map(|i| (i % 251) as u8).collect();
    let before = program.kernel.fs.requests;
    assert_eq!(program.write(fd, &data), Ok(7_000));
    assert_eq!(program.kernel.fs.nodes["/big.bin"], Some(data));
    // Three pieces (the last answered NotStaged), then three `Write`s.
    assert_eq!(program.kernel.fs.stages, 3);
    assert_eq!(program.kernel.fs.requests - before, 6);
}

#[test]
fn pieces_the_file_service_lost_before_the_last_are_sent_again_as_writes() {
    let mut program = files(FakeFs::new());
    // Lost before the second of four pieces: the second starts a run of its
    // own, which the last piece writes and answers with less than the whole.
    program.kernel.fs.forget_before = Some(2);
    let fd = program
        .open(3, "big.bin", O_CREAT | O_EXCL, READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let before = program.kernel.fs.requests;
    assert_eq!(program.write(fd, &data), Ok(10_000));
    assert_eq!(program.kernel.fs.nodes["/big.bin"], Some(data));
    // Four pieces, then four `Write`s.
    assert_eq!(program.kernel.fs.stages, 4);
    assert_eq!(program.kernel.fs.requests - before, 8);
}

#[test]
fn a_read_cut_by_an_error_returns_what_it_moved() {
    let mut program = files(FakeFs::new().file("/f", &[3; 5_000]));
    let fd = program.open(3, "f", 0, READ_ONLY).unwrap();
    // The second `Read` fails: the first one's 3 KiB are the result.
    program.kernel.fs.fail_after = Some((1, FsError::Device));
    assert_eq!(program.read(fd, 5_000).unwrap().len(), 3072);
    assert_eq!(program.seek(fd, 0, WHENCE_CURRENT), Ok(3072));
    // Failing at once is the error (a device error: EIO, which breaks it).
    program.kernel.fs.fail_after = Some((0, FsError::Device));
    assert_eq!(program.read(fd, 10), Err(errno::IO));
    assert_eq!(program.seek(fd, 0, WHENCE_CURRENT), Err(errno::IO));
}
