//! Host tests of the shim: the WASI functions, called as the program would
//! call the exports, against a plain buffer for the program's memory and a
//! fake kernel whose services are in-memory fakes (a file service on handle
//! [`FS`], a TCP/IP service on [`NET`], a console on [`CONSOLE`]).
//!
//! What is here: the fakes and a small builder; the tests themselves are in
//! `files.rs`, `sockets.rs` and `stdio.rs`, by topic (ported from the
//! kernel's own tests of its WASI host functions, with the same errno for
//! every case).

mod fake_fs;
mod fake_net;
mod files;
mod sockets;
mod stdio;

use crate::{Errno, Kernel, Memory, Shim};
use atoll_abi::startup::{Listener, Preopen, Startup};
use atoll_abi::wasi::errno;
use atoll_abi::{Error, console};
use fake_fs::FakeFs;
use fake_net::FakeNet;
use std::collections::VecDeque;
use std::string::String;
use std::vec::Vec;

/// Handles of the fake services.
const FS: i32 = 1;
const NET: i32 = 2;
const CONSOLE: i32 = 3;

/// Sizes of the fake program's memory.
const MEMORY: usize = 0x3_0000;

/// The program's memory: a buffer, checked as the kernel checks.
struct FakeMemory(Vec<u8>);

impl FakeMemory {
    fn range(&self, ptr: u32, len: usize) -> Errno<core::ops::Range<usize>> {
        let start = ptr as usize;
        let end = start.checked_add(len).ok_or(errno::FAULT)?;
        if end > self.0.len() || i32::try_from(len).is_err() {
            return Err(errno::FAULT);
        }
        Ok(start..end)
    }
}

impl Memory for FakeMemory {
    fn read(&self, ptr: u32, into: &mut [u8]) -> Errno<()> {
        let range = self.range(ptr, into.len())?;
        into.copy_from_slice(&self.0[range]);
        Ok(())
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Errno<()> {
        let range = self.range(ptr, bytes.len())?;
        self.0[range].copy_from_slice(bytes);
        Ok(())
    }
}

/// What the fake kernel does with the next call to the file service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Answers it.
    Serve,
    /// Refuses it at once (never sent), as a full queue would.
    Refuse,
    /// The service ends with it taken: `PeerGone`.
    Lose,
    /// Answers bytes that are not the protocol.
    Garble,
}

/// The kernel, with the fake services and a record of what the shim did.
struct FakeKernel {
    fs: FakeFs,
    net: FakeNet,
    /// The console's answers to `Read`s, in order; `None`: no console.
    console: Option<VecDeque<console::Response>>,
    console_reads: Vec<u32>,
    fs_next: VecDeque<Next>,
    now: u64,
    slept: Vec<u64>,
    logs: Vec<String>,
    printed: Vec<(i32, Vec<u8>)>,
    stdin: Vec<u8>,
    /// Calls that reached any service.
    calls: usize,
}

impl FakeKernel {
    fn new(fs: FakeFs) -> FakeKernel {
        FakeKernel {
            fs,
            net: FakeNet::new(1000),
            console: None,
            console_reads: Vec::new(),
            fs_next: VecDeque::new(),
            now: 5_000_000_000,
            slept: Vec::new(),
            logs: Vec::new(),
            printed: Vec::new(),
            stdin: Vec::new(),
            calls: 0,
        }
    }
}

fn reply_with(reply: &mut [u8], answer: &[u8]) -> Result<usize, Error> {
    assert!(answer.len() <= atoll_abi::MAX_MESSAGE_LEN);
    reply
        .get_mut(..answer.len())
        .ok_or(Error::BufferTooSmall)?
        .copy_from_slice(answer);
    Ok(answer.len())
}

impl Kernel for FakeKernel {
    fn call(&mut self, handle: i32, request: &[u8], reply: &mut [u8]) -> Result<usize, Error> {
        assert!(request.len() <= atoll_abi::MAX_MESSAGE_LEN, "{request:?}");
        self.calls += 1;
        match handle {
            FS => {
                let request = postcard::from_bytes(request).unwrap();
                match self.fs_next.pop_front().unwrap_or(Next::Serve) {
                    Next::Serve => {}
                    Next::Refuse => return Err(Error::QueueFull),
                    Next::Lose => return Err(Error::PeerGone),
                    Next::Garble => return reply_with(reply, b"\xff\xff"),
                }
                let response = self.fs.serve(request);
                reply_with(reply, &postcard::to_allocvec(&response).unwrap())
            }
            NET => {
                let request = postcard::from_bytes(request).unwrap();
                let response = self.net.serve(request).ok_or(Error::PeerGone)?;
                reply_with(reply, &postcard::to_allocvec(&response).unwrap())
            }
            CONSOLE => {
                let console::Request::Read { max } = postcard::from_bytes(request).unwrap() else {
                    panic!("not a read");
                };
                self.console_reads.push(max);
                let answers = self.console.as_mut().ok_or(Error::BadHandle)?;
                let answer = answers.pop_front().ok_or(Error::PeerGone)?;
                reply_with(reply, &postcard::to_allocvec(&answer).unwrap())
            }
            _ => Err(Error::BadHandle),
        }
    }

    fn time(&mut self) -> u64 {
        self.now
    }

