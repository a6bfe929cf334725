//! test-chaos-supervisor: the fault campaign's injector and supervisor
//! (`image-builder chaos`, docs/reliability.md).
//!
//! It takes the number of faults and a seed as its arguments (WASI argv:
//! name, faults, seed), waits until every client has reported once, then
//! injects faults one at a time, kind and victim drawn from a generator
//! seeded with the seed: faults the victims commit themselves when armed
//! (traps, memory bomb, a call held for ever, an endless loop, garbage and
//! oversized answers, capability misuse, random host calls; see
//! `tests/systems/chaos/victim.wat`) and faults it causes through `control`
//! (a victim killed at any moment, restart storms ending in a stop and a
//! start). As supervisor it restarts every victim the kernel reports ended,
//! and checks, as the campaign goes:
//!
//! - each trap's reason is the one its kind must give, and only armed
//!   victims end (an uninvolved service ending is a violation);
//! - each armed fault completes within [`STALL_NS`] (else it is a stall);
//! - every client reports progress between two checkpoints (else a hang);
//! - the victims' own checks of the kernel's answers (their violations).
//!
//! At every [`CHECKPOINT`] faults, with no fault pending, it logs
//! `checkpoint N` (image-builder samples the kernel heap there). When all
//! faults are injected, it tells the clients to stop, logs one `report`
//! line of `key=value` counts, stops the servers and returns.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use atoll_sdk::supervision::{self, Event, KERNEL_SENDER, Outcome};
use atoll_sdk::{Endpoint, Error, Received, Timeout, println};

atoll_sdk::entry!(main);

const VICTIMS: [&str; 3] = ["victim-a", "victim-b", "victim-c"];
/// Services that are never a fault's target.
const SERVERS: [&str; 1] = ["steady"];
/// Clients that must report before the campaign starts.
const CLIENTS: usize = 3;
/// Faults between two checkpoints.
const CHECKPOINT: u64 = 1000;
/// An armed fault not completed after this long is a stall.
const STALL_NS: u64 = 2_000_000_000;
/// How long a victim spins before it is killed.
const SPIN_NS: u64 = 200_000;
/// Violations logged one by one (all are counted).
const LOGGED: u64 = 20;

/// Fault kinds: 0-9 the victims commit when armed (their numbers are the
/// victim's), 10-11 the supervisor causes, 12 both (the victim leaves a call
/// unanswered, the supervisor swaps it: the kernel answers the call).
const KINDS: [&str; 13] = [
    "unreachable",
    "out-of-bounds",
    "divide-by-zero",
    "stack-exhaustion",
    "memory-bomb",
    "killed-mid-call",
    "infinite-loop",
    "garbage-answers",
    "capability-misuse",
    "random-host-calls",
    "killed-any-time",
    "restart-storm",
    "swapped-mid-call",
];
const HELD: usize = 5;
const SPINNING: usize = 6;
const KILLED: usize = 10;
const STORM: usize = 11;
const SWAPPED: usize = 12;

/// The victim's own module, swapped in for itself (assembled by build.rs).
const VICTIM_MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/victim.wasm"));

/// The kind number the victim knows a fault by.
fn victim_kind(kind: usize) -> usize {
    if kind == SWAPPED { 10 } else { kind }
}

/// The trap reason each trapping kind must give (wasmi's messages).
fn expected_reason(kind: usize, reason: &str) -> bool {
    match kind {
        0 => reason.contains("unreachable"),
        1 => reason.contains("out of bounds"),
        2 => reason.contains("divide by zero"),
        3 => reason.contains("call stack exhausted"),
        4 => reason.contains("out of bounds") || reason.contains("growth"),
        _ => false,
    }
}

/// An armed fault not yet completed.
struct Pending {
    victim: usize,
    kind: usize,
    since: u64,
    /// When a spinning victim said it started.
    spinning_since: Option<u64>,
    /// The swap of a swapped-mid-call fault was asked for, of the victim
    /// with this sender id (the one that said it holds the call): its next
    /// start note is its new version's. Start notes of other victims (one
    /// restarted by an earlier fault may start only now) do not count: taking
    /// one for the swap's end armed the next fault in the old version, whose
    /// armed state the swap then dropped (seed 8's stalls).
    swap_asked: Option<u32>,
}

/// A client's last report.
struct Client {
    sender: u32,
    stream: bool,
    reports: u64,
    reports_at_checkpoint: u64,
    served: u64,
    failed: u64,
    wrong: u64,
    finished: bool,
}

struct Campaign {
    faults: u64,
    rng: u64,
    victims: [Endpoint; 3],
    injected: [u64; 13],
    total: u64,
    restarts: u64,
    swaps: u64,
    traps: u64,
    stalls: u64,
    violations: u64,
    victim_violations: u64,
    checkpoints: u64,
    pending: Option<Pending>,
    clients: Vec<Client>,
    started: bool,
    finishing: bool,
}

