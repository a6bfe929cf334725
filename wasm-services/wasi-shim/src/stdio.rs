//! The process-wide part of WASI preview1: arguments and environment, the
//! clocks, `random_get`, `sched_yield`, stdin/stdout/stderr, `poll_oneoff`,
//! and the stubs of every function Atoll does not provide.
//!
//! What is here: `fd_write` on 1 and 2 (through the kernel's `print`, which
//! prints each line the bytes complete with the service's name), `fd_read`
//! on 0 (from the console service when the service uses its endpoint, else
//! the platform's own stdin through `stdin_read`), the descriptor queries a
//! libc makes at start-up, and `poll_oneoff` for clocks (a `sleep`) and
//! descriptors (sockets wait in their TCP/IP service, `sockets.rs`). A stub
//! returns `ENOSYS` (or `EBADF`) and logs one line the first time.
//!
//! What is not here: `proc_exit` (the kernel's `exit`, in `wasm.rs`), files
//! and sockets on descriptors 3 and up (`files.rs`, `sockets.rs`).

use crate::files::FIRST;
use crate::program::{MAX_VECTORS, Memory, append, at, iovec, store, vector_count};
use crate::sockets::{self, Subscription};
use crate::{Errno, Kernel, Shim, code};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use atoll_abi::console;
use atoll_abi::wasi::{FUNCTIONS, errno};

/// The most bytes one `fd_write` to stdout or stderr takes (a shorter write
/// is legal; libcs loop).
const MAX_WRITE: usize = 4096;
/// The most stdin bytes one `fd_read` asks for (the console's answer must
/// fit a message; the platform's stdin gives as much at a time).
const MAX_STDIN_READ: u32 = 3072;

/// Clock ids of preview1.
const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;

/// `filetype::character_device`.
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
/// Rights: `fd_read` (bit 1), `fd_write` (bit 6), `poll_fd_readwrite` (bit 27).
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_POLL: u64 = 1 << 27;

/// Subscription and event record sizes and tags.
const SUBSCRIPTION_LEN: usize = 48;
const EVENT_LEN: usize = 32;
pub(crate) const EVENT_CLOCK: u8 = 0;
pub(crate) const EVENT_FD_READ: u8 = 1;
pub(crate) const EVENT_FD_WRITE: u8 = 2;
/// `subclockflags::subscription_clock_abstime`.
const ABSTIME: u16 = 1;

/// Bytes of `random_get` made and written at a time (a multiple of 8: the
/// generator's words fall as in one piece).
const RANDOM_CHUNK: usize = 256;

/// One event to report.
pub(crate) struct Event {
    pub(crate) userdata: u64,
    pub(crate) error: u16,
    pub(crate) kind: u8,
}

/// Writes `fired` to the event array at `events` and their number at `count`.
pub(crate) fn write_events(
    memory: &mut impl Memory,
    events: u32,
    count: u32,
    fired: &[Event],
) -> Errno<()> {
    for (index, event) in fired.iter().enumerate() {
        let mut record = [0u8; EVENT_LEN];
        record[0..8].copy_from_slice(&event.userdata.to_le_bytes());
        record[8..10].copy_from_slice(&event.error.to_le_bytes());
        record[10] = event.kind;
        store(
            memory,
            at(events, index.saturating_mul(EVENT_LEN))?,
            &record,
        )?;
    }
    let total = u32::try_from(fired.len()).map_err(|_| errno::INVAL)?;
    store(memory, count, &total.to_le_bytes())
}

/// What `poll_oneoff` does after reading its subscriptions.
enum Polled {
    /// Report these events, after sleeping until the time given.
    Events(Vec<Event>, u64),
    /// Wait on these sockets; the clocks' userdata fire at the timeout.
    Sockets(Vec<Subscription>, Vec<u64>, Option<u32>),
}

