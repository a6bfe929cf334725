//! test-storage-chaos: the QEMU fault campaign's injector and supervisor
//! (`image-builder chaos --qemu`, docs/reliability.md).
//!
//! It takes the number of faults and a seed as its arguments (WASI argv:
//! name, faults, seed). Once the reader (`test-storage-chaos-reader`) has
//! verified its first read, it injects faults one at a time into the storage
//! path and the console, kind drawn from a generator seeded with the seed,
//! each at a random moment (0-3 ms after the previous one's end, while the
//! reader's requests keep the stack busy):
//!
//! - the disk driver, the file system or the console killed and restarted;
//! - the disk driver stopped for up to 10 ms, then started;
//! - garbage sent to each of the three (bytes that no request decodes to,
//!   or a real request cut short);
//! - a garbage call to the file system (answered empty), a call larger than
//!   any message (`TooLarge`);
//! - hostile but well-formed requests: disk reads past the end or of a bad
//!   length, file reads past the end of a file and opens of missing files
//!   (each must get its error answer).
//!
//! After a kill or a stop it waits until the reader verifies another read
//! (recovery; more than [`STALL_NS`] is a stall). As supervisor it restarts a
//! service the kernel reports ended; a driver that ends by itself is a
//! violation (a garbage message must be an error answer, never a fault).
//! Every [`CHECKPOINT`] faults it logs `checkpoint N`; at the end one
//! `storage-chaos: report key=value...` line and `storage-chaos: passed` (no
//! violation, no stall, no corrupt read) or `storage-chaos: FAILED`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::ToString;
use alloc::vec::Vec;
use atoll_protocols::{block, fs};
use atoll_sdk::supervision::{self, Event, KERNEL_SENDER};
use atoll_sdk::{CallError, Endpoint, Error, Timeout, println};

atoll_sdk::entry!(main);

/// Faults between two checkpoints.
const CHECKPOINT: u64 = 500;
/// A kill or stop whose service does not serve the reader again within this
/// is a stall.
const STALL_NS: u64 = 10_000_000_000;
/// Violations logged one by one (all are counted).
const LOGGED: u64 = 20;
/// The first byte of every garbage message: as a postcard enum tag it is a
/// variant none of the protocols has, so garbage never decodes to a request
/// (a random `Write` would corrupt the disk the reader checks).
const NO_VARIANT: u8 = 0x7f;

const KINDS: [&str; 12] = [
    "kill-disk-driver",
    "kill-file-system",
    "kill-console",
    "stop-start-disk-driver",
    "garbage-to-disk-driver",
    "garbage-to-file-system",
    "garbage-to-console",
    "cut-request-to-file-system",
    "garbage-call-to-file-system",
    "oversized-call-to-file-system",
    "hostile-disk-read",
    "hostile-file-read",
];
const SERVICES: [&str; 3] = ["virtio-blk", "fat", "console"];

/// The reader's totals (its last note).
#[derive(Clone, Copy, Default)]
struct Totals {
    reads: u64,
    verified: u64,
    failed: u64,
    corrupt: u64,
    other: u64,
}

impl Totals {
    fn decode(note: &[u8]) -> Option<Totals> {
        if note.len() != 40 {
            return None;
        }
        let mut fields = note
            .as_chunks::<8>()
            .0
            .iter()
            .map(|chunk| u64::from_le_bytes(*chunk));
        Some(Totals {
            reads: fields.next()?,
            verified: fields.next()?,
            failed: fields.next()?,
            corrupt: fields.next()?,
            other: fields.next()?,
        })
    }
}

struct Campaign {
    rng: u64,
    reports: Endpoint,
    disk: Endpoint,
    files: Endpoint,
    console: Endpoint,
    sectors: u64,
    file_size: u64,
    reader: Totals,
    injected: [u64; KINDS.len()],
    restarts: u64,
    stalls: u64,
    violations: u64,
    driver_faults: u64,
    buffer: Vec<u8>,
}

