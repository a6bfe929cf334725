//! The shell proper: the read-edit-run loop and the commands.

use crate::command::{self, Command, HELP};
use crate::editor::{Editor, Event};
use crate::format::{self, Align, fs_error};
use crate::top;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use atoll_protocols::{admin, console, fs, net, pci};
use atoll_sdk::driver::{endpoint_info, service_info, system_info, trace_info};
use atoll_sdk::{CallError, Endpoint, Error, println, sleep};
use core::fmt::Write;

const BANNER: &str = "\nAtoll shell. Type `help` for the commands.\n";
const PROMPT: &str = "atoll> ";
/// The most input bytes asked for at once.
const READ_MAX: u32 = 256;
/// The most text one console `Write` carries (a message holds 4 KiB).
const WRITE_CHUNK: usize = 4000;
/// How often, and how long apart, a write to a console that is gone or busy
/// is tried before the text is dropped.
const WRITE_ATTEMPTS: u32 = 50;
const RETRY_NS: u64 = 100_000_000;
/// Bounds on paged listings, against a server that never says "no more".
const MAX_SERVICES: u32 = 4096;
const MAX_PAGES: u32 = 1024;
/// How often `top` redraws.
const TOP_PERIOD_NS: u64 = 1_000_000_000;

type Outcome = Result<(), String>;

struct Shell {
    console: Endpoint,
    supervisor: Option<Endpoint>,
    fs: Option<Endpoint>,
    pci: Option<Endpoint>,
    net: Option<Endpoint>,
    /// Output not yet written to the console.
    out: String,
}

pub fn main() {
    let console = match Endpoint::lookup(console::ENDPOINT) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            println!("no console to run on: {error}");
            return;
        }
    };
    let mut shell = Shell {
        console,
        supervisor: Endpoint::lookup(admin::ENDPOINT).ok(),
        fs: Endpoint::lookup(fs::ENDPOINT).ok(),
        pci: Endpoint::lookup(pci::ENDPOINT).ok(),
        net: Endpoint::lookup(net::ENDPOINT).ok(),
        out: String::new(),
    };
    let mut editor = Editor::new();
    shell.out.push_str(BANNER);
    shell.out.push_str(PROMPT);
    shell.flush();
    loop {
        for byte in shell.read() {
            match editor.feed(byte, &mut shell.out) {
                Some(Event::Line(line)) => {
                    shell.flush();
                    shell.run(&line);
                    shell.out.push_str(PROMPT);
                }
                Some(Event::Cancelled) => shell.out.push_str(PROMPT),
                None => {}
            }
        }
        shell.flush();
    }
}

/// A failed call, for people; `who` names the service called.
fn call_error(who: &str, error: CallError) -> String {
    match error {
        CallError::Kernel(Error::PeerGone) => format!("{who} has stopped"),
        CallError::Kernel(Error::QueueFull) => format!("{who} is busy (its queue is full)"),
        CallError::Kernel(error) => format!("{who}: {error}"),
        CallError::Encode => String::from("request too large"),
        CallError::Decode => format!("{who} sent an answer the shell cannot read"),
    }
}

/// Every service's `info` record.
fn services() -> Result<Vec<atoll_sdk::driver::ServiceInfo>, String> {
    let mut services = Vec::new();
    for index in 0..MAX_SERVICES {
        match service_info(index) {
            Ok(service) => services.push(service),
            Err(Error::NotFound) => break,
            Err(error) => return Err(format!("cannot read service {index}: {error}")),
        }
    }
    Ok(services)
}

/// What `top` needs of every service.
fn samples() -> Result<Vec<top::Sample>, String> {
    Ok(services()?
        .into_iter()
        .map(|service| top::Sample {
            name: service.name,
            state: service.state.name(),
            fuel_used: service.fuel_used,
            messages: service.sent.saturating_add(service.received),
            memory_bytes: service.memory_bytes,
        })
        .collect())
}

fn unexpected(who: &str) -> String {
    format!("unexpected answer from {who}")
}

impl Shell {
    /// Waits for typed input.
    fn read(&mut self) -> Vec<u8> {
        let request = console::Request::Read { max: READ_MAX };
        let mut told = false;
        loop {
            match self.console.request::<_, console::Response>(&request) {
                Ok(console::Response::Input(bytes)) => return bytes,
                Ok(console::Response::Busy) => {
                    if !core::mem::replace(&mut told, true) {
                        println!("another service is reading the console; waiting for it");
                    }
                    sleep(10 * RETRY_NS);
                }
                Ok(console::Response::Done) => {}
                // The console driver is being restarted, or is stopped.
                Err(CallError::Kernel(Error::PeerGone | Error::QueueFull)) => sleep(5 * RETRY_NS),
                Err(error) => {
                    println!(
                        "reading the console failed: {}",
                        call_error("console", error)
                    );
                    sleep(10 * RETRY_NS);
                }
            }
        }
    }