impl<K: Kernel, M: Memory> Shim<K, M> {
    /// Writes a NUL-terminated string list as `*_get` does: pointers at
    /// `list`, strings at `buffer`.
    fn write_strings(&mut self, environment: bool, list: i32, buffer: i32) -> Errno<()> {
        let strings = if environment { &self.env } else { &self.args };
        let (list, buffer) = (list.cast_unsigned(), buffer.cast_unsigned());
        let mut offset = 0usize;
        for (index, string) in strings.iter().enumerate() {
            let address = at(buffer, offset)?;
            store(
                &mut self.memory,
                at(list, index.saturating_mul(4))?,
                &address.to_le_bytes(),
            )?;
            store(&mut self.memory, address, string.as_bytes())?;
            store(&mut self.memory, at(buffer, offset + string.len())?, &[0])?;
            offset += string.len() + 1;
        }
        Ok(())
    }

    /// Writes the count and total size (with NULs) of a string list.
    fn write_sizes(&mut self, environment: bool, count_ptr: i32, size_ptr: i32) -> Errno<()> {
        let strings = if environment { &self.env } else { &self.args };
        let count = u32::try_from(strings.len()).map_err(|_| errno::TOO_BIG)?;
        let size: usize = strings.iter().map(|string| string.len() + 1).sum();
        let size = u32::try_from(size).map_err(|_| errno::TOO_BIG)?;
        store(
            &mut self.memory,
            count_ptr.cast_unsigned(),
            &count.to_le_bytes(),
        )?;
        store(
            &mut self.memory,
            size_ptr.cast_unsigned(),
            &size.to_le_bytes(),
        )
    }

    pub fn args_get(&mut self, argv: i32, buffer: i32) -> i32 {
        code(self.write_strings(false, argv, buffer))
    }

    pub fn args_sizes_get(&mut self, count: i32, size: i32) -> i32 {
        code(self.write_sizes(false, count, size))
    }

    pub fn environ_get(&mut self, environ: i32, buffer: i32) -> i32 {
        code(self.write_strings(true, environ, buffer))
    }

    pub fn environ_sizes_get(&mut self, count: i32, size: i32) -> i32 {
        code(self.write_sizes(true, count, size))
    }

    /// The time on clock `id` in nanoseconds.
    fn clock_now(&mut self, id: i32) -> Errno<u64> {
        let now = self.kernel.time();
        match id {
            CLOCK_MONOTONIC => Ok(now),
            CLOCK_REALTIME => Ok(self.boot_wall_clock_ns.saturating_add(now)),
            // Process and thread CPU time: not kept per service.
            2 | 3 => Err(errno::NOTSUP),
            _ => Err(errno::INVAL),
        }
    }

    pub fn clock_res_get(&mut self, id: i32, resolution: i32) -> i32 {
        code(self.clock_now(id).and_then(|_| {
            store(
                &mut self.memory,
                resolution.cast_unsigned(),
                &1u64.to_le_bytes(),
            )
        }))
    }

    pub fn clock_time_get(&mut self, id: i32, _precision: i64, time: i32) -> i32 {
        code(
            self.clock_now(id)
                .and_then(|now| store(&mut self.memory, time.cast_unsigned(), &now.to_le_bytes())),
        )
    }

    pub fn fd_fdstat_get(&mut self, fd: i32, stat: i32) -> i32 {
        let rights = match fd {
            0 => RIGHT_FD_READ | RIGHT_POLL,
            1 | 2 => RIGHT_FD_WRITE | RIGHT_POLL,
            _ => return self.file_fdstat_get(fd, stat),
        };
        let mut record = [0u8; 24];
        record[0] = FILETYPE_CHARACTER_DEVICE;
        record[8..16].copy_from_slice(&rights.to_le_bytes());
        code(store(&mut self.memory, stat.cast_unsigned(), &record))
    }

    /// `fd_read`: stdin, or a file or socket.
    pub fn fd_read(&mut self, fd: i32, iovs: i32, count: i32, read: i32) -> i32 {
        if fd >= FIRST {
            return self.file_read(fd, iovs, count, read);
        }
        if fd != 0 {
            return errno::BADF;
        }
        code(self.read_stdin(iovs.cast_unsigned(), count, read.cast_unsigned()))
    }

