//! The whole file system on images made by dosfstools' `mkfs.fat` and checked
//! by `fsck.fat` (tests that need them are skipped, with a note, where they
//! are not installed).

use crate::disk::{DiskError, MAX_SECTORS, Sectors};
use crate::fs::FileSystem;
use crate::layout::{FatType, SECTOR};
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use atoll_protocols::fs::{Entry, Error, MAX_DATA, Request, Response};
use core::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A disk in memory that can be made to fail like a vanished driver.
#[derive(Clone)]
struct Memory {
    bytes: Rc<RefCell<Vec<u8>>>,
    failing: Rc<Cell<bool>>,
    calls: Rc<Cell<u32>>,
    flushes: Rc<Cell<u32>>,
}

impl Memory {
    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, DiskError> {
        self.calls.set(self.calls.get() + 1);
        if self.failing.get() {
            return Err(DiskError::Gone);
        }
        if len == 0 || !len.is_multiple_of(SECTOR) || len > MAX_SECTORS * SECTOR {
            return Err(DiskError::Device(atoll_protocols::block::Error::BadLength));
        }
        let start = sector as usize * SECTOR;
        let end = start + len;
        if end > self.bytes.borrow().len() {
            return Err(DiskError::Device(atoll_protocols::block::Error::OutOfRange));
        }
        Ok(start..end)
    }
}

impl Sectors for Memory {
    fn capacity(&self) -> Result<u64, DiskError> {
        if self.failing.get() {
            return Err(DiskError::Gone);
        }
        Ok((self.bytes.borrow().len() / SECTOR) as u64)
    }

