//! The service loop (Wasm only): the `net` endpoint, the driver's `nic`
//! endpoint, the clock and the entropy source around [`Stack`].

use crate::stack::{Settings, Stack};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use atoll_protocols::net::{self, FrameBatch, LINK_SERVICE, Link, Request, Response, nic};
use atoll_sdk::{Endpoint, MAX_MESSAGE_LEN, ReplyToken, Timeout};

/// Messages taken from the endpoint before the stack runs again.
const BATCH: usize = 64;
/// Longest sleep with nothing pending (the driver, clients and timers wake
/// it sooner).
const IDLE_NS: u64 = 1_000_000_000;

mod entropy {
    /// 64 bits from the kernel's random source (seeded from RDRAND or the
    /// clock, new at every start): the start-up record's seed.
    pub fn seed() -> u64 {
        atoll_sdk::startup().random_seed
    }
}

pub fn main() {
    let endpoint = Endpoint::from_handle(1);
    let nic = match Endpoint::lookup(nic::ENDPOINT) {
        Ok(nic) => Some(nic),
        Err(error) => {
            atoll_sdk::println!("no `{}` endpoint to send frames to: {error}", nic::ENDPOINT);
            None
        }
    };
    let mut stack: Stack<ReplyToken> = Stack::new(Settings::QEMU_USER, entropy::seed());
    let mut names = Names::default();
    // A restarted TCP/IP service asks the driver for its MAC again.
    if let Some(nic) = nic {
        let _ = nic.post(&nic::Request::Hello);
    }
    let mut buffer = vec![0u8; MAX_MESSAGE_LEN];
    let mut answer = vec![0u8; MAX_MESSAGE_LEN];
    let mut stats = stats::Stats::new();
    loop {
        stats.mark(stats::Part::Other);
        let now = atoll_sdk::time();
        let wait = stack.poll_delay_ns(now).unwrap_or(IDLE_NS).min(IDLE_NS);
        stats.mark(stats::Part::PollDelay);
        stats.turn();
        stats.sockets(stack.socket_count());
        let mut timeout = Timeout::Nanos(wait.max(1));
        if wait == 0 {
            timeout = Timeout::Poll;
        }
        for _ in 0..BATCH {
            stats.mark(stats::Part::Handle);
            let received = match endpoint.receive(&mut buffer, timeout) {
                Ok(received) => received,
                Err(atoll_sdk::Error::TimedOut | atoll_sdk::Error::WouldBlock) => {
                    stats.mark(stats::Part::Receive);
                    break;
                }
                Err(error) => {
                    atoll_sdk::println!("receive failed: {error}");
                    break;
                }
            };
            stats.mark(stats::Part::Receive);
            timeout = Timeout::Poll;
            let sender = received.sender;
            let reply = received.reply;
            let request = postcard::from_bytes::<Request>(received.message);
            stats.mark(stats::Part::Decode);
            let now = atoll_sdk::time();
            match request {
                Ok(Request::Link(link)) => {
                    if names.name(sender) == LINK_SERVICE {
                        stats.frames_in(match &link {
                            Link::Frames(frames) => frames.len(),
                            Link::Frame(_) => 1,
                            _ => 0,
                        });
                        stack.link(link, now);
                        stats.mark(stats::Part::Link);
                    } else if let Some(token) = reply {
                        send_reply(
                            token,
                            &Response::Error(net::Error::NotPermitted),
                            &mut answer,
                        );
                    }
                }
                Ok(request) => {
                    #[cfg(feature = "fault-injection")]
                    if request == Request::Interface {
                        atoll_sdk::println!("fault injection: trapping on an Interface request");
                        core::arch::wasm32::unreachable();
                    }
                    let Some(token) = reply else {
                        // Socket requests are calls; a plain send gets nothing.
                        continue;
                    };
                    if matches!(
                        request,
                        Request::Listen { .. } | Request::Connect { .. } | Request::UdpBind { .. }
                    ) && let Ok(info) = atoll_sdk::driver::service_info(sender)
                    {
                        stack.note_generation(sender, info.restarts);
                    }
                    stats.request();
                    let name_of = |id: u32| names.lookup(id);
                    let handled = stack.handle(sender, request, token, now, &name_of);
                    stats.mark(stats::Part::Request);
                    if let Some((token, response)) = handled {
                        send_reply(token, &response, &mut answer);
                        stats.mark(stats::Part::Reply);
                    }
                }
                Err(_) => {
                    atoll_sdk::println!("malformed request from service {sender}");
                    if let Some(token) = reply {
                        let _ = token.reply(&[]);
                    }
                }
            }
        }
        stats.mark(stats::Part::Handle);
        let answered = stack.poll_marked(atoll_sdk::time(), &mut |phase| {
            stats.mark(stats::Part::from_phase(phase));
        });
        stats.mark(stats::Part::Poll);
        for (token, response) in answered {
            stats.answer();
            send_reply(token, &response, &mut answer);
        }
        if let Some((settings, leased)) = stack.take_address_change() {
            let [a, b, c, d] = settings.ip;
            let [g, h, i, j] = settings.gateway;
            let source = if leased { "DHCP lease" } else { "static" };
            atoll_sdk::println!(
                "interface up: {a}.{b}.{c}.{d}/{} via {g}.{h}.{i}.{j} ({source})",
                settings.prefix
            );
        }
        if let Some(nic) = nic {
            // As many frames to a message as fit (two full-size segments).
            let mut batch = FrameBatch::default();
            for frame in stack.take_transmitted() {
                stats.frame_out();
                if let Err(frame) = batch.push(frame) {
                    post_frames(nic, &mut batch, &mut stack);
                    let _ = batch.push(frame);
                }
            }
            post_frames(nic, &mut batch, &mut stack);
        }
        stats.mark(stats::Part::Transmit);
        stats.report();
    }
}

