//! The service loop (Wasm only): the `net` endpoint, the driver's `nic`
//! endpoint, the clock and the entropy source around [`Stack`].

use crate::stack::{Settings, Stack};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use atoll_protocols::net::{self, LINK_SERVICE, Request, Response, nic};
use atoll_sdk::{Endpoint, MAX_MESSAGE_LEN, ReplyToken, Timeout};

/// Messages taken from the endpoint before the stack runs again.
const BATCH: usize = 64;
/// Longest sleep with nothing pending (the driver, clients and timers wake
/// it sooner).
const IDLE_NS: u64 = 1_000_000_000;

#[allow(unsafe_code, reason = "the one WASI import, for the TCP sequence seed")]
mod entropy {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn random_get(buffer: *mut u8, len: usize) -> i32;
    }

    /// 64 bits from the kernel's random source (seeded from RDRAND or the
    /// clock), or from the clock alone if that fails.
    pub fn seed() -> u64 {
        let mut bytes = [0u8; 8];
        // SAFETY: `bytes` is a live, writable 8-byte buffer in this module's
        // memory; the kernel checks the range and writes at most 8 bytes.
        let status = unsafe { random_get(bytes.as_mut_ptr(), bytes.len()) };
        if status == 0 {
            u64::from_le_bytes(bytes)
        } else {
            atoll_sdk::time().rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
        }
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
    loop {
        let now = atoll_sdk::time();
        let wait = stack.poll_delay_ns(now).unwrap_or(IDLE_NS).min(IDLE_NS);
        let mut timeout = Timeout::Nanos(wait.max(1));
        if wait == 0 {
            timeout = Timeout::Poll;
        }
        for _ in 0..BATCH {
            let received = match endpoint.receive(&mut buffer, timeout) {
                Ok(received) => received,
                Err(atoll_sdk::Error::TimedOut | atoll_sdk::Error::WouldBlock) => break,
                Err(error) => {
                    atoll_sdk::println!("receive failed: {error}");
                    break;
                }
            };
            timeout = Timeout::Poll;
            let sender = received.sender;
            let reply = received.reply;
            let request = postcard::from_bytes::<Request>(received.message);
            let now = atoll_sdk::time();
            match request {
                Ok(Request::Link(link)) => {
                    if names.name(sender) == LINK_SERVICE {
                        stack.link(link, now);
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
                    let name_of = |id: u32| names.lookup(id);
                    if let Some((token, response)) =
                        stack.handle(sender, request, token, now, &name_of)
                    {
                        send_reply(token, &response, &mut answer);
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
        for (token, response) in stack.poll(atoll_sdk::time()) {
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
            for frame in stack.take_transmitted() {
                if nic.post(&nic::Request::Frame(frame)).is_err() {
                    stack.tx_dropped += 1;
                }
            }
        }
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