    fn sleep(&mut self, ns: u64) {
        self.slept.push(ns);
        self.now += ns;
    }

    fn log(&mut self, text: &str) {
        self.logs.push(text.into());
    }

    fn print(&mut self, stream: i32, bytes: &[u8]) {
        self.printed.push((stream, bytes.to_vec()));
    }

    fn stdin_read(&mut self, into: &mut [u8]) -> usize {
        let take = into.len().min(self.stdin.len());
        into[..take].copy_from_slice(&self.stdin[..take]);
        self.stdin.drain(..take);
        take
    }

    fn lookup(&mut self, name: &str) -> Option<i32> {
        (name == console::ENDPOINT && self.console.is_some()).then_some(CONSOLE)
    }
}

type Program = Shim<FakeKernel, FakeMemory>;

/// Addresses in the test program's memory.
const PATH: u32 = 0x100;
const OTHER_PATH: u32 = 0x600;
const IOVECS: u32 = 0xb00;
const OUT: u32 = 0xc00;
const EVENTS: u32 = 0xd00;
const BUFFER: u32 = 0x1_0000;

/// The preopens of most file tests: `/` (the whole file service) and
/// `/docs` (read-only, `/DOCS` on the same service).
fn preopens() -> Vec<Preopen> {
    vec![
        Preopen {
            guest: "/".into(),
            handle: FS,
            directory: "/".into(),
            read_only: false,
        },
        Preopen {
            guest: "/docs".into(),
            handle: FS,
            directory: "/DOCS".into(),
            read_only: true,
        },
    ]
}

/// A listener on the fake TCP/IP service.
fn listener(port: u16, nonblocking: bool) -> Listener {
    Listener {
        handle: NET,
        port,
        nonblocking,
    }
}

/// A program with these preopens and listeners, and the fake file service.
fn program(preopens: Vec<Preopen>, listeners: Vec<Listener>, fs: FakeFs) -> Program {
    let startup = Startup {
        args: vec!["prog".into(), "-v".into()],
        env: vec!["HOME=/".into()],
        preopens,
        listeners,
        boot_wall_clock_ns: 1_700_000_000_000_000_000,
        random_seed: 42,
    };
    Shim::new(startup, FakeKernel::new(fs), FakeMemory(vec![0; MEMORY]))
}

/// Helpers for the program's side of the calls.
impl Program {
    fn put(&mut self, at: u32, bytes: &[u8]) {
        self.memory.0[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }

    fn bytes(&self, at: u32, len: usize) -> Vec<u8> {
        self.memory.0[at as usize..at as usize + len].to_vec()
    }

    fn u32_at(&self, at: u32) -> u32 {
        u32::from_le_bytes(self.bytes(at, 4).try_into().unwrap())
    }

    fn u64_at(&self, at: u32) -> u64 {
        u64::from_le_bytes(self.bytes(at, 8).try_into().unwrap())
    }

    /// `path` at PATH: its pointer and length.
    fn path(&mut self, path: &str) -> (i32, i32) {
        self.put(PATH, path.as_bytes());
        (PATH as i32, path.len() as i32)
    }

    /// One iovec of `len` bytes at BUFFER, holding `data` first.
    fn iovec(&mut self, data: &[u8], len: u32) {
        let mut record = BUFFER.to_le_bytes().to_vec();
        record.extend_from_slice(&len.to_le_bytes());
        self.put(IOVECS, &record);
        self.put(BUFFER, data);
    }

    /// `path_open` in directory `fd`: the new descriptor or the errno.
    fn open(&mut self, fd: i32, path: &str, oflags: i32, rights: u64) -> Result<i32, i32> {
        let (ptr, len) = self.path(path);
        match self.path_open(fd, 0, ptr, len, oflags, rights as i64, -1, 0, OUT as i32) {
            0 => Ok(self.u32_at(OUT) as i32),
            code => Err(code),
        }
    }

    fn write(&mut self, fd: i32, data: &[u8]) -> Result<u32, i32> {
        self.iovec(data, data.len() as u32);
        match self.fd_write(fd, IOVECS as i32, 1, OUT as i32) {
            0 => Ok(self.u32_at(OUT)),
            code => Err(code),
        }
    }

    fn read(&mut self, fd: i32, len: u32) -> Result<Vec<u8>, i32> {
        self.iovec(&[], len);
        match self.fd_read(fd, IOVECS as i32, 1, OUT as i32) {
            0 => Ok(self.bytes(BUFFER, self.u32_at(OUT) as usize)),
            code => Err(code),
        }
    }

    fn seek(&mut self, fd: i32, offset: i64, whence: i32) -> Result<u64, i32> {
        match self.fd_seek(fd, offset, whence, OUT as i32) {
            0 => Ok(self.u64_at(OUT)),
            code => Err(code),
        }
    }

    /// `fd_fdstat_get`: (filetype, flags, rights).
    fn fdstat(&mut self, fd: i32) -> Result<(u8, u16, u64), i32> {
        match self.fd_fdstat_get(fd, OUT as i32) {
            0 => {
                let record = self.bytes(OUT, 24);
                Ok((
                    record[0],
                    u16::from_le_bytes([record[2], record[3]]),
                    self.u64_at(OUT + 8),
                ))
            }
            code => Err(code),
        }
    }
}