/// Sends the batch's frames to the driver in one message.
fn post_frames(nic: Endpoint, batch: &mut FrameBatch, stack: &mut Stack<ReplyToken>) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len() as u64;
    if nic.post(&nic::Request::Frames(batch.take())).is_err() {
        stack.tx_dropped += count;
    }
}

fn send_reply(token: ReplyToken, response: &Response, answer: &mut [u8]) {
    let encoded = postcard::to_slice(response, answer).map(|bytes| &bytes[..]);
    // A caller that went away (PeerGone) just loses its answer.
    let _ = token.reply(encoded.unwrap_or(&[]));
}

/// Service names by id, from the kernel's `info` (ids are the indexes it
/// numbers services by), cached.
#[derive(Default)]
struct Names {
    known: BTreeMap<u32, String>,
}

impl Names {
    fn name(&mut self, id: u32) -> &str {
        self.known.entry(id).or_insert_with(|| {
            atoll_sdk::driver::service_info(id)
                .map(|info| info.name)
                .unwrap_or_default()
        })
    }

    fn lookup(&self, id: u32) -> String {
        self.known.get(&id).cloned().unwrap_or_else(|| {
            atoll_sdk::driver::service_info(id)
                .map(|info| info.name)
                .unwrap_or_else(|_| alloc::format!("#{id}"))
        })
    }
}

/// Where the loop's work goes (feature `loop-stats`, for measurements only):
/// turns, frames and requests counted, and the fuel (Wasm instructions) used
/// by each part of the loop and of `Stack::poll`, printed every 4 s. Each
/// mark ends the slice with a `sleep(0)` so that the kernel's count is exact,
/// and costs about 4,000 fuel itself (an `info` record decoded), which lands
/// in the next part: subtract it per mark. Without the feature every call is
/// empty.
mod stats {
    #[derive(Clone, Copy)]
    pub enum Part {
        Other,
        PollDelay,
        Receive,
        Handle,
        Poll,
        Transmit,
        Maintenance,
        Ingress,
        Egress,
        Upkeep,
        Sending,
        Decode,
        Link,
        Request,
        Reply,
    }

    impl Part {
        /// A phase of `Stack::poll_marked`.
        pub fn from_phase(phase: u8) -> Part {
            match phase {
                1 => Part::Maintenance,
                2 => Part::Ingress,
                3 => Part::Egress,
                5 => Part::Sending,
                _ => Part::Upkeep,
            }
        }
    }