    /// stdin: from the console service when the service uses its endpoint
    /// (the first non-empty `iovec` is filled; a short read is what a
    /// terminal gives), else from the platform's own stdin (the hosted
    /// core's; empty in QEMU).
    fn read_stdin(&mut self, iovs: u32, count: i32, read: u32) -> Errno<()> {
        self.memory.check(read, 4)?;
        let console = *self
            .console
            .get_or_insert_with(|| self.kernel.lookup(console::ENDPOINT));
        let Some(console) = console else {
            let count = (count.cast_unsigned() as usize).min(MAX_VECTORS);
            let mut found = (0, 0);
            for index in 0..count {
                let (base, len) = iovec(&self.memory, iovs, index)?;
                if len != 0 {
                    found = (base, len);
                    break;
                }
            }
            let (base, len) = found;
            let mut input = vec![0u8; len.min(MAX_STDIN_READ) as usize];
            let got = if input.is_empty() {
                0
            } else {
                self.kernel.stdin_read(&mut input)
            };
            input.truncate(got);
            store(&mut self.memory, base, &input)?;
            let total = u32::try_from(input.len()).map_err(|_| errno::IO)?;
            return store(&mut self.memory, read, &total.to_le_bytes());
        };
        let count = vector_count(count)?;
        for index in 0..count {
            let (base, len) = iovec(&self.memory, iovs, index)?;
            if len == 0 {
                continue;
            }
            let len = len.min(MAX_STDIN_READ);
            self.memory.check(base, len as usize)?;
            return self.ask_console(console, base, len, read);
        }
        // Nothing to fill: a read of 0 bytes.
        store(&mut self.memory, read, &0u32.to_le_bytes())
    }

    /// Asks the console for up to `len` bytes, into `buffer`, their count at
    /// `read` (a terminal's `\r` becomes `\n`).
    fn ask_console(&mut self, console: i32, buffer: u32, len: u32, read: u32) -> Errno<()> {
        let request = console::Request::Read { max: len };
        let message = postcard::to_allocvec(&request).map_err(|_| errno::IO)?;
        let answer = self
            .kernel
            .call(console, &message, &mut self.reply)
            .map_err(|_| errno::IO)?;
        let reply = self.reply.get(..answer).ok_or(errno::IO)?;
        match postcard::from_bytes::<console::Response>(reply) {
            Ok(console::Response::Input(input)) => {
                let text: Vec<u8> = input
                    .iter()
                    .take(len as usize)
                    .map(|&byte| if byte == b'\r' { b'\n' } else { byte })
                    .collect();
                let total = u32::try_from(text.len()).unwrap_or(0).to_le_bytes();
                store(&mut self.memory, buffer, &text)?;
                store(&mut self.memory, read, &total)
            }
            Ok(console::Response::Busy) => Err(errno::AGAIN),
            _ => Err(errno::IO),
        }
    }

    /// `fd_write`: stdout and stderr, or a file or socket.
    pub fn fd_write(&mut self, fd: i32, iovs: i32, count: i32, written: i32) -> i32 {
        if fd >= FIRST {
            return self.file_write(fd, iovs, count, written);
        }
        if fd != 1 && fd != 2 {
            return errno::BADF;
        }
        let gathered = (|| -> Errno<Vec<u8>> {
            let count = vector_count(count)?;
            let mut gathered = Vec::new();
            // Only what is taken is checked, as the kernel did: the buffers
            // after a full write are never looked at.
            for index in 0..count {
                let (base, len) = iovec(&self.memory, iovs.cast_unsigned(), index)?;
                append(&self.memory, &mut gathered, base, len, MAX_WRITE)?;
                if gathered.len() == MAX_WRITE {
                    break;
                }
            }
            let total = u32::try_from(gathered.len()).map_err(|_| errno::INVAL)?;
            store(
                &mut self.memory,
                written.cast_unsigned(),
                &total.to_le_bytes(),
            )?;
            Ok(gathered)
        })();
        match gathered {
            Ok(bytes) => {
                self.kernel.print(fd, &bytes);
                errno::SUCCESS
            }
            Err(errno) => errno,
        }
    }