    fn read(&self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError> {
        let range = self.range(sector, buffer.len())?;
        buffer.copy_from_slice(&self.bytes.borrow()[range]);
        Ok(())
    }

    fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let range = self.range(sector, data.len())?;
        self.bytes.borrow_mut()[range].copy_from_slice(data);
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        if self.failing.get() {
            return Err(DiskError::Gone);
        }
        self.flushes.set(self.flushes.get() + 1);
        Ok(())
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--help").output().is_ok()
}

fn tools() -> bool {
    let ok = have("mkfs.fat") && have("mcopy") && have("fsck.fat");
    if !ok {
        std::eprintln!("skipped: dosfstools and mtools are not installed");
    }
    ok
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn scratch(name: &str) -> PathBuf {
    // A folder per image (named by what comes before the first dot), so
    // that tests running in parallel never remove each other's folder.
    let stem = name.split('.').next().unwrap_or(name);
    let dir =
        std::env::temp_dir().join(std::format!("atoll-fat-test-{}-{stem}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A 32 MiB disk with an MBR and one FAT16 partition at sector 2048, as
/// image-builder makes them, holding HELLO.TXT, a long-named file and a
/// directory.
fn partitioned_image(name: &str) -> PathBuf {
    let path = scratch(name);
    let sectors: u32 = 32 * 2048;
    let mut disk = vec![0u8; sectors as usize * SECTOR];
    disk[446 + 4] = 0x06;
    disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&(sectors - 2048).to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::write(&path, &disk).unwrap();
    run(Command::new("mkfs.fat")
        .args(["-F", "16", "--offset", "2048", "-n", "ATOLL"])
        .arg(&path));
    let target = std::format!("{}@@1M", path.display());
    fill(&target, name);
    path
}

/// A FAT32 superfloppy (no partition table) of 40 MiB.
fn superfloppy_image(name: &str) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, vec![0u8; 40 << 20]).unwrap();
    run(Command::new("mkfs.fat")
        .args(["-F", "32", "-s", "1"])
        .arg(&path));
    fill(&path.display().to_string(), name);
    path
}

/// Copies the test files in (`name` keeps parallel tests' sources apart).
fn fill(target: &str, name: &str) {
    let source = scratch(&std::format!("{name}.source"));
    std::fs::write(&source, "Hello from the host disk!\n").unwrap();
    run(Command::new("mcopy")
        .args(["-i", target])
        .arg(&source)
        .arg("::HELLO.TXT"));
    let long: String = (0..5000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    std::fs::write(&source, &long).unwrap();
    run(Command::new("mcopy")
        .args(["-i", target])
        .arg(&source)
        .arg("::A Long File Name.txt"));
    run(Command::new("mmd").args(["-i", target, "::DOCS"]));
    std::fs::write(&source, "nested\n").unwrap();
    run(Command::new("mcopy")
        .args(["-i", target])
        .arg(&source)
        .arg("::DOCS/NOTE.TXT"));
}

/// Removes a test's files, and the scratch folder once it is empty (a failed
/// test leaves its image behind to look at).
fn done(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(std::format!("{}.source", path.display()));
    if let Some(folder) = path.parent() {
        let _ = std::fs::remove_dir(folder);
    }
}

fn load(path: &Path) -> Memory {
    Memory {
        bytes: Rc::new(RefCell::new(std::fs::read(path).unwrap())),
        failing: Rc::new(Cell::new(false)),
        calls: Rc::new(Cell::new(0)),
        flushes: Rc::new(Cell::new(0)),
    }
}

/// Writes the memory back and runs `fsck.fat -n` on the volume.
fn check_volume(memory: &Memory, path: &Path, first_sector: usize) {
    let bytes = memory.bytes.borrow();
    let volume = path.with_extension("volume");
    std::fs::write(&volume, &bytes[first_sector * SECTOR..]).unwrap();
    std::fs::write(path, &*bytes).unwrap();
    let output = Command::new("fsck.fat")
        .arg("-n")
        .arg(&volume)
        .output()
        .unwrap();
    let report = std::format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::eprintln!("fsck.fat -n: {report}");
    let _ = std::fs::remove_file(&volume);
    assert!(output.status.success(), "fsck.fat: {report}");
    // fsck.fat -n exits 0 even for some repairs it would make; check its words.
    for alarm in [
        "Orphaned",
        "lost",
        "differ",
        "wrong",
        "Free cluster summary",
    ] {
        assert!(!report.contains(alarm), "fsck.fat: {report}");
    }
}

fn read(files: &mut FileSystem<Memory>, path: &str, offset: u64, len: u32) -> Response {
    files.handle(Request::Read {
        path: path.to_string(),
        offset,
        len,
    })
}

fn write(files: &mut FileSystem<Memory>, path: &str, offset: u64, data: &[u8]) -> Response {
    files.handle(Request::Write {
        path: path.to_string(),
        offset,
        data: data.to_vec(),
    })
}

/// The response with its entry's time left out (it is the time of the test).
fn no_time(response: Response) -> Response {
    match response {
        Response::Entry(entry) => Response::Entry(Entry {
            modified: 0,
            ..entry
        }),
        other => other,
    }
}

fn names(response: Response) -> Vec<String> {
    match response {
        Response::Entries { entries, .. } => entries.into_iter().map(|entry| entry.name).collect(),
        other => panic!("not a listing: {other:?}"),
    }
}

fn list(files: &mut FileSystem<Memory>, path: &str) -> Response {
    files.handle(Request::List {
        path: path.to_string(),
        start: 0,
    })
}

#[test]
fn partitioned_fat16_reads_writes_and_stays_consistent() {
    if !tools() {
        return;
    }
    let path = partitioned_image("fat16.img");
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    let summary = files.summary().unwrap();
    assert_eq!(summary.fat_type, FatType::Fat16);
    assert!(!summary.superfloppy);
    assert_eq!(summary.label.as_deref(), Some("ATOLL"));
    assert!(summary.free > 30 << 20 && summary.free < summary.bytes);

    let mut root = names(list(&mut files, "/"));
    root.sort();
    assert_eq!(root, ["A Long File Name.txt", "DOCS", "HELLO.TXT"]);
    assert_eq!(names(list(&mut files, "/docs")), ["NOTE.TXT"]);
    assert_eq!(
        list(&mut files, "/HELLO.TXT"),
        Response::Error(Error::NotADirectory)
    );
    assert_eq!(list(&mut files, "/nope"), Response::Error(Error::NotFound));

    // Case-insensitive 8.3 names, long names, nested paths.
    assert_eq!(
        read(&mut files, "/hello.txt", 0, 100),
        Response::Data(b"Hello from the host disk!\n".to_vec())
    );
    assert_eq!(
        read(&mut files, "/HELLO.TXT", 6, 4),
        Response::Data(b"from".to_vec())
    );
    assert_eq!(
        read(&mut files, "/HELLO.TXT", 500, 4),
        Response::Data(Vec::new())
    );
    assert_eq!(
        read(&mut files, "/Docs/note.txt", 0, 100),
        Response::Data(b"nested\n".to_vec())
    );
    // Read-ahead: directory, FAT and data sectors come seven to a call.
    let before = memory.calls.get();
    match read(&mut files, "/a long file name.TXT", 0, 3072) {
        Response::Data(data) => assert_eq!(data.len(), 3072),
        other => panic!("{other:?}"),
    }
    let calls = memory.calls.get() - before;
    assert!(calls <= 4, "{calls} block calls for 6 sectors");
    match read(&mut files, "/a long file name.TXT", 4000, 3072) {
        Response::Data(data) => {
            assert_eq!(data.len(), 1000);
            assert_eq!(data[0], b'a' + (4000 % 26) as u8);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        no_time(files.handle(Request::Open {
            path: "/DOCS".into()
        })),
        Response::Entry(Entry {
            name: "DOCS".into(),
            size: 0,
            directory: true,
            modified: 0,
        })
    );
    assert_eq!(
        read(&mut files, "/DOCS", 0, 10),
        Response::Error(Error::IsADirectory)
    );

    // Create, write, extend with a gap, overwrite in the middle.
    assert_eq!(
        write(&mut files, "/written.txt", 0, b"written by atoll"),
        Response::Written(16)
    );
    assert_eq!(
        no_time(files.handle(Request::Open {
            path: "/WRITTEN.TXT".into()
        })),
        Response::Entry(Entry {
            name: "written.txt".into(),
            size: 16,
            directory: false,
            modified: 0,
        })
    );
    let big: Vec<u8> = (0..3072u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        write(&mut files, "/DOCS/BIG.BIN", 10_000, &big),
        Response::Written(3072)
    );
    match read(&mut files, "/DOCS/BIG.BIN", 9_000, 3072) {
        Response::Data(data) => {
            assert!(data[..1000].iter().all(|byte| *byte == 0));
            assert_eq!(data[1000..], big[..2072]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        write(&mut files, "/FAR.BIN", 17 << 20, b"x"),
        Response::Error(Error::Other(_))
    ));
    assert_eq!(
        files.handle(Request::Open {
            path: "/FAR.BIN".into()
        }),
        Response::Error(Error::NotFound)
    );
    assert_eq!(
        write(&mut files, "/WRITTEN.TXT", 8, b"BY"),
        Response::Written(2)
    );
    assert_eq!(
        read(&mut files, "/WRITTEN.TXT", 0, 100),
        Response::Data(b"written BY atoll".to_vec())
    );
    assert_eq!(
        files.handle(Request::Create {
            path: "/written.TXT".into()
        }),
        Response::Error(Error::Exists)
    );
    assert_eq!(
        files.handle(Request::Create {
            path: "/EMPTY.DAT".into()
        }),
        Response::Done
    );
    assert_eq!(
        files.handle(Request::Create {
            path: "/not an 8.3 name.text".into()
        }),
        Response::Done
    );
    assert_eq!(
        files.handle(Request::Create {
            path: "/a:b".into()
        }),
        Response::Error(Error::InvalidName)
    );

    // Remove frees the clusters (fsck below checks), long names too.
    assert_eq!(
        files.handle(Request::Remove {
            path: "/DOCS/BIG.BIN".into()
        }),
        Response::Done
    );
    assert_eq!(
        read(&mut files, "/DOCS/BIG.BIN", 0, 1),
        Response::Error(Error::NotFound)
    );
    assert_eq!(
        files.handle(Request::Remove {
            path: "/A Long File Name.txt".into()
        }),
        Response::Done
    );
    assert_eq!(
        files.handle(Request::Remove {
            path: "/DOCS".into()
        }),
        Response::Error(Error::IsADirectory)
    );
    let after = files.summary().unwrap();
    assert_eq!(
        after.free,
        summary.free - 2048 + 6144,
        "only WRITTEN.TXT's cluster is in use, and the long-named file's 3 are free"
    );

    check_volume(&memory, &path, 2048);
    let written = Command::new("mtype")
        .args([
            "-i",
            &std::format!("{}@@1M", path.display()),
            "::WRITTEN.TXT",
        ])
        .output()
        .unwrap();
    assert_eq!(written.stdout, b"written BY atoll");
    done(&path);
}

#[test]
fn a_superfloppy_fat32_mounts_behind_a_virtual_mbr() {
    if !tools() {
        return;
    }
    let path = superfloppy_image("fat32.img");
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    let summary = files.summary().unwrap();
    assert_eq!(summary.fat_type, FatType::Fat32);
    assert!(summary.superfloppy);
    assert_eq!(
        read(&mut files, "/HELLO.TXT", 0, 5),
        Response::Data(b"Hello".to_vec())
    );
    let data = vec![7u8; 3000];
    for round in 0..3u64 {
        assert_eq!(
            write(&mut files, "/LOG.BIN", round * 3000, &data),
            Response::Written(3000)
        );
    }
    assert_eq!(
        files.handle(Request::Remove {
            path: "/HELLO.TXT".into()
        }),
        Response::Done
    );
    assert_eq!(
        no_time(files.handle(Request::Open {
            path: "/LOG.BIN".into()
        })),
        Response::Entry(Entry {
            name: "LOG.BIN".into(),
            size: 9000,
            directory: false,
            modified: 0,
        })
    );
    check_volume(&memory, &path, 0);
    done(&path);
}

#[test]
fn a_failing_driver_fails_one_request_and_the_next_one_works() {
    if !tools() {
        return;
    }
    let path = partitioned_image("failing.img");
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    assert!(files.summary().is_ok());
    memory.failing.set(true);
    assert_eq!(
        read(&mut files, "/HELLO.TXT", 0, 5),
        Response::Error(Error::Device)
    );
    assert_eq!(
        write(&mut files, "/X.TXT", 0, b"x"),
        Response::Error(Error::Device)
    );
    memory.failing.set(false);
    assert_eq!(
        read(&mut files, "/HELLO.TXT", 0, 5),
        Response::Data(b"Hello".to_vec())
    );
    assert_eq!(write(&mut files, "/X.TXT", 0, b"x"), Response::Written(1));
    check_volume(&memory, &path, 2048);
    done(&path);
}

#[test]
fn a_blank_disk_has_no_volume_until_it_gets_one() {
    let memory = Memory {
        bytes: Rc::new(RefCell::new(vec![0u8; 4096 * SECTOR])),
        failing: Rc::new(Cell::new(false)),
        calls: Rc::new(Cell::new(0)),
        flushes: Rc::new(Cell::new(0)),
    };
    let mut files = FileSystem::new(memory.clone());
    assert_eq!(files.summary(), Err(Error::NoVolume));
    assert_eq!(list(&mut files, "/"), Response::Error(Error::NoVolume));
    assert!(memory.calls.get() > 0);
}

#[test]
fn long_listings_page_within_a_message() {
    if !tools() {
        return;
    }
    let path = partitioned_image("paging.img");
    let target = std::format!("{}@@1M", path.display());
    run(Command::new("mmd").args(["-i", &target, "::MANY"]));
    let source = scratch("paging.source");
    std::fs::write(&source, "x").unwrap();
    for i in 0..40 {
        let name = std::format!("::MANY/{i:02} {}.txt", "a rather long file name".repeat(8));
        run(Command::new("mcopy")
            .args(["-i", &target])
            .arg(&source)
            .arg(&name));
    }
    let mut files = FileSystem::new(load(&path));
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = files.handle(Request::List {
            path: "/many".into(),
            start: seen.len() as u32,
        });
        let encoded = postcard::to_allocvec(&response).unwrap();
        assert!(
            encoded.len() <= atoll_sdk::MAX_MESSAGE_LEN,
            "{} bytes",
            encoded.len()
        );
        pages += 1;
        match response {
            Response::Entries { entries, more } => {
                assert!(!entries.is_empty());
                seen.extend(entries.into_iter().map(|entry| entry.name));
                if !more {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen.len(), 40);
    assert!(pages > 1, "long names take more than one page of 32");
    assert!(seen[39].starts_with("39 a rather long"));
    let _ = std::fs::remove_file(&source);
    done(&path);
}

/// Reads `path` from start to end in requests of `fs::MAX_DATA` bytes.
fn read_all(files: &mut FileSystem<Memory>, path: &str) -> Vec<u8> {
    let mut contents = Vec::new();
    loop {
        match read(files, path, contents.len() as u64, MAX_DATA) {
            Response::Data(data) if data.is_empty() => return contents,
            Response::Data(data) => contents.extend_from_slice(&data),
            other => panic!("{path} at {}: {other:?}", contents.len()),
        }
    }
}

#[test]
fn sequential_reads_reuse_the_open_file_until_it_changes() {
    if !tools() {
        return;
    }
    let path = partitioned_image("sequential.img");
    let source = scratch("sequential.bin");
    let mut expected: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&source, &expected).unwrap();
    run(Command::new("mcopy")
        .args(["-i", &std::format!("{}@@1M", path.display())])
        .arg(&source)
        .arg("::SEQ.BIN"));
    let _ = std::fs::remove_file(&source);
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    assert!(files.summary().is_ok());

    // One lookup, then about one block call per seven sectors of data.
    let before = memory.calls.get();
    assert_eq!(read_all(&mut files, "/seq.bin"), expected);
    let calls = memory.calls.get() - before;
    let sectors = expected.len().div_ceil(SECTOR) as u32;
    assert!(
        calls <= sectors.div_ceil(MAX_SECTORS as u32) + 6,
        "{calls} block calls for {sectors} sectors"
    );

    // Going back, another file in between, the same file by another spelling.
    assert_eq!(
        read(&mut files, "/SEQ.BIN", 3, 4),
        Response::Data(expected[3..7].to_vec())
    );
    assert_eq!(
        read(&mut files, "/HELLO.TXT", 0, 5),
        Response::Data(b"Hello".to_vec())
    );
    assert_eq!(
        read(&mut files, "//Seq.Bin", 150_000, 8),
        Response::Data(expected[150_000..150_008].to_vec())
    );

    // A write (in the middle, and past the end) shows in the next reads.
    assert_eq!(
        read(&mut files, "/SEQ.BIN", 9_000, 8),
        Response::Data(expected[9_000..9_008].to_vec())
    );
    assert_eq!(
        write(&mut files, "/SEQ.BIN", 10_000, b"CHANGED!"),
        Response::Written(8)
    );
    expected[10_000..10_008].copy_from_slice(b"CHANGED!");
    assert_eq!(
        read(&mut files, "/SEQ.BIN", 10_000, 8),
        Response::Data(b"CHANGED!".to_vec())
    );
    assert_eq!(
        write(&mut files, "/SEQ.BIN", 200_000, b"tail"),
        Response::Written(4)
    );
    expected.extend_from_slice(b"tail");
    assert_eq!(read_all(&mut files, "/SEQ.BIN"), expected);

    // A failed read closes the file; the next read opens it afresh.
    memory.failing.set(true);
    assert_eq!(
        read(&mut files, "/SEQ.BIN", 100_000, 8),
        Response::Error(Error::Device)
    );
    memory.failing.set(false);
    assert_eq!(
        read(&mut files, "/SEQ.BIN", 100_000, 8),
        Response::Data(expected[100_000..100_008].to_vec())
    );

    // Removed while open for reading: gone.
    assert_eq!(
        files.handle(Request::Remove {
            path: "/SEQ.BIN".into()
        }),
        Response::Done
    );
    assert_eq!(
        read(&mut files, "/SEQ.BIN", 100_008, 8),
        Response::Error(Error::NotFound)
    );
    assert_eq!(
        files.handle(Request::Create {
            path: "/SEQ.BIN".into()
        }),
        Response::Done
    );
    assert_eq!(
        read(&mut files, "/SEQ.BIN", 0, 8),
        Response::Data(Vec::new())
    );
    check_volume(&memory, &path, 2048);
    done(&path);
}

fn request(files: &mut FileSystem<Memory>, request: Request) -> Response {
    no_time(files.handle(request))
}

/// Directories, long names, renames, sizes and removals, on a volume
/// checked by `fsck.fat` and read back with mtools.
fn directories_renames_and_long_names(path: &Path, first_sector: usize, target: &str) {
    let memory = load(path);
    let mut files = FileSystem::new(memory.clone());
    let summary = files.summary().unwrap();
    let created = |files: &mut FileSystem<Memory>, path: &str| {
        request(
            files,
            Request::OpenFile {
                path: path.into(),
                create: true,
                exclusive: true,
                truncate: false,
            },
        )
    };
    assert!(matches!(
        created(&mut files, "/My long file name.txt"),
        Response::Entry(_)
    ));
    assert_eq!(
        created(&mut files, "/my LONG file name.TXT"),
        Response::Error(Error::Exists)
    );
    assert_eq!(
        write(&mut files, "/My long file name.txt", 0, b"long"),
        Response::Written(4)
    );
    assert_eq!(
        request(
            &mut files,
            Request::CreateDirectory {
                path: "/Project files".into()
            }
        ),
        Response::Done
    );
    assert_eq!(
        request(
            &mut files,
            Request::CreateDirectory {
                path: "/project FILES".into()
            }
        ),
        Response::Error(Error::Exists)
    );
    assert_eq!(
        request(
            &mut files,
            Request::CreateDirectory {
                path: "/SUB".into()
            }
        ),
        Response::Done
    );
    let data: Vec<u8> = (0..9000u32).map(|i| (i % 253) as u8).collect();
    for (index, chunk) in data.chunks(3072).enumerate() {
        assert_eq!(
            write(
                &mut files,
                "/Project files/data.bin",
                index as u64 * 3072,
                chunk
            ),
            Response::Written(chunk.len() as u32)
        );
    }
    // Rename within a directory, to a long name, and across directories.
    assert_eq!(
        request(
            &mut files,
            Request::Rename {
                from: "/Project files/data.bin".into(),
                to: "/Project files/Renamed data file.bin".into(),
            }
        ),
        Response::Done
    );
    assert_eq!(
        request(
            &mut files,
            Request::Rename {
                from: "/Project files/Renamed data file.bin".into(),
                to: "/SUB/moved.bin".into(),
            }
        ),
        Response::Done
    );
    assert_eq!(read_all(&mut files, "/sub/MOVED.BIN"), data);
    // A directory moves with its contents; `..` follows it.
    assert_eq!(
        request(
            &mut files,
            Request::Rename {
                from: "/SUB".into(),
                to: "/Project files/Inner directory".into(),
            }
        ),
        Response::Done
    );
    assert_eq!(
        read_all(&mut files, "/Project files/Inner directory/moved.bin"),
        data
    );
    assert_eq!(
        request(
            &mut files,
            Request::Rename {
                from: "/Project files".into(),
                to: "/Project files/Inner directory/x".into(),
            }
        ),
        Response::Error(Error::Other("a directory cannot move into itself".into()))
    );
    // Rename over an existing file replaces it.
    assert_eq!(
        write(&mut files, "/HELLO2.TXT", 0, b"second"),
        Response::Written(6)
    );
    assert_eq!(
        request(
            &mut files,
            Request::Rename {
                from: "/HELLO2.TXT".into(),
                to: "/HELLO.TXT".into(),
            }
        ),
        Response::Done
    );
    assert_eq!(read_all(&mut files, "/HELLO.TXT"), b"second");
    // Sizes: cut within a cluster chain, to zero, extend.
    assert_eq!(
        request(
            &mut files,
            Request::SetSize {
                path: "/Project files/Inner directory/moved.bin".into(),
                size: 5000,
            }
        ),
        Response::Done
    );
    assert_eq!(
        read_all(&mut files, "/Project files/Inner directory/moved.bin"),
        data[..5000]
    );
    assert!(matches!(
        request(
            &mut files,
            Request::OpenFile {
                path: "/My long file name.txt".into(),
                create: false,
                exclusive: false,
                truncate: true,
            }
        ),
        Response::Entry(Entry { size: 0, .. })
    ));
    assert_eq!(
        request(
            &mut files,
            Request::SetSize {
                path: "/HELLO.TXT".into(),
                size: 10
            }
        ),
        Response::Done
    );
    assert_eq!(read_all(&mut files, "/HELLO.TXT"), b"second\0\0\0\0");
    // Removing: not empty, then empty; a directory is not a file.
    assert_eq!(
        request(
            &mut files,
            Request::RemoveDirectory {
                path: "/Project files".into()
            }
        ),
        Response::Error(Error::NotEmpty)
    );
    assert_eq!(
        request(
            &mut files,
            Request::Remove {
                path: "/Project files".into()
            }
        ),
        Response::Error(Error::IsADirectory)
    );
    assert_eq!(
        request(
            &mut files,
            Request::RemoveDirectory {
                path: "/HELLO.TXT".into()
            }
        ),
        Response::Error(Error::NotADirectory)
    );
    assert_eq!(
        request(
            &mut files,
            Request::CreateDirectory {
                path: "/Empty one".into()
            }
        ),
        Response::Done
    );
    assert_eq!(
        request(
            &mut files,
            Request::RemoveDirectory {
                path: "/Empty one".into()
            }
        ),
        Response::Done
    );
    assert_eq!(
        created(&mut files, &std::format!("/{}", "x".repeat(256))),
        Response::Error(Error::NameTooLong)
    );
    let after = files.summary().unwrap();
    assert!(after.free < summary.free);
    check_volume(&memory, path, first_sector);
    let listing = Command::new("mdir")
        .args(["-i", target, "::"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("My long file name.txt"), "{listing}");
    assert!(listing.contains("Project files"), "{listing}");
    let moved = Command::new("mtype")
        .args(["-i", target, "::Project files/Inner directory/moved.bin"])
        .output()
        .unwrap();
    assert_eq!(moved.stdout, data[..5000]);
}

#[test]
fn fat16_directories_renames_and_long_names() {
    if !tools() {
        return;
    }
    let path = partitioned_image("dirs16.img");
    let target = std::format!("{}@@1M", path.display());
    directories_renames_and_long_names(&path, 2048, &target);
    done(&path);
}

#[test]
fn fat32_directories_renames_and_long_names() {
    if !tools() {
        return;
    }
    let path = superfloppy_image("dirs32.img");
    let target = path.display().to_string();
    directories_renames_and_long_names(&path, 0, &target);
    done(&path);
}

#[test]
fn a_full_volume_is_no_space_and_stays_consistent() {
    if !tools() {
        return;
    }
    // FAT12, FAT16 and FAT32 with 512-byte clusters, nearly filled from the
    // host.
    for (fat, kib) in [("12", "1440"), ("16", "8192"), ("32", "34000")] {
        let path = scratch(&std::format!("full{fat}.img"));
        let _ = std::fs::remove_file(&path);
        run(Command::new("mkfs.fat")
            .args(["-C", "-F", fat, "-s", "1"])
            .arg(&path)
            .arg(kib));
        let target = path.display().to_string();
        let source = scratch(&std::format!("full{fat}.img.source"));
        let memory = load(&path);
        let free = FileSystem::new(memory.clone()).summary().unwrap().free;
        std::fs::write(&source, vec![7u8; free as usize - 20_000]).unwrap();
        run(Command::new("mcopy")
            .args(["-i", &target])
            .arg(&source)
            .arg("::FILLER.BIN"));
        let memory = load(&path);
        let mut files = FileSystem::new(memory.clone());
        let start_free = files.summary().unwrap().free;
        let chunk = vec![0x5au8; 3072];
        let mut offset = 0u64;
        let error = loop {
            match write(&mut files, "/fill.bin", offset, &chunk) {
                Response::Written(count) => offset += u64::from(count),
                other => break other,
            }
            assert!(offset < 40_000, "FAT{fat}: wrote past the free space");
        };
        assert_eq!(
            error,
            Response::Error(Error::NoSpace),
            "FAT{fat}: after {offset} bytes"
        );
        // The clusters the last write could not fill are all that is left.
        assert!(offset >= 20_000 - 3072, "FAT{fat}: only {offset} bytes");
        let summary = files.summary().unwrap();
        assert!(summary.free < 3072, "FAT{fat}: {} bytes free", summary.free);
        // What was written is there, and the free count is the FAT's.
        check_volume(&memory, &path, 0);
        let fresh = FileSystem::new(memory.clone()).summary().unwrap();
        assert_eq!(fresh.free, summary.free, "FAT{fat}");
        assert_eq!(
            files.handle(Request::Remove {
                path: "/fill.bin".into()
            }),
            Response::Done
        );
        assert_eq!(
            files.summary().unwrap().free,
            start_free,
            "FAT{fat}: free space after the remove"
        );
        check_volume(&memory, &path, 0);
        let _ = std::fs::remove_file(&source);
        done(&path);
    }
}

#[test]
fn directories_grow_for_long_names() {
    if !tools() {
        return;
    }
    // 512-byte clusters: a subdirectory's cluster holds 16 entries, so
    // long names (3 entries each with their alias) soon need more clusters.
    for (name, fat, kib) in [("grow16.img", "16", "8192"), ("grow32.img", "32", "40960")] {
        let path = scratch(name);
        let _ = std::fs::remove_file(&path);
        run(Command::new("mkfs.fat")
            .args(["-C", "-F", fat, "-s", "1"])
            .arg(&path)
            .arg(kib));
        many_long_names(&path);
    }
}

fn many_long_names(path: &Path) {
    let memory = load(path);
    let mut files = FileSystem::new(memory.clone());
    assert_eq!(
        request(
            &mut files,
            Request::CreateDirectory {
                path: "/Many".into()
            }
        ),
        Response::Done
    );
    let mut expected = Vec::new();
    for index in 0..40 {
        let name = std::format!("Long file name {index:02}.txt");
        let created = request(
            &mut files,
            Request::OpenFile {
                path: std::format!("/Many/{name}"),
                create: true,
                exclusive: true,
                truncate: false,
            },
        );
        assert!(matches!(created, Response::Entry(_)), "{name}: {created:?}");
        expected.push(name);
    }
    let long = std::format!("/Many/{}", "a".repeat(250));
    assert!(matches!(
        request(
            &mut files,
            Request::OpenFile {
                path: long,
                create: true,
                exclusive: true,
                truncate: false
            }
        ),
        Response::Entry(_)
    ));
    let mut listed = Vec::new();
    let mut start = 0;
    loop {
        match files.handle(Request::List {
            path: "/Many".into(),
            start,
        }) {
            Response::Entries { entries, more } => {
                start += entries.len() as u32;
                listed.extend(entries.into_iter().map(|entry| entry.name));
                if !more {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(listed.len(), 41);
    for name in &expected {
        assert!(listed.contains(name), "{name} in {listed:?}");
    }
    check_volume(&memory, path, 0);
    done(path);
}

#[test]
fn fat12_directories_renames_and_long_names() {
    if !tools() {
        return;
    }
    let path = scratch("dirs12.img");
    let _ = std::fs::remove_file(&path);
    run(Command::new("mkfs.fat")
        .args(["-C", "-F", "12", "-n", "ATOLL"])
        .arg(&path)
        .arg("4096"));
    let target = path.display().to_string();
    fill(&target, "dirs12.img");
    directories_renames_and_long_names(&path, 0, &target);
    done(&path);
}

/// The same requests on a volume of each FAT type (512-byte clusters, so
/// that a 200 KB file on FAT12 has entries straddling FAT sectors): a long
/// name written in 3 KiB pieces, a directory made, filled, emptied and
/// removed, a rename, a cut, removals, the free count after them, then
/// `fsck.fat -n` and mtools reading names and bytes back.
fn same_requests(fat: &str, kib: &str, expected: FatType) {
    let path = scratch(&std::format!("same{fat}.img"));
    let _ = std::fs::remove_file(&path);
    run(Command::new("mkfs.fat")
        .args(["-C", "-F", fat, "-s", "1", "-n", "ATOLL"])
        .arg(&path)
        .arg(kib));
    let target = path.display().to_string();
    fill(&target, &std::format!("same{fat}.img"));
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    let summary = files.summary().unwrap();
    assert_eq!(summary.fat_type, expected);
    assert_eq!(summary.label.as_deref(), Some("ATOLL"));
    // The host's long-named file (5000 bytes) goes first, with its clusters.
    assert_eq!(
        files.handle(Request::Remove {
            path: "/a long file name.TXT".into()
        }),
        Response::Done
    );
    let free = files.summary().unwrap().free;
    assert_eq!(free, summary.free + 10 * 512, "FAT{fat}");

    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let long = "/A long file name.txt";
    let put = |files: &mut FileSystem<Memory>, path: &str, data: &[u8]| {
        for (index, chunk) in data.chunks(MAX_DATA as usize).enumerate() {
            assert_eq!(
                write(files, path, (index * MAX_DATA as usize) as u64, chunk),
                Response::Written(chunk.len() as u32),
                "FAT{fat}: {path} at {}",
                index * MAX_DATA as usize
            );
        }
    };
    put(&mut files, long, &data);
    assert_eq!(read_all(&mut files, "/a LONG file NAME.TXT"), data);
    assert_eq!(
        files.summary().unwrap().free,
        free - 200_192,
        "FAT{fat}: 391 clusters taken"
    );
    // A directory: made, given a file, emptied by a rename, removed.
    assert_eq!(
        request(
            &mut files,
            Request::CreateDirectory {
                path: "/Some directory".into()
            }
        ),
        Response::Done
    );
    put(&mut files, "/Some directory/inner file.txt", &data[..5000]);
    assert_eq!(
        request(
            &mut files,
            Request::RemoveDirectory {
                path: "/Some directory".into()
            }
        ),
        Response::Error(Error::NotEmpty)
    );
    assert_eq!(
        request(
            &mut files,
            Request::Rename {
                from: "/Some directory/inner file.txt".into(),
                to: "/Moved.txt".into(),
            }
        ),
        Response::Done
    );
    assert_eq!(
        request(
            &mut files,
            Request::RemoveDirectory {
                path: "/Some directory".into()
            }
        ),
        Response::Done
    );
    // Cut within the chain, overwrite in the middle, cut to zero.
    assert_eq!(
        request(
            &mut files,
            Request::SetSize {
                path: "/moved.txt".into(),
                size: 1000,
            }
        ),
        Response::Done
    );
    assert_eq!(
        write(&mut files, "/moved.txt", 10, b"middle"),
        Response::Written(6)
    );
    let mut moved = data[..1000].to_vec();
    moved[10..16].copy_from_slice(b"middle");
    assert_eq!(read_all(&mut files, "/MOVED.TXT"), moved);
    assert!(matches!(
        request(
            &mut files,
            Request::OpenFile {
                path: "/HELLO.TXT".into(),
                create: false,
                exclusive: false,
                truncate: true,
            }
        ),
        Response::Entry(Entry { size: 0, .. })
    ));
    // Free space: removing what was made gives back every cluster.
    assert_eq!(
        files.handle(Request::Remove {
            path: "/moved.txt".into()
        }),
        Response::Done
    );
    assert_eq!(
        files.handle(Request::Remove { path: long.into() }),
        Response::Done
    );
    let after = files.summary().unwrap().free;
    assert_eq!(
        after,
        free + 512,
        "FAT{fat}: HELLO.TXT's cluster is free too"
    );
    assert_eq!(
        FileSystem::new(memory.clone()).summary().unwrap().free,
        after,
        "FAT{fat}: the count kept is the FAT's"
    );
    // Written again, for mtools to read back.
    put(&mut files, long, &data);
    check_volume(&memory, &path, 0);
    let listing = Command::new("mdir")
        .args(["-i", &target, "::"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("A long file name.txt"), "{listing}");
    assert!(!listing.contains("Some directory"), "{listing}");
    let typed = Command::new("mtype")
        .args(["-i", &target, "::A long file name.txt"])
        .output()
        .unwrap();
    assert_eq!(typed.stdout, data, "FAT{fat}: mtype");
    let hello = Command::new("mtype")
        .args(["-i", &target, "::HELLO.TXT"])
        .output()
        .unwrap();
    assert!(hello.stdout.is_empty(), "FAT{fat}: HELLO.TXT was truncated");
    done(&path);
}

#[test]
fn the_same_requests_on_fat12_fat16_and_fat32() {
    if !tools() {
        return;
    }
    same_requests("12", "1440", FatType::Fat12);
    same_requests("16", "8192", FatType::Fat16);
    same_requests("32", "34000", FatType::Fat32);
}

#[test]
fn appends_cost_few_block_calls_and_sync_flushes() {
    if !tools() {
        return;
    }
    let path = partitioned_image("appends.img");
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    assert!(files.summary().is_ok());
    let chunk: Vec<u8> = (0..MAX_DATA).map(|i| (i % 249) as u8).collect();
    assert_eq!(
        write(&mut files, "/APPEND.BIN", 0, &chunk),
        Response::Written(MAX_DATA)
    );
    // Appending 3 KiB (2 KiB clusters): the data in one block request, the
    // FAT sector to each of the 2 FATs, the entry; no directory search, no
    // chain walk, and no flush (a `Sync` does that).
    let (calls, flushes) = (memory.calls.get(), memory.flushes.get());
    let rounds = 40u32;
    for round in 1..=rounds {
        assert_eq!(
            write(
                &mut files,
                "/APPEND.BIN",
                u64::from(round * MAX_DATA),
                &chunk
            ),
            Response::Written(MAX_DATA)
        );
    }
    let per_write = f64::from(memory.calls.get() - calls) / f64::from(rounds);
    assert!(per_write <= 4.5, "{per_write} block calls per 3 KiB append");
    assert_eq!(memory.flushes.get(), flushes, "a write does not flush");
    assert_eq!(files.handle(Request::Sync), Response::Done);
    assert_eq!(memory.flushes.get(), flushes + 1);
    assert_eq!(
        files.handle(Request::Create {
            path: "/OTHER.TXT".into()
        }),
        Response::Done
    );
    assert_eq!(memory.flushes.get(), flushes + 2, "other changes flush");
    let mut expected = Vec::new();
    for _ in 0..=rounds {
        expected.extend_from_slice(&chunk);
    }
    assert_eq!(read_all(&mut files, "/APPEND.BIN"), expected);
    check_volume(&memory, &path, 2048);
    let typed = Command::new("mtype")
        .args([
            "-i",
            &std::format!("{}@@1M", path.display()),
            "::APPEND.BIN",
        ])
        .output()
        .unwrap();
    assert_eq!(typed.stdout, expected);
    done(&path);
}

#[test]
fn a_corrupt_chain_gives_errors_not_a_hang() {
    if !tools() {
        return;
    }
    let path = scratch("corrupt.img");
    let _ = std::fs::remove_file(&path);
    run(Command::new("mkfs.fat")
        .args(["-C", "-F", "16", "-s", "1"])
        .arg(&path)
        .arg("8192"));
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    let data = vec![3u8; 5 * 512];
    assert_eq!(
        write(&mut files, "/LOOP.BIN", 0, &data),
        Response::Written(data.len() as u32)
    );
    assert_eq!(
        write(&mut files, "/SHORT.BIN", 0, &data),
        Response::Written(data.len() as u32)
    );
    // LOOP.BIN's last cluster points back to its first and its size claims
    // 8 MiB; SHORT.BIN's chain ends (a bad-cluster mark) after 2 clusters.
    let geometry = {
        let bytes = memory.bytes.borrow();
        crate::layout::Geometry::parse(&bytes[..SECTOR], 0).unwrap()
    };
    {
        let mut bytes = memory.bytes.borrow_mut();
        let root = geometry.root_start as usize * SECTOR;
        let loop_first = u16::from_le_bytes([bytes[root + 26], bytes[root + 27]]);
        let short_first = u16::from_le_bytes([bytes[root + 32 + 26], bytes[root + 32 + 27]]);
        bytes[root + 28..root + 32].copy_from_slice(&(8u32 << 20).to_le_bytes());
        for copy in 0..2usize {
            let fat = (geometry.fat_start as usize + copy * geometry.fat_sectors as usize) * SECTOR;
            let entry = |cluster: u16| fat + usize::from(cluster) * 2;
            let last = entry(loop_first + 4);
            bytes[last..last + 2].copy_from_slice(&loop_first.to_le_bytes());
            let second = entry(short_first + 1);
            bytes[second..second + 2].copy_from_slice(&0xfff7u16.to_le_bytes());
        }
    }
    // A fresh mount meets the damage.
    let mut files = FileSystem::new(memory.clone());
    assert!(matches!(
        read(&mut files, "/LOOP.BIN", 7 << 20, 100),
        Response::Error(Error::Other(_))
    ));
    assert!(matches!(
        write(&mut files, "/LOOP.BIN", 7 << 20, b"x"),
        Response::Error(Error::Other(_))
    ));
    assert!(matches!(
        read(&mut files, "/SHORT.BIN", 2048, 100),
        Response::Error(Error::Other(_))
    ));
    assert_eq!(
        read(&mut files, "/SHORT.BIN", 0, 4),
        Response::Data(vec![3u8; 4])
    );
    // Removing follows each chain once around, and ends.
    assert_eq!(
        files.handle(Request::Remove {
            path: "/LOOP.BIN".into()
        }),
        Response::Done
    );
    assert_eq!(
        files.handle(Request::Remove {
            path: "/SHORT.BIN".into()
        }),
        Response::Done
    );
    done(&path);
}

fn stage(
    files: &mut FileSystem<Memory>,
    client: u32,
    path: &str,
    offset: u64,
    data: &[u8],
    last: bool,
) -> Response {
    files.handle_from(
        client,
        Request::Stage {
            path: path.to_string(),
            offset,
            data: data.to_vec(),
            last,
        },
    )
}

#[test]
fn staged_pieces_are_written_at_once_by_the_last() {
    if !tools() {
        return;
    }
    let path = partitioned_image("staged.img");
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    assert!(files.summary().is_ok());
    let whole: Vec<u8> = (0..60 * 1024u32).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<&[u8]> = whole.chunks(MAX_DATA as usize).collect();
    let calls = memory.calls.get();
    let mut offset = 0u64;
    for (index, piece) in pieces.iter().enumerate() {
        let last = index + 1 == pieces.len();
        let expected = if last { whole.len() } else { piece.len() };
        assert_eq!(
            stage(&mut files, 7, "/STAGED.BIN", offset, piece, last),
            Response::Written(expected as u32)
        );
        if !last {
            assert_eq!(memory.calls.get(), calls, "a piece is only held");
        }
        offset += piece.len() as u64;
    }
    // 60 KiB in runs of 7 sectors, the FAT sectors, the entry: far fewer
    // block requests than 20 `Write`s of 3 KiB (about 4 each).
    let used = memory.calls.get() - calls;
    assert!(used <= 30, "{used} block calls for a 60 KiB staged write");
    assert_eq!(read_all(&mut files, "/STAGED.BIN"), whole);
    check_volume(&memory, &path, 2048);
    done(&path);
}

#[test]
fn staged_pieces_are_dropped_by_other_requests_and_a_lost_run_writes_nothing() {
    if !tools() {
        return;
    }
    let path = partitioned_image("staged-drop.img");
    let memory = load(&path);
    let mut files = FileSystem::new(memory.clone());
    assert!(files.summary().is_ok());
    let piece = [0xabu8; 100];
    // Asked by client 1 itself: any request of its own but a `Stage`.
    let exists = |files: &mut FileSystem<Memory>, name: &str| {
        !matches!(
            files.handle_from(1, Request::Open { path: name.into() }),
            Response::Error(Error::NotFound)
        )
    };
    // A last piece with nothing held before it.
    assert_eq!(
        stage(&mut files, 1, "/A.BIN", 0, &piece, true),
        Response::Error(Error::NotStaged)
    );
    // Another request of the same client drops its pieces.
    assert_eq!(
        stage(&mut files, 1, "/A.BIN", 0, &piece, false),
        Response::Written(100)
    );
    assert!(!exists(&mut files, "/A.BIN"));
    assert_eq!(
        stage(&mut files, 1, "/A.BIN", 100, &piece, true),
        Response::Error(Error::NotStaged)
    );
    assert!(!exists(&mut files, "/A.BIN"), "nothing was written");
    // A piece that does not follow starts a new run; the last piece then
    // writes only that run.
    assert_eq!(
        stage(&mut files, 1, "/B.BIN", 0, &piece, false),
        Response::Written(100)
    );
    assert_eq!(
        stage(&mut files, 1, "/B.BIN", 500, &piece, false),
        Response::Written(100)
    );
    assert_eq!(
        stage(&mut files, 1, "/B.BIN", 600, &piece, true),
        Response::Written(200)
    );
    assert_eq!(
        read_all(&mut files, "/B.BIN"),
        [[0u8; 500].as_slice(), &piece, &piece].concat()
    );
    // Clients are kept apart: two runs interleaved, each written whole.
    for client in [2, 3] {
        assert_eq!(
            stage(
                &mut files,
                client,
                &std::format!("/C{client}.BIN"),
                0,
                &[client as u8; 3000],
                false
            ),
            Response::Written(3000)
        );
    }
    for client in [2, 3] {
        assert_eq!(
            stage(
                &mut files,
                client,
                &std::format!("/C{client}.BIN"),
                3000,
                &[client as u8; 10],
                true
            ),
            Response::Written(3010)
        );
        assert_eq!(
            read_all(&mut files, &std::format!("/C{client}.BIN")),
            [client as u8; 3010].to_vec()
        );
    }
    // A run is bounded.
    let mut offset = 0;
    let full = [1u8; MAX_DATA as usize];
    let mut answers = Vec::new();
    while offset <= u64::from(atoll_protocols::fs::MAX_STAGED) {
        answers.push(stage(&mut files, 4, "/D.BIN", offset, &full, false));
        offset += u64::from(MAX_DATA);
    }
    assert!(
        matches!(answers.last(), Some(Response::Error(Error::Other(_)))),
        "{:?}",
        answers.last()
    );
    // More than a piece's bound is refused.
    assert!(matches!(
        stage(
            &mut files,
            5,
            "/E.BIN",
            0,
            &[0u8; MAX_DATA as usize + 1],
            false
        ),
        Response::Error(Error::Other(_))
    ));
    check_volume(&memory, &path, 2048);
    done(&path);
}