    #[cfg(feature = "loop-stats")]
    #[derive(Default)]
    pub struct Stats {
        me: Option<u32>,
        last: u64,
        since: u64,
        ns: [u64; 15],
        sending_passes: u64,
        sockets: u64,
        turns: u64,
        frames_in: u64,
        frames_out: u64,
        requests: u64,
        answers: u64,
    }

    #[cfg(not(feature = "loop-stats"))]
    pub struct Stats;

    #[cfg(feature = "loop-stats")]
    impl Stats {
        pub fn new() -> Stats {
            Stats::default()
        }
        /// Fuel used so far: a `sleep(0)` ends the slice, so that the
        /// kernel's count is exact, then `info` reads it (this service's
        /// index found by name once).
        fn fuel(&mut self) -> u64 {
            if self.me.is_none() {
                self.me = (0..64).find(|&index| {
                    atoll_sdk::driver::service_info(index).is_ok_and(|info| info.name == "net")
                });
            }
            atoll_sdk::sleep(0);
            self.me
                .and_then(|me| atoll_sdk::driver::service_info(me).ok())
                .map_or(0, |info| info.fuel_used)
        }

        pub fn mark(&mut self, part: Part) {
            if matches!(part, Part::Sending) {
                self.sending_passes += 1;
            }
            let now = self.fuel();
            if let Some(slot) = self.ns.get_mut(part as usize) {
                *slot += now.saturating_sub(self.last);
            }
            // The measurement's own cost (a calibrated `fuel()`) is left out.
            self.last = self.fuel();
        }
        pub fn turn(&mut self) {
            self.turns += 1;
        }
        pub fn sockets(&mut self, count: usize) {
            self.sockets += count as u64;
        }
        pub fn frames_in(&mut self, count: usize) {
            self.frames_in += count as u64;
        }
        pub fn frame_out(&mut self) {
            self.frames_out += 1;
        }
        pub fn request(&mut self) {
            self.requests += 1;
        }
        pub fn answer(&mut self) {
            self.answers += 1;
        }
        pub fn report(&mut self) {
            let now = atoll_sdk::time();
            if now.saturating_sub(self.since) < 4_000_000_000 {
                return;
            }
            if self.turns > 0 {
                let us = |fuel: u64| fuel;
                let [
                    other,
                    delay,
                    receive,
                    handle,
                    poll,
                    transmit,
                    maintenance,
                    ingress,
                    egress,
                    upkeep,
                    sending,
                    decode,
                    link,
                    request,
                    reply,
                ] = self.ns;
                atoll_sdk::println!(
                    "stats turns {} frames_in {} frames_out {} requests {} answers {} | fuel other {} poll_delay {} receive {} handle {} held {} transmit {} maintenance {} ingress {} sending {} in {} passes, last pass {} upkeep {} | sockets per turn {} | decode {} link {} request {} reply {}",
                    self.turns,
                    self.frames_in,
                    self.frames_out,
                    self.requests,
                    self.answers,
                    us(other),
                    us(delay),
                    us(receive),
                    us(handle),
                    us(poll),
                    us(transmit),
                    us(maintenance),
                    us(ingress),
                    us(sending),
                    self.sending_passes,
                    us(egress),
                    us(upkeep),
                    self.sockets / self.turns.max(1),
                    us(decode),
                    us(link),
                    us(request),
                    us(reply)
                );
            }
            *self = Stats {
                me: self.me,
                last: self.last,
                since: now,
                ..Stats::default()
            };
        }
    }

    #[cfg(not(feature = "loop-stats"))]
    impl Stats {
        pub fn new() -> Stats {
            Stats
        }
        pub fn mark(&mut self, _: Part) {}
        pub fn turn(&mut self) {}
        pub fn sockets(&mut self, _: usize) {}
        pub fn frames_in(&mut self, _: usize) {}
        pub fn frame_out(&mut self) {}
        pub fn request(&mut self) {}
        pub fn answer(&mut self) {}
        pub fn report(&mut self) {}
    }
}