    /// `poll_oneoff`: clock subscriptions sleep; descriptor subscriptions on
    /// stdin/stdout/stderr and files are ready at once (stdin at end of
    /// file), on sockets they wait in the TCP/IP service when nothing else
    /// is ready, others fail with `EBADF` in their event.
    pub fn poll_oneoff(
        &mut self,
        subscriptions: i32,
        events: i32,
        count: i32,
        event_count: i32,
    ) -> i32 {
        let now = self.kernel.time();
        let (events, event_count) = (events.cast_unsigned(), event_count.cast_unsigned());
        let plan = self.plan_poll(subscriptions.cast_unsigned(), events, count, now);
        let (fired, until) = match plan {
            Ok(Polled::Events(fired, until)) => (fired, until),
            Ok(Polled::Sockets(waiting, clocks, timeout)) => {
                return self.operation(None, |files, memory, exchange| {
                    sockets::poll(
                        files,
                        memory,
                        exchange,
                        &waiting,
                        &clocks,
                        timeout,
                        events,
                        event_count,
                    )
                });
            }
            Err(errno) => return errno,
        };
        // The events are written now; the program only sees them after the
        // sleep.
        if let Err(errno) = write_events(&mut self.memory, events, event_count, &fired) {
            return errno;
        }
        if until > now {
            self.kernel.sleep(until - now);
        }
        errno::SUCCESS
    }