fn main() {
    let (faults, seed) = arguments();
    let endpoints = (
        Endpoint::lookup(block::ENDPOINT),
        Endpoint::lookup(fs::ENDPOINT),
        Endpoint::lookup(atoll_protocols::console::ENDPOINT),
    );
    let (Ok(disk), Ok(files), Ok(console)) = endpoints else {
        println!("storage-chaos: missing a block, fs or console endpoint");
        return;
    };
    println!("storage-chaos: {faults} faults, seed {seed}");
    let mut campaign = Campaign {
        rng: splitmix(seed),
        reports: Endpoint::from_handle(1),
        disk,
        files,
        console,
        sectors: 0,
        file_size: 0,
        reader: Totals::default(),
        injected: [0; KINDS.len()],
        restarts: 0,
        stalls: 0,
        violations: 0,
        driver_faults: 0,
        buffer: alloc::vec![0u8; atoll_sdk::MAX_MESSAGE_LEN],
    };
    // Start when the reader has verified a read: the stack is up.
    if !campaign.await_progress() {
        println!("storage-chaos: FAILED: the reader never verified a read");
        return;
    }
    campaign.sectors = match campaign.disk.request(&block::Request::Capacity) {
        Ok(block::Response::Capacity { sectors }) => sectors,
        other => {
            println!("storage-chaos: FAILED: no disk capacity: {other:?}");
            return;
        }
    };
    campaign.file_size = match campaign.files.request(&fs::Request::Open {
        path: "/PATTERN.BIN".to_string(),
    }) {
        Ok(fs::Response::Entry(entry)) => entry.size,
        other => {
            println!("storage-chaos: FAILED: no /PATTERN.BIN: {other:?}");
            return;
        }
    };
    let started = atoll_sdk::time();
    for fault in 1..=faults {
        let pause = campaign.next() % 3_000_000;
        campaign.drain(Timeout::Nanos(pause));
        campaign.inject();
        if fault % CHECKPOINT == 0 {
            println!(
                "checkpoint {} at {fault} faults: reader {} verified, {} failed, {} corrupt",
                fault / CHECKPOINT,
                campaign.reader.verified,
                campaign.reader.failed,
                campaign.reader.corrupt
            );
        }
    }
    // The last fault's effects settle: one more verified read.
    // The last faults' effects settle: the reader and the console serve.
    campaign.recover(None);
    campaign.check_console(None);
    let millis = (atoll_sdk::time() - started) / 1_000_000;
    let mut line = alloc::format!("storage-chaos: report faults={faults}");
    for (name, count) in KINDS.iter().zip(campaign.injected) {
        line.push_str(&alloc::format!(" {name}={count}"));
    }
    let reader = campaign.reader;
    line.push_str(&alloc::format!(
        " restarts={} stalls={} violations={} driver-faults={} reads={} verified={} failed={} corrupt={} refused={} guest-ms={millis}",
        campaign.restarts,
        campaign.stalls,
        campaign.violations,
        campaign.driver_faults,
        reader.reads,
        reader.verified,
        reader.failed,
        reader.corrupt,
        reader.other
    ));
    println!("{line}");
    if campaign.violations == 0 && campaign.stalls == 0 && reader.corrupt == 0 && reader.other == 0
    {
        println!("storage-chaos: passed");
    } else {
        println!("storage-chaos: FAILED");
    }
    let _ = supervision::stop("reader");
}

impl Campaign {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn violation(&mut self, what: core::fmt::Arguments<'_>) {
        self.violations += 1;
        if self.violations <= LOGGED {
            println!("VIOLATION: {what}");
        }
    }

    /// Reads reports until `timeout`: the reader's notes and the kernel's.
    fn drain(&mut self, timeout: Timeout) {
        let mut timeout = timeout;
        loop {
            let received = match self.reports.receive(&mut self.buffer, timeout) {
                Ok(received) => (received.sender, received.message.to_vec()),
                Err(Error::TimedOut | Error::WouldBlock) => return,
                Err(error) => {
                    self.violation(format_args!("receive failed: {error}"));
                    return;
                }
            };
            self.take(received.0, &received.1);
            // Then whatever is queued, without waiting.
            timeout = Timeout::Poll;
        }
    }