    /// Writes the pending output to the console.
    fn flush(&mut self) {
        let mut rest = self.out.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(WRITE_CHUNK);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (chunk, tail) = rest.split_at(end);
            write_console(self.console, chunk);
            rest = tail;
        }
        self.out.clear();
    }

    fn run(&mut self, line: &str) {
        let outcome = command::parse(line).and_then(|command| self.execute(command));
        if let Err(message) = outcome {
            let _ = writeln!(self.out, "error: {message}");
        }
    }

    fn execute(&mut self, command: Command<'_>) -> Outcome {
        match command {
            Command::Nothing => Ok(()),
            Command::Help => {
                self.out.push_str(HELP);
                Ok(())
            }
            Command::Echo(text) => {
                let _ = writeln!(self.out, "{text}");
                Ok(())
            }
            Command::Ps => self.ps(),
            Command::Stats => self.stats(),
            Command::Top(rounds) => self.top(rounds),
            Command::Trace(on) => self.admin(admin::Request::Trace(on)),
            Command::Restart(name) => self.admin(admin::Request::Restart(name.to_string())),
            Command::Stop(name) => self.admin(admin::Request::Stop(name.to_string())),
            Command::Start(name) => self.admin(admin::Request::Start(name.to_string())),
            Command::Swap { name, path } => self.admin(admin::Request::SwapFromFile {
                name: name.to_string(),
                path: path.to_string(),
            }),
            Command::Ls(path) => self.ls(path.unwrap_or("/")),
            Command::Cat(path) => self.cat(path),
            Command::Write { path, text } => self.write(path, text),
            Command::Lspci => self.lspci(),
            Command::Ifconfig => self.ifconfig(),
            Command::Netstat => self.netstat(),
            Command::Ping { host, count } => self.ping(host, count),
        }
    }

    fn ps(&mut self) -> Outcome {
        let mut rows = Vec::new();
        for service in services()? {
            rows.push(alloc::vec![
                service.name,
                service.state.name().to_string(),
                (service.memory_bytes / 1024).to_string(),
                service.fuel_used.to_string(),
                service.slices.to_string(),
                service.syscalls.to_string(),
                service.sent.to_string(),
                service.received.to_string(),
                service.faults.to_string(),
                service.restarts.to_string(),
                service.swaps.to_string(),
            ]);
        }
        let columns = [
            ("NAME", Align::Left),
            ("STATE", Align::Left),
            ("MEM KiB", Align::Right),
            ("FUEL", Align::Right),
            ("SLICES", Align::Right),
            ("CALLS", Align::Right),
            ("SENT", Align::Right),
            ("RECEIVED", Align::Right),
            ("FAULTS", Align::Right),
            ("RESTARTS", Align::Right),
            ("SWAPS", Align::Right),
        ];
        self.out.push_str(&format::table(&columns, &rows));
        Ok(())
    }

    /// `top`: samples the counters every second and redraws the table in
    /// place, until a key is pressed (or `rounds` redraws).
    fn top(&mut self, rounds: Option<&str>) -> Outcome {
        let rounds = match rounds {
            Some(text) => text
                .parse::<u32>()
                .map_err(|_| format!("top: `{text}` is not a number of rounds"))?,
            None => u32::MAX,
        };
        let columns = [
            (top::COLUMNS[0], Align::Left),
            (top::COLUMNS[1], Align::Left),
            (top::COLUMNS[2], Align::Right),
            (top::COLUMNS[3], Align::Right),
            (top::COLUMNS[4], Align::Right),
        ];
        let mut before = samples()?;
        let mut at = atoll_sdk::time();
        for round in 1..=rounds {
            sleep(TOP_PERIOD_NS);
            let after = samples()?;
            let now = atoll_sdk::time();
            let rows: Vec<Vec<String>> = top::rows(&before, &after, now.saturating_sub(at))
                .into_iter()
                .map(Vec::from)
                .collect();
            self.out.push_str(top::CLEAR);
            let _ = writeln!(
                self.out,
                "atoll top: uptime {}, {} services; any key stops\n",
                format::duration(now),
                after.len()
            );
            self.out.push_str(&format::table(&columns, &rows));
            self.flush();
            (before, at) = (after, now);
            // After the last round the shell reads again: a key typed then
            // is the next command's.
            if round < rounds && self.key_pressed() {
                break;
            }
        }
        Ok(())
    }

    /// Whether input arrived (it is consumed: the key that stops `top`).
    fn key_pressed(&mut self) -> bool {
        let request = console::Request::Poll { max: READ_MAX };
        matches!(
            self.console.request::<_, console::Response>(&request),
            Ok(console::Response::Input(bytes)) if !bytes.is_empty()
        )
    }

    fn stats(&mut self) -> Outcome {
        let system = system_info().map_err(|error| format!("cannot read the counters: {error}"))?;
        let lines = [
            ("system", system.system_name),
            ("uptime", format::duration(system.uptime_ns)),
            ("services", system.services.to_string()),
            (
                "heap",
                format!(
                    "{} in use, {} free",
                    format::bytes(system.heap_in_use),
                    format::bytes(system.heap_available)
                ),
            ),
            (
                "queued",
                format!(
                    "{} of a {} message budget",
                    format::bytes(system.queued_bytes),
                    format::bytes(system.message_budget)
                ),
            ),
            ("messages", system.messages.to_string()),
            ("interrupts", system.interrupts.to_string()),
        ];
        for (label, value) in lines {
            let _ = writeln!(self.out, "{label:<11}{value}");
        }
        if let Ok(trace) = trace_info() {
            let _ = writeln!(
                self.out,
                "{:<11}{}, {} of {} records held, {} recorded, {} overwritten",
                "trace",
                if trace.on { "on" } else { "off" },
                trace.held,
                trace.capacity,
                trace.recorded,
                trace.overwritten
            );
        }
        let mut rows = Vec::new();
        for service in services()? {
            rows.push(alloc::vec![
                service.name,
                format::duration(service.blocked_receive_ns),
                format::duration(service.blocked_reply_ns),
                format::duration(service.blocked_sleep_ns),
            ]);
        }
        let columns = [
            ("SERVICE", Align::Left),
            ("IN RECEIVE", Align::Right),
            ("IN CALL", Align::Right),
            ("ASLEEP", Align::Right),
        ];
        self.out.push_str("\ntime blocked\n");
        self.out.push_str(&format::table(&columns, &rows));
        let mut rows = Vec::new();
        for index in 0..MAX_SERVICES {
            let endpoint = match endpoint_info(index) {
                Ok(endpoint) => endpoint,
                Err(Error::NotFound) => break,
                Err(error) => return Err(format!("cannot read endpoint {index}: {error}")),
            };
            rows.push(alloc::vec![
                endpoint.name,
                format!("{}/{}", endpoint.queue_len, endpoint.queue_depth),
                endpoint.queued.to_string(),
                endpoint.deepest.to_string(),
                endpoint.queue_full.to_string(),
                endpoint.peer_gone.to_string(),
            ]);
        }
        let columns = [
            ("ENDPOINT", Align::Left),
            ("QUEUE", Align::Right),
            ("QUEUED", Align::Right),
            ("DEEPEST", Align::Right),
            ("FULL", Align::Right),
            ("GONE", Align::Right),
        ];
        self.out.push_str("\nendpoints\n");
        self.out.push_str(&format::table(&columns, &rows));
        Ok(())
    }

    fn admin(&mut self, request: admin::Request) -> Outcome {
        let supervisor = self
            .supervisor
            .ok_or("no supervisor (the shell is not granted `supervisor`)")?;
        match supervisor.request::<_, admin::Response>(&request) {
            Ok(admin::Response::Done) => {
                self.out.push_str("Done\n");
                Ok(())
            }
            Ok(admin::Response::Error(message)) => Err(message),
            Err(error) => Err(call_error("the supervisor", error)),
        }
    }

    fn fs_request(&self, request: &fs::Request) -> Result<fs::Response, String> {
        let fs = self
            .fs
            .ok_or("no file system (the shell is not granted `fs`)")?;
        fs.request(request)
            .map_err(|error| call_error("the file system", error))
    }

    fn ls(&mut self, path: &str) -> Outcome {
        let mut rows = Vec::new();
        let mut start = 0u32;
        for _ in 0..MAX_PAGES {
            let request = fs::Request::List {
                path: path.to_string(),
                start,
            };
            let (entries, more) = match self.fs_request(&request)? {
                fs::Response::Entries { entries, more } => (entries, more),
                fs::Response::Error(error) => return Err(format!("{path}: {}", fs_error(&error))),
                _ => return Err(unexpected("the file system")),
            };
            let count = entries.len();
            for entry in entries {
                let (size, slash) = if entry.directory {
                    (String::new(), "/")
                } else {
                    (entry.size.to_string(), "")
                };
                rows.push(alloc::vec![size, format!("{}{slash}", entry.name)]);
            }
            if !more || count == 0 {
                break;
            }
            start = start.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
        }
        if rows.is_empty() {
            self.out.push_str("(empty)\n");
        } else {
            let columns = [("SIZE", Align::Right), ("NAME", Align::Left)];
            self.out.push_str(&format::table(&columns, &rows));
        }
        Ok(())
    }

    fn cat(&mut self, path: &str) -> Outcome {
        let mut offset = 0u64;
        // Bytes of a character split between two reads.
        let mut carry = Vec::new();
        let mut ends_line = true;
        loop {
            let request = fs::Request::Read {
                path: path.to_string(),
                offset,
                len: fs::MAX_DATA,
            };
            let data = match self.fs_request(&request)? {
                fs::Response::Data(data) => data,
                fs::Response::Error(error) => return Err(format!("{path}: {}", fs_error(&error))),
                _ => return Err(unexpected("the file system")),
            };
            let last = data.len() < fs::MAX_DATA as usize;
            offset = offset.saturating_add(data.len() as u64);
            carry.extend_from_slice(&data);
            let used = format::decode_lossy(&carry, last, &mut self.out);
            carry.drain(..used.min(carry.len()));
            if !self.out.is_empty() {
                ends_line = self.out.ends_with('\n');
            }
            self.flush();
            if last {
                break;
            }
        }
        if !ends_line {
            self.out.push('\n');
        }
        Ok(())
    }

    /// Replaces the file's contents with `text` and a newline: removes the
    /// file, then writes it anew (so no old bytes are left past the end).
    fn write(&mut self, path: &str, text: &str) -> Outcome {
        let mut data = Vec::from(text.as_bytes());
        data.push(b'\n');
        match self.fs_request(&fs::Request::Remove {
            path: path.to_string(),
        })? {
            fs::Response::Done | fs::Response::Error(fs::Error::NotFound) => {}
            fs::Response::Error(error) => return Err(format!("{path}: {}", fs_error(&error))),
            _ => return Err(unexpected("the file system")),
        }
        let mut offset = 0u64;
        for chunk in data.chunks(fs::MAX_DATA as usize) {
            let request = fs::Request::Write {
                path: path.to_string(),
                offset,
                data: chunk.to_vec(),
            };
            let written = match self.fs_request(&request)? {
                fs::Response::Written(count) => count,
                fs::Response::Error(error) => return Err(format!("{path}: {}", fs_error(&error))),
                _ => return Err(unexpected("the file system")),
            };
            if written as usize != chunk.len() {
                return Err(format!(
                    "{path}: short write ({written} of {} bytes)",
                    chunk.len()
                ));
            }
            offset = offset.saturating_add(u64::from(written));
        }
        let _ = writeln!(self.out, "wrote {offset} bytes to {path}");
        Ok(())
    }

    fn net_request(&self, request: &net::Request) -> Result<net::Response, String> {
        let net = self
            .net
            .ok_or("no TCP/IP service (the shell is not granted `net`)")?;
        match net.request(request) {
            Ok(net::Response::Error(error)) => Err(format!("the TCP/IP service: {error}")),
            Ok(response) => Ok(response),
            Err(error) => Err(call_error("the TCP/IP service", error)),
        }
    }

    fn ifconfig(&mut self) -> Outcome {
        let net::Response::Interface(interface) = self.net_request(&net::Request::Interface)?
        else {
            return Err(unexpected("the TCP/IP service"));
        };
        let link = match (interface.driver, interface.link_up) {
            (false, _) => "no driver",
            (true, true) => "up",
            (true, false) => "down",
        };
        let _ = writeln!(
            self.out,
            "eth0: link {link}, mac {}, mtu {}\n  inet {}/{} gateway {} ({}){}\n  rx {} frames, {}\n  tx {} frames, {}, {} dropped",
            format::mac(interface.mac),
            interface.mtu,
            format::ipv4(interface.ip),
            interface.prefix,
            format::ipv4(interface.gateway),
            if interface.dhcp { "dhcp" } else { "static" },
            interface
                .dns
                .map(|dns| format!(", dns {}", format::ipv4(dns)))
                .unwrap_or_default(),
            interface.rx_frames,
            format::bytes(interface.rx_bytes),
            interface.tx_frames,
            format::bytes(interface.tx_bytes),
            interface.tx_dropped
        );
        Ok(())
    }

    fn netstat(&mut self) -> Outcome {
        let net::Response::Sockets(sockets) = self.net_request(&net::Request::Sockets)? else {
            return Err(unexpected("the TCP/IP service"));
        };
        let endpoint = |address: net::Address| {
            if address.port == 0 {
                String::from("*")
            } else if address.ip == [0; 4] {
                format!("*:{}", address.port)
            } else {
                format!("{}:{}", format::ipv4(address.ip), address.port)
            }
        };
        let rows: Vec<Vec<String>> = sockets
            .into_iter()
            .map(|socket| {
                alloc::vec![
                    socket.kind,
                    endpoint(socket.local),
                    endpoint(socket.remote),
                    socket.state,
                    socket.owner,
                ]
            })
            .collect();
        let columns = [
            ("PROTO", Align::Left),
            ("LOCAL", Align::Left),
            ("REMOTE", Align::Left),
            ("STATE", Align::Left),
            ("OWNER", Align::Left),
        ];
        self.out.push_str(&format::table(&columns, &rows));
        Ok(())
    }

    fn ping(&mut self, host: &str, count: Option<&str>) -> Outcome {
        let to = format::parse_ipv4(host)
            .ok_or_else(|| format!("`{host}` is not an IPv4 address (a.b.c.d)"))?;
        let count: u16 = match count {
            None => 4,
            Some(text) => text
                .parse()
                .ok()
                .filter(|&n| (1..=100).contains(&n))
                .ok_or("COUNT is a number from 1 to 100")?,
        };
        let mut answered = 0u16;
        let mut total_us = 0u64;
        for sequence in 1..=count {
            let request = net::Request::Ping {
                to,
                timeout_ms: 2000,
            };
            match self.net_request(&request) {
                Ok(net::Response::Pong { rtt_us }) => {
                    answered += 1;
                    total_us += rtt_us;
                    let _ = writeln!(
                        self.out,
                        "reply from {host}: seq={sequence} time={}.{:03} ms",
                        rtt_us / 1000,
                        rtt_us % 1000
                    );
                }
                Ok(_) => return Err(unexpected("the TCP/IP service")),
                Err(message) => {
                    let _ = writeln!(self.out, "seq={sequence}: {message}");
                }
            }
            self.flush();
            if sequence < count {
                sleep(200_000_000);
            }
        }
        let average = total_us.checked_div(u64::from(answered)).unwrap_or(0);
        let _ = writeln!(
            self.out,
            "{count} sent, {answered} answered, average {}.{:03} ms",
            average / 1000,
            average % 1000
        );
        Ok(())
    }

    fn lspci(&mut self) -> Outcome {
        let pci = self
            .pci
            .ok_or("no PCI service (the shell is not granted `pci`)")?;
        let mut rows = Vec::new();
        let mut start = 0u32;
        for _ in 0..MAX_PAGES {
            let (devices, more) = match pci.request(&pci::Request::List { start }) {
                Ok(pci::Response::Devices { devices, more }) => (devices, more),
                Err(error) => return Err(call_error("the PCI service", error)),
            };
            let count = devices.len();
            for device in devices {
                rows.push(alloc::vec![
                    format::pci_address(device.address),
                    format!("{:04x}", device.vendor),
                    format!("{:04x}", device.device),
                    format!(
                        "{:02x}.{:02x} {}",
                        device.class,
                        device.subclass,
                        format::pci_class(device.class, device.subclass)
                    ),
                    if device.irq == 0xff {
                        String::from("-")
                    } else {
                        device.irq.to_string()
                    },
                ]);
            }
            if !more || count == 0 {
                break;
            }
            start = start.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
        }
        let columns = [
            ("ADDRESS", Align::Left),
            ("VENDOR", Align::Left),
            ("DEVICE", Align::Left),
            ("CLASS", Align::Left),
            ("IRQ", Align::Right),
        ];
        self.out.push_str(&format::table(&columns, &rows));
        Ok(())
    }
}

/// Writes one chunk of text, retrying for a while if the console driver is
/// restarting or busy; the text is dropped if it never comes back.
fn write_console(console: Endpoint, text: &str) {
    let request = console::Request::Write(text.to_string());
    for _ in 0..WRITE_ATTEMPTS {
        match console.request::<_, console::Response>(&request) {
            Ok(_) => return,
            Err(CallError::Kernel(Error::PeerGone | Error::QueueFull)) => sleep(RETRY_NS),
            Err(error) => {
                println!(
                    "writing to the console failed: {}",
                    call_error("console", error)
                );
                return;
            }
        }
    }
}