    fn plan_poll(
        &mut self,
        subscriptions: u32,
        events: u32,
        count: i32,
        now: u64,
    ) -> Errno<Polled> {
        let count = count.cast_unsigned() as usize;
        if count == 0 || count > MAX_VECTORS {
            return Err(errno::INVAL);
        }
        // Realtime deadlines become monotonic ones by subtracting the
        // wall-clock time at boot.
        let boot_wall_clock = self.boot_wall_clock_ns;
        // Bounds of the whole output array, before anything is written.
        self.memory.check(events, count * EVENT_LEN)?;
        let mut waiting = Vec::new();
        let mut ready = Vec::new();
        let mut clocks = Vec::new();
        for index in 0..count {
            let mut record = [0u8; SUBSCRIPTION_LEN];
            self.memory
                .read(at(subscriptions, index * SUBSCRIPTION_LEN)?, &mut record)?;
            let word = |at: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&record[at..at + 8]);
                u64::from_le_bytes(bytes)
            };
            let userdata = word(0);
            // The low 32 bits of the word at 16: the clock id or the fd.
            let id = (word(16) as u32).cast_signed();
            match record[8] {
                EVENT_CLOCK => {
                    let timeout = word(24);
                    let flags = u16::from(record[40]);
                    let deadline = if flags & ABSTIME != 0 {
                        let offset = if id == CLOCK_REALTIME {
                            boot_wall_clock
                        } else {
                            0
                        };
                        timeout.saturating_sub(offset)
                    } else {
                        now.saturating_add(timeout)
                    };
                    if id != CLOCK_REALTIME && id != CLOCK_MONOTONIC {
                        ready.push(Event {
                            userdata,
                            error: errno::INVAL as u16,
                            kind: EVENT_CLOCK,
                        });
                    } else {
                        clocks.push((deadline, userdata));
                    }
                }
                kind @ (EVENT_FD_READ | EVENT_FD_WRITE) => {
                    let fd = id;
                    let found = if fd >= FIRST {
                        sockets::readiness(&self.files, fd)
                    } else if (kind == EVENT_FD_READ && fd == 0)
                        || (kind == EVENT_FD_WRITE && (fd == 1 || fd == 2))
                    {
                        Ok(false)
                    } else {
                        Err(errno::BADF)
                    };
                    match found {
                        Ok(true) => waiting.push(Subscription {
                            userdata,
                            fd,
                            write: kind == EVENT_FD_WRITE,
                        }),
                        Ok(false) => ready.push(Event {
                            userdata,
                            error: 0,
                            kind,
                        }),
                        Err(code) => ready.push(Event {
                            userdata,
                            error: u16::try_from(code).unwrap_or(u16::MAX),
                            kind,
                        }),
                    }
                }
                _ => return Err(errno::INVAL),
            }
        }
        if !ready.is_empty() {
            // Clocks already expired are reported with the ready descriptors.
            ready.extend(clocks.iter().filter(|(deadline, _)| *deadline <= now).map(
                |(_, userdata)| Event {
                    userdata: *userdata,
                    error: 0,
                    kind: EVENT_CLOCK,
                },
            ));
            return Ok(Polled::Events(ready, now));
        }
        let soonest = clocks.iter().map(|(deadline, _)| *deadline).min();
        let earliest = soonest.unwrap_or(now);
        let fired: Vec<Event> = clocks
            .iter()
            .filter(|(deadline, _)| *deadline <= earliest)
            .map(|(_, userdata)| Event {
                userdata: *userdata,
                error: 0,
                kind: EVENT_CLOCK,
            })
            .collect();
        if !waiting.is_empty() {
            // The clocks become the wait's timeout, in whole milliseconds
            // (rounded up).
            let timeout = soonest.map(|deadline| {
                let ns = deadline.saturating_sub(now);
                u32::try_from(ns.div_ceil(1_000_000)).unwrap_or(u32::MAX)
            });
            let userdata = fired.iter().map(|event| event.userdata).collect();
            return Ok(Polled::Sockets(waiting, userdata, timeout));
        }
        Ok(Polled::Events(fired, earliest))
    }

    /// `sched_yield`: a sleep of 0 lets the other services run.
    pub fn sched_yield(&mut self) -> i32 {
        self.kernel.sleep(0);
        errno::SUCCESS
    }

    /// Fills the buffer from the program's generator (xorshift64*, seeded
    /// by the kernel per service and boot). Not for cryptography.
    pub fn random_get(&mut self, buffer: i32, len: i32) -> i32 {
        let (buffer, len) = (buffer.cast_unsigned(), len.cast_unsigned() as usize);
        if let Err(errno) = self.memory.check(buffer, len) {
            return errno;
        }
        let mut chunk = [0u8; RANDOM_CHUNK];
        let mut done = 0usize;
        while done < len {
            let take = (len - done).min(RANDOM_CHUNK);
            let part = &mut chunk[..take];
            for word in part.chunks_mut(8) {
                self.random = next_random(self.random);
                let bytes = self.random.to_le_bytes();
                word.copy_from_slice(&bytes[..word.len()]);
            }
            let written = at(buffer, done).and_then(|ptr| store(&mut self.memory, ptr, part));
            if let Err(errno) = written {
                return errno;
            }
            done += take;
        }
        errno::SUCCESS
    }

    /// The stub for preview1 function `name` (`None` for a name not in
    /// `wasi::FUNCTIONS`): `EBADF` when its descriptor argument `fd` is not
    /// stdio and not open, else `ENOSYS`; one log line per function.
    pub fn stub(&mut self, name: &str, fd: Option<i32>) -> i32 {
        let errno = match fd {
            Some(fd) if !(0..=2).contains(&fd) && !self.files.is_open(fd) => errno::BADF,
            _ => errno::NOSYS,
        };
        let Some(index) = FUNCTIONS.iter().position(|function| function.name == name) else {
            return errno;
        };
        let bit = 1u64 << (index % 64);
        if self.warned & bit == 0 {
            self.warned |= bit;
            let returned = if errno == errno::BADF {
                "EBADF"
            } else {
                "ENOSYS"
            };
            let line: String = format!("WASI {name} is not supported, returned {returned}");
            self.kernel.log(&line);
        }
        errno
    }
}

/// xorshift64* step.
fn next_random(mut state: u64) -> u64 {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