    fn take(&mut self, sender: u32, message: &[u8]) {
        if sender == KERNEL_SENDER {
            match postcard::from_bytes::<Event>(message) {
                Ok(event) => {
                    // A service ended by itself: a fault no garbage may cause.
                    self.driver_faults += 1;
                    self.violation(format_args!("{} ended: {:?}", event.service, event.outcome));
                    if let Err(error) = supervision::restart(&event.service) {
                        self.violation(format_args!(
                            "restart of {} refused: {error}",
                            event.service
                        ));
                    }
                }
                Err(_) => self.violation(format_args!("malformed report from the kernel")),
            }
            return;
        }
        if let Some(totals) = Totals::decode(message) {
            // Notes are sent in order; a dropped one is covered by the next.
            if totals.reads >= self.reader.reads {
                self.reader = totals;
            }
        }
    }

    /// Waits until the reader verifies one more read; false after STALL_NS.
    fn await_progress(&mut self) -> bool {
        // A note of a read in flight at a fault proves nothing: two reads
        // later, and one more verified.
        let (reads, verified) = (self.reader.reads, self.reader.verified);
        let deadline = atoll_sdk::time() + STALL_NS;
        while self.reader.reads < reads + 2 || self.reader.verified == verified {
            let now = atoll_sdk::time();
            if now >= deadline {
                return false;
            }
            self.drain(Timeout::Nanos(deadline - now));
        }
        true
    }

    /// After fault `kind` (None: the end of the campaign), the storage path
    /// serves the reader again.
    fn recover(&mut self, kind: Option<usize>) {
        if !self.await_progress() {
            self.stalls += 1;
            let after = kind.map_or("the last fault", |kind| KINDS[kind]);
            self.violation(format_args!(
                "the reader verified nothing for 10 s after {after}"
            ));
        }
    }

    /// The console serves again: an empty `Write` is answered `Done` (a call
    /// ended by the console's restart is tried again) within STALL_NS.
    fn check_console(&mut self, kind: Option<usize>) {
        use atoll_protocols::console;
        let deadline = atoll_sdk::time() + STALL_NS;
        let request = console::Request::Write(alloc::string::String::new());
        loop {
            match self.console.request::<_, console::Response>(&request) {
                Ok(console::Response::Done) => return,
                Err(CallError::Kernel(Error::PeerGone)) => {}
                other => {
                    self.violation(format_args!("the console answered {other:?} to a write"));
                    return;
                }
            }
            if atoll_sdk::time() >= deadline {
                self.stalls += 1;
                let after = kind.map_or("the last fault", |kind| KINDS[kind]);
                self.violation(format_args!(
                    "the console did not serve for 10 s after {after}"
                ));
                return;
            }
            self.drain(Timeout::Nanos(1_000_000));
        }
    }

    /// A message no request decodes to: the invalid tag, then random bytes.
    fn garbage(&mut self) -> Vec<u8> {
        let len = 1 + (self.next() % 200) as usize;
        let mut bytes = Vec::with_capacity(len);
        bytes.push(NO_VARIANT);
        while bytes.len() < len {
            bytes.push(self.next() as u8);
        }
        bytes
    }