fn main() {
    let reports = Endpoint::from_handle(1);
    let (faults, seed) = arguments();
    let mut victims = [Endpoint::from_handle(0); 3];
    for (endpoint, name) in victims.iter_mut().zip(VICTIMS) {
        match Endpoint::lookup(name) {
            Ok(found) => *endpoint = found,
            Err(error) => {
                println!("no endpoint {name}: {error}");
                return;
            }
        }
    }
    println!("campaign: {faults} faults, seed {seed}");
    let mut campaign = Campaign {
        faults,
        rng: splitmix(seed),
        victims,
        injected: [0; 13],
        total: 0,
        restarts: 0,
        swaps: 0,
        traps: 0,
        stalls: 0,
        violations: 0,
        victim_violations: 0,
        checkpoints: 0,
        pending: None,
        clients: Vec::with_capacity(CLIENTS),
        started: false,
        finishing: false,
    };
    let mut buffer = alloc::vec![0u8; atoll_sdk::MAX_MESSAGE_LEN];
    loop {
        if campaign.finishing && campaign.clients.iter().all(|client| client.finished) {
            break;
        }
        let mut timeout = Timeout::Forever;
        if campaign.started && !campaign.finishing && campaign.pending.is_none() {
            if campaign.total == campaign.checkpoints * CHECKPOINT {
                campaign.checkpoint();
            }
            if campaign.total == campaign.faults {
                if !campaign.total.is_multiple_of(CHECKPOINT) {
                    campaign.checkpoint();
                }
                campaign.finishing = true;
                println!("all {} faults injected", campaign.total);
            } else {
                campaign.inject();
                // Faults caused through `control` are done at once: look at
                // one message without waiting, then inject the next.
                timeout = Timeout::Poll;
            }
        }
        if let Some(pending) = &campaign.pending {
            let now = atoll_sdk::time();
            let until = match pending.spinning_since {
                Some(at) => at + SPIN_NS,
                None => pending.since + STALL_NS,
            };
            timeout = Timeout::Nanos(until.saturating_sub(now));
        }
        match reports.receive(&mut buffer, timeout) {
            Ok(received) => campaign.handle(received),
            Err(Error::TimedOut | Error::WouldBlock) => campaign.timed_out(),
            Err(error) => campaign.violation(format_args!("receive failed: {error}")),
        }
    }
    let mut line = alloc::format!("report faults={}", campaign.total);
    for (name, count) in KINDS.iter().zip(campaign.injected) {
        line.push_str(&alloc::format!(" {name}={count}"));
    }
    let (mut served, mut failed, mut wrong) = (0, 0, 0);
    let mut stream = (0, 0, 0);
    for client in &campaign.clients {
        if client.stream {
            stream = (client.served, client.failed, client.wrong);
        } else {
            served += client.served;
            failed += client.failed;
            wrong += client.wrong;
        }
    }
    line.push_str(&alloc::format!(
        " restarts={} swaps={} traps={} stalls={} violations={} victim-violations={} checkpoints={} \
         served={served} failed={failed} wrong={wrong} stream-served={} stream-failed={} stream-wrong={}",
        campaign.restarts,
        campaign.swaps,
        campaign.traps,
        campaign.stalls,
        campaign.violations,
        campaign.victim_violations,
        campaign.checkpoints,
        stream.0,
        stream.1,
        stream.2
    ));
    println!("{line}");
    for name in VICTIMS.iter().chain(SERVERS.iter()) {
        let _ = supervision::stop(name);
    }
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

    fn restart(&mut self, victim: usize) {
        let name = VICTIMS[victim];
        match supervision::restart(name) {
            Ok(()) => self.restarts += 1,
            Err(error) => self.violation(format_args!("restart of {name} refused: {error}")),
        }
    }

    fn checkpoint(&mut self) {
        println!("checkpoint {} at {} faults", self.checkpoints, self.total);
        let mut stuck = 0;
        for client in &mut self.clients {
            if self.checkpoints > 0 && client.reports == client.reports_at_checkpoint {
                stuck += 1;
            }
            client.reports_at_checkpoint = client.reports;
        }
        if stuck > 0 {
            self.violation(format_args!(
                "{stuck} clients made no progress in {CHECKPOINT} faults"
            ));
        }
        self.checkpoints += 1;
    }

    fn inject(&mut self) {
        let victim = (self.next() % 3) as usize;
        let kind = (self.next() % KINDS.len() as u64) as usize;
        self.injected[kind] += 1;
        self.total += 1;
        match kind {
            KILLED => self.restart(victim),
            STORM => {
                let count = 3 + self.next() % 6;
                for _ in 0..count {
                    self.restart(victim);
                }
                // Past any restart intensity: stopped, its callers answered
                // `PeerGone`, then started afresh.
                let name = VICTIMS[victim];
                if let Err(error) = supervision::stop(name) {
                    self.violation(format_args!("stop of {name} refused: {error}"));
                }
                match supervision::start(name) {
                    Ok(()) => self.restarts += 1,
                    Err(error) => self.violation(format_args!("start of {name} refused: {error}")),
                }
            }
            _ => {
                let mut arm = [0u8; 8];
                arm[0] = 1;
                arm[1] = victim_kind(kind) as u8;
                arm[4..8].copy_from_slice(&((self.next() >> 32) as u32).to_le_bytes());
                if let Err(error) = self.victims[victim].send(&arm) {
                    self.violation(format_args!("arming {} failed: {error}", VICTIMS[victim]));
                    return;
                }
                self.pending = Some(Pending {
                    victim,
                    kind,
                    since: atoll_sdk::time(),
                    spinning_since: None,
                    swap_asked: None,
                });
            }
        }
    }

    fn timed_out(&mut self) {
        let Some(pending) = &self.pending else {
            return;
        };
        let now = atoll_sdk::time();
        let victim = pending.victim;
        if let Some(at) = pending.spinning_since {
            if now >= at + SPIN_NS {
                self.pending = None;
                self.restart(victim);
            }
        } else if now >= pending.since + STALL_NS {
            self.stalls += 1;
            let kind = KINDS[pending.kind];
            self.pending = None;
            self.violation(format_args!(
                "{kind} armed in {} not done after 2 s",
                VICTIMS[victim]
            ));
            self.restart(victim);
        }
    }

    fn handle(&mut self, received: Received<'_>) {
        if received.sender == KERNEL_SENDER {
            match postcard::from_bytes::<Event>(received.message) {
                Ok(event) => self.ended(&event),
                Err(_) => self.violation(format_args!("malformed report from the kernel")),
            }
            return;
        }
        let message = received.message;
        if let Some(token) = received.reply {
            let answer = if message.len() == 28 && message[0] == 4 {
                self.progress(received.sender, message)
            } else {
                // Garbage called by a victim's random host calls: answered.
                &[][..]
            };
            let _ = token.reply(answer);
            return;
        }
        let Some(pending) = &mut self.pending else {
            return;
        };
        // Victims' notes are 8 bytes; other sends are random garbage.
        if message.len() != 8 || usize::from(message[1]) != victim_kind(pending.kind) {
            return;
        }
        let victim = pending.victim;
        let pending_kind = pending.kind;
        match (message[0], pending.kind) {
            (3, HELD) => {
                // Killed while it holds a call: its caller gets `PeerGone`.
                self.pending = None;
                self.restart(victim);
            }
            (3, SPINNING) => pending.spinning_since = Some(atoll_sdk::time()),
            (3, SWAPPED) => {
                // Swapped while a call is taken: the kernel answers it
                // `PeerGone` at the swap. Done when the new version starts.
                let name = VICTIMS[victim];
                match supervision::swap(name, VICTIM_MODULE) {
                    Ok(()) => {
                        self.swaps += 1;
                        pending.swap_asked = Some(received.sender);
                    }
                    Err(error) => {
                        self.pending = None;
                        self.violation(format_args!("swap of {name} refused: {error}"));
                    }
                }
            }
            (5, SWAPPED) if pending.swap_asked == Some(received.sender) => self.pending = None,
            (2, 7..=9) => {
                let failed = u32::from_le_bytes([message[4], message[5], message[6], message[7]]);
                self.victim_violations += u64::from(failed);
                self.pending = None;
                if failed > 0 {
                    self.violation(format_args!(
                        "{} found {failed} wrong answers of the kernel ({})",
                        VICTIMS[victim], KINDS[pending_kind]
                    ));
                }
            }
            _ => {}
        }
    }

    /// The kernel reports a service ended.
    fn ended(&mut self, event: &Event) {
        let name = event.service.as_str();
        let Some(victim) = VICTIMS.iter().position(|&victim| victim == name) else {
            if !(self.finishing && event.outcome == Outcome::Exited) {
                self.violation(format_args!("uninvolved {name} ended: {:?}", event.outcome));
            }
            return;
        };
        self.traps += 1;
        let expected = match (&self.pending, &event.outcome) {
            (Some(pending), Outcome::Faulted(reason)) if pending.victim == victim => {
                expected_reason(pending.kind, reason)
            }
            _ => false,
        };
        if expected {
            self.pending = None;
        } else {
            self.violation(format_args!(
                "{name} ended unexpectedly: {:?}",
                event.outcome
            ));
        }
        self.restart(victim);
    }

    /// A client's progress report; the answer says whether to go on.
    fn progress(&mut self, sender: u32, message: &[u8]) -> &'static [u8] {
        let field = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&message[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let index = match self
            .clients
            .iter()
            .position(|client| client.sender == sender)
        {
            Some(index) => index,
            None => {
                self.clients.push(Client {
                    sender,
                    stream: message[1] == 2,
                    reports: 0,
                    reports_at_checkpoint: 0,
                    served: 0,
                    failed: 0,
                    wrong: 0,
                    finished: false,
                });
                self.clients.len() - 1
            }
        };
        let client = &mut self.clients[index];
        client.reports += 1;
        client.served = field(4);
        client.failed = field(12);
        client.wrong = field(20);
        client.finished |= message[2] == 1;
        if !self.started && self.clients.len() == CLIENTS {
            self.started = true;
        }
        if self.finishing { &[1] } else { &[0] }
    }
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// The number of faults and the seed, from argv (name, faults, seed);
/// 1,000 faults and seed 1 when absent.
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