    fn inject(&mut self) {
        let kind = (self.next() % KINDS.len() as u64) as usize;
        self.injected[kind] += 1;
        match kind {
            0..=2 => {
                let name = SERVICES[kind];
                match supervision::restart(name) {
                    Ok(()) => self.restarts += 1,
                    Err(error) => {
                        self.violation(format_args!("restart of {name} refused: {error}"))
                    }
                }
                if kind == 2 {
                    self.check_console(Some(kind));
                } else {
                    self.recover(Some(kind));
                }
            }
            3 => {
                if let Err(error) = supervision::stop("virtio-blk") {
                    self.violation(format_args!("stop of virtio-blk refused: {error}"));
                }
                let pause = self.next() % 10_000_000;
                self.drain(Timeout::Nanos(pause));
                match supervision::start("virtio-blk") {
                    Ok(()) => self.restarts += 1,
                    Err(error) => {
                        self.violation(format_args!("start of virtio-blk refused: {error}"))
                    }
                }
                self.recover(Some(kind));
            }
            4..=6 => {
                let target = [self.disk, self.files, self.console][kind - 4];
                let garbage = self.garbage();
                // A full queue may refuse it: that is an answer too.
                match target.send(&garbage) {
                    Ok(()) | Err(Error::QueueFull | Error::PeerGone) => {}
                    Err(error) => {
                        self.violation(format_args!("{}: send gave {error}", KINDS[kind]))
                    }
                }
            }
            7 => {
                // A real request cut short.
                let request = fs::Request::Read {
                    path: "/PATTERN.BIN".to_string(),
                    offset: self.next() % 100_000,
                    len: fs::MAX_DATA,
                };
                let Ok(mut bytes) = postcard::to_allocvec(&request) else {
                    return;
                };
                let keep = 1 + (self.next() as usize) % (bytes.len() - 1);
                bytes.truncate(keep);
                self.expect_empty_answer(kind, &bytes);
            }
            8 => {
                let garbage = self.garbage();
                self.expect_empty_answer(kind, &garbage);
            }
            9 => {
                let oversized = alloc::vec![NO_VARIANT; atoll_sdk::MAX_MESSAGE_LEN + 1 + (self.next() % 4096) as usize];
                let mut answer = [0u8; 16];
                match self.files.call(&oversized, &mut answer) {
                    Err(Error::TooLarge) => {}
                    other => {
                        let other = other.map(<[u8]>::len);
                        self.violation(format_args!("oversized call answered {other:?}"));
                    }
                }
            }
            10 => {
                let (sector, count) = match self.next() % 3 {
                    0 => (self.sectors + self.next() % 1_000_000, 1),
                    1 => (self.next() % self.sectors.max(1), 0),
                    _ => (
                        self.next() % self.sectors.max(1),
                        block::MAX_SECTORS + 1 + (self.next() % 1000) as u32,
                    ),
                };
                let sectors = self.sectors;
                match self
                    .disk
                    .request::<_, block::Response>(&block::Request::Read { sector, count })
                {
                    Ok(block::Response::Error(_)) | Err(CallError::Kernel(Error::PeerGone)) => {}
                    other => self.violation(format_args!(
                        "disk read of {count} sectors at {sector} of {sectors} answered {other:?}"
                    )),
                }
            }
            _ => {
                let past = self.file_size + self.next() % 1_000_000;
                if self.next() % 2 == 0 {
                    let request = fs::Request::Read {
                        path: "/PATTERN.BIN".to_string(),
                        offset: past,
                        len: (self.next() % 100_000) as u32,
                    };
                    match self.files.request::<_, fs::Response>(&request) {
                        Ok(fs::Response::Data(data)) if data.is_empty() => {}
                        Ok(fs::Response::Error(fs::Error::Device | fs::Error::NoVolume))
                        | Err(CallError::Kernel(Error::PeerGone)) => {}
                        other => {
                            self.violation(format_args!("file read at {past} answered {other:?}"))
                        }
                    }
                } else {
                    let request = fs::Request::Open {
                        path: alloc::format!("/MISSING{}.BIN", past % 1000),
                    };
                    match self.files.request::<_, fs::Response>(&request) {
                        Ok(fs::Response::Error(
                            fs::Error::NotFound | fs::Error::Device | fs::Error::NoVolume,
                        ))
                        | Err(CallError::Kernel(Error::PeerGone)) => {}
                        other => self
                            .violation(format_args!("open of a missing file answered {other:?}")),
                    }
                }
            }
        }
    }

    /// A call the file system cannot decode: answered empty (or the call
    /// ended by a restart of the file system).
    fn expect_empty_answer(&mut self, kind: usize, request: &[u8]) {
        let mut answer = [0u8; 64];
        match self.files.call(request, &mut answer) {
            Ok([]) | Err(Error::PeerGone) => {}
            other => {
                let other = other.map(<[u8]>::len);
                self.violation(format_args!("{}: answered {other:?}", KINDS[kind]));
            }
        }
    }
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

fn arguments() -> (u64, u64) {
    let mut values = [1000u64, 1];
    let arguments = atoll_sdk::args::arguments();
    for (value, text) in values.iter_mut().zip(arguments.iter().skip(1)) {
        if let Ok(parsed) = text.parse() {
            *value = parsed;
        }
    }
    (values[0], values[1])
}
