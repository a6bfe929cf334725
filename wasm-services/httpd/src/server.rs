//! The server loop (Wasm only): connections multiplexed over `net::Wait`,
//! files from the `fs` protocol, status from the kernel's `info`.

use crate::http::{self, Method, Parse, Refusal};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use atoll_protocols::fs;
use atoll_protocols::net::{self, Interest, Request, Response, Socket};
use atoll_sdk::{CallError, Endpoint};
use core::fmt::Write as _;

const PORT: u16 = 80;
const BACKLOG: u8 = 32;
/// Connections served at once; more wait in the listener's backlog.
const MAX_CONNECTIONS: usize = 100;
/// A connection idle this long (no request in progress) is closed.
const IDLE_NS: u64 = 30_000_000_000;
const WAIT_MS: u32 = 1000;
/// Chunks written to one connection before the others get a turn.
const CHUNKS_PER_TURN: usize = 8;
/// Bytes per `Write` while more of the body follows: two full TCP segments
/// on Ethernet (MSS 1460), so that the TCP/IP service, which sends what it
/// is given at once (no Nagle), never sends the short third segment a
/// 3,072-byte write (`net::MAX_DATA`) leaves: 1,024 segments (and as many
/// ACKs) per MiB become 718, and each costs the interpreted stack about
/// 30,000 instructions (docs/benchmarks.md). Feature `unaligned-writes`
/// writes whole `MAX_DATA` pieces as before, for comparisons.
#[cfg(not(feature = "unaligned-writes"))]
const WRITE_PIECE: usize = 2 * 1460;
#[cfg(feature = "unaligned-writes")]
const WRITE_PIECE: usize = net::MAX_DATA as usize;

pub fn main() {
    let (Ok(net), Ok(files)) = (
        Endpoint::lookup(net::ENDPOINT),
        Endpoint::lookup(fs::ENDPOINT),
    ) else {
        atoll_sdk::println!("needs the `net` and `fs` endpoints");
        return;
    };
    let mut server = Server {
        net,
        files,
        connections: BTreeMap::new(),
        outage: false,
    };
    loop {
        let listener = server.listen();
        atoll_sdk::println!("serving HTTP on port {PORT}");
        while server.turn(listener) {}
        // The TCP/IP service restarted: its sockets, ours among them, are
        // gone. Forget the connections and listen again.
        server.connections.clear();
        atoll_sdk::println!("lost the TCP/IP service; listening again");
    }
}

/// What a connection is sending.
enum Body {
    None,
    /// The rest of a file: path, next offset, end (exclusive).
    File {
        path: String,
        offset: u64,
        end: u64,
    },
}

struct Connection {
    input: Vec<u8>,
    /// Bytes ready to send (a head, a generated page, a file chunk).
    output: Vec<u8>,
    sent: usize,
    body: Body,
    /// Body bytes of the current request still to be skipped.
    skip: usize,
    /// Close once the response is out.
    close_after: bool,
    /// The peer has closed its half.
    peer_closed: bool,
    last_active: u64,
}

impl Connection {
    fn busy(&self) -> bool {
        self.sent < self.output.len() || !matches!(self.body, Body::None)
    }
}

struct Server {
    net: Endpoint,
    files: Endpoint,
    connections: BTreeMap<Socket, Connection>,
    /// The last `Wait` failed (the TCP/IP service is away).
    outage: bool,
}

/// Why a connection has to go.
struct Gone;

impl Server {
    fn call(&self, request: Request) -> Result<Response, CallError> {
        self.net.request::<Request, Response>(&request)
    }

    /// Listens on the HTTP port, retrying until the TCP/IP service agrees.
    fn listen(&self) -> Socket {
        loop {
            match self.call(Request::Listen {
                port: PORT,
                backlog: BACKLOG,
            }) {
                Ok(Response::Socket(socket)) => return socket,
                other => {
                    atoll_sdk::println!("cannot listen on port {PORT} ({other:?}); retrying");
                    atoll_sdk::sleep(1_000_000_000);
                }
            }
        }
    }

    /// One round of waiting and serving; `false` when the TCP/IP service
    /// has lost the listener (it restarted).
    fn turn(&mut self, listener: Socket) -> bool {
        let mut interests = Vec::with_capacity(self.connections.len() + 1);
        if self.connections.len() < MAX_CONNECTIONS {
            interests.push(Interest {
                socket: listener,
                read: true,
                write: false,
            });
        }
        for (&socket, connection) in &self.connections {
            let busy = connection.busy();
            interests.push(Interest {
                socket,
                read: !busy && !connection.peer_closed,
                write: busy,
            });
        }
        interests.truncate(net::MAX_WAIT);
        let ready = match self.call(Request::Wait {
            interests,
            timeout_ms: WAIT_MS,
        }) {
            Ok(Response::Ready(ready)) => ready,
            // A socket it does not know: it restarted since we listened.
            Ok(Response::Error(net::Error::NoSocket | net::Error::NotOwner)) => return false,
            Ok(Response::Error(error)) => {
                atoll_sdk::println!("wait failed: {error}");
                atoll_sdk::sleep(10_000_000);
                return true;
            }
            other => {
                // Gone (being restarted, or stopped) or confused: wait, then
                // ask again; said once per outage, not every 200 ms.
                if !core::mem::replace(&mut self.outage, true) {
                    atoll_sdk::println!("the TCP/IP service did not answer a wait ({other:?})");
                }
                atoll_sdk::sleep(200_000_000);
                return true;
            }
        };
        self.outage = false;
        let now = atoll_sdk::time();
        for interest in ready {
            if interest.socket == listener {
                self.accept_all(listener, now);
                continue;
            }
            let outcome = self.serve(interest.socket, interest.read, now);
            if outcome.is_err() {
                self.drop_connection(interest.socket, false);
            }
        }
        let idle: Vec<Socket> = self
            .connections
            .iter()
            .filter(|(_, c)| !c.busy() && now.saturating_sub(c.last_active) > IDLE_NS)
            .map(|(&socket, _)| socket)
            .collect();
        for socket in idle {
            self.drop_connection(socket, false);
        }
        true
    }

    fn accept_all(&mut self, listener: Socket, now: u64) {
        while self.connections.len() < MAX_CONNECTIONS {
            match self.call(Request::Accept { listener }) {
                Ok(Response::Accepted { socket, .. }) => {
                    self.connections.insert(
                        socket,
                        Connection {
                            input: Vec::new(),
                            output: Vec::new(),
                            sent: 0,
                            body: Body::None,
                            skip: 0,
                            close_after: false,
                            peer_closed: false,
                            last_active: now,
                        },
                    );
                }
                _ => return,
            }
        }
    }

    fn drop_connection(&mut self, socket: Socket, graceful: bool) {
        self.connections.remove(&socket);
        let request = if graceful {
            Request::Close { socket }
        } else {
            Request::Abort { socket }
        };
        let _ = self.call(request);
    }

    /// Moves one connection on: reads a request if it can, sends what is due.
    fn serve(&mut self, socket: Socket, readable: bool, now: u64) -> Result<(), Gone> {
        let Some(mut connection) = self.connections.remove(&socket) else {
            return Ok(());
        };
        let result = self.serve_connection(socket, &mut connection, readable, now);
        match result {
            Ok(true) => {
                self.connections.insert(socket, connection);
                Ok(())
            }
            Ok(false) => {
                let _ = self.call(Request::Close { socket });
                Ok(())
            }
            Err(Gone) => {
                let _ = self.call(Request::Abort { socket });
                Ok(())
            }
        }
    }

    /// `Ok(true)`: keep the connection; `Ok(false)`: close it gracefully.
    fn serve_connection(
        &mut self,
        socket: Socket,
        connection: &mut Connection,
        readable: bool,
        now: u64,
    ) -> Result<bool, Gone> {
        if readable && !connection.busy() {
            match self.call(Request::Read {
                socket,
                max: net::MAX_DATA,
            }) {
                Ok(Response::Data(data)) => {
                    connection.last_active = now;
                    let skipped = connection.skip.min(data.len());
                    connection.skip -= skipped;
                    connection.input.extend_from_slice(&data[skipped..]);
                }
                Ok(Response::Closed) => connection.peer_closed = true,
                Ok(Response::Error(net::Error::WouldBlock)) => {}
                _ => return Err(Gone),
            }
        }
        if !connection.busy() && connection.skip == 0 && !connection.input.is_empty() {
            match http::parse(&connection.input) {
                Parse::Incomplete => {}
                Parse::Refused(refusal) => {
                    self.refuse(connection, refusal);
                }
                Parse::Request(request, used) => {
                    connection.input.drain(..used);
                    // A body (which GET and HEAD do not use) is skipped.
                    let in_buffer = request.body.min(connection.input.len());
                    connection.input.drain(..in_buffer);
                    connection.skip = request.body - in_buffer;
                    connection.close_after = !request.keep_alive;
                    self.respond(connection, &request);
                }
            }
        }
        if connection.busy() {
            connection.last_active = now;
            self.send(socket, connection)?;
        }
        let finished = !connection.busy() && (connection.close_after || connection.peer_closed);
        Ok(!finished)
    }

    /// Writes what is ready, refilling from the file, until the socket is
    /// full or the turn is over.
    fn send(&mut self, socket: Socket, connection: &mut Connection) -> Result<(), Gone> {
        for _ in 0..CHUNKS_PER_TURN {
            // Keep a whole piece buffered while the file has more.
            if connection.output.len().saturating_sub(connection.sent) < WRITE_PIECE {
                connection.output.drain(..connection.sent);
                connection.sent = 0;
                if !self.refill(connection)? && connection.output.is_empty() {
                    return Ok(());
                }
            }
            let end = connection.output.len().min(connection.sent + WRITE_PIECE);
            let data = connection.output[connection.sent..end].to_vec();
            match self.call(Request::Write { socket, data }) {
                // Never past what was offered, whatever the service says.
                Ok(Response::Written(written)) => {
                    connection.sent = end.min(connection.sent.saturating_add(written as usize))
                }
                Ok(Response::Error(net::Error::WouldBlock)) => return Ok(()),
                _ => return Err(Gone),
            }
        }
        Ok(())
    }

    /// Appends the next chunk of the file being sent to the output;
    /// `Ok(false)` when the file has nothing more.
    fn refill(&mut self, connection: &mut Connection) -> Result<bool, Gone> {
        let Body::File { path, offset, end } = &mut connection.body else {
            return Ok(false);
        };
        if *offset >= *end {
            connection.body = Body::None;
            return Ok(false);
        }
        let len = (*end - *offset).min(u64::from(fs::MAX_DATA)) as u32;
        let response = self
            .files
            .request::<fs::Request, fs::Response>(&fs::Request::Read {
                path: path.clone(),
                offset: *offset,
                len,
            });
        match response {
            Ok(fs::Response::Data(data)) if !data.is_empty() => {
                *offset += data.len() as u64;
                if connection.output.is_empty() {
                    connection.output = data;
                } else {
                    connection.output.extend_from_slice(&data);
                }
                Ok(true)
            }
            // The file shrank, or the file system failed mid-response: the
            // length already promised cannot be kept, so the connection goes.
            other => {
                atoll_sdk::println!("reading {path} at {offset} failed: {other:?}");
                Err(Gone)
            }
        }
    }

    fn refuse(&mut self, connection: &mut Connection, refusal: Refusal) {
        let status = refusal.status();
        let body = format!("{} {}\n", status, http::reason(status));
        connection.input.clear();
        connection.close_after = true;
        connection.output = head(
            status,
            "text/plain; charset=utf-8",
            body.len() as u64,
            &[],
            false,
        );
        connection.output.extend_from_slice(body.as_bytes());
        connection.sent = 0;
    }

    fn respond(&mut self, connection: &mut Connection, request: &http::Request) {
        let keep = !connection.close_after;
        let (status, content_type, body, extra): (u16, &str, Vec<u8>, Vec<String>) =
            match request.path.as_str() {
                "/status" => (
                    200,
                    "text/html; charset=utf-8",
                    status_html().into_bytes(),
                    Vec::new(),
                ),
                "/status.json" => (
                    200,
                    "application/json",
                    status_json().into_bytes(),
                    Vec::new(),
                ),
                path => match self.file(connection, request, path, keep) {
                    Some(page) => page,
                    None => return,
                },
            };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        connection.output = head(status, content_type, body.len() as u64, &extra, keep);
        if request.method == Method::Get {
            connection.output.extend_from_slice(&body);
        }
        connection.sent = 0;
    }

    /// A file (head written into `connection`, body left to `refill`: `None`)
    /// or a generated page (listing, error).
    fn file(
        &mut self,
        connection: &mut Connection,
        request: &http::Request,
        path: &str,
        keep: bool,
    ) -> Option<(u16, &'static str, Vec<u8>, Vec<String>)> {
        let entry = match self
            .files
            .request::<fs::Request, fs::Response>(&fs::Request::Open {
                path: String::from(path),
            }) {
            Ok(fs::Response::Entry(entry)) => entry,
            Ok(fs::Response::Error(fs::Error::NotFound | fs::Error::NotADirectory)) => {
                return Some(error_page(404));
            }
            Ok(fs::Response::Error(fs::Error::InvalidName)) => return Some(error_page(404)),
            _ => return Some(error_page(503)),
        };
        if entry.directory {
            if !path.ends_with('/') {
                let location = format!("Location: {}/", http::encode_path(path));
                let (status, kind, body, _) = error_page(301);
                return Some((status, kind, body, alloc::vec![location]));
            }
            return Some(match self.listing(path) {
                Some(page) => (
                    200,
                    "text/html; charset=utf-8",
                    page.into_bytes(),
                    Vec::new(),
                ),
                None => error_page(503),
            });
        }
        let size = entry.size;
        let (status, start, end) = match http::byte_range(request.range.as_deref(), size) {
            Ok(None) => (200, 0, size),
            Ok(Some((start, end))) => (206, start, end),
            Err(()) => {
                let (status, kind, body, _) = error_page(416);
                return Some((
                    status,
                    kind,
                    body,
                    alloc::vec![format!("Content-Range: bytes */{size}")],
                ));
            }
        };
        let mut extra = alloc::vec![String::from("Accept-Ranges: bytes")];
        if status == 206 {
            extra.push(format!(
                "Content-Range: bytes {start}-{}/{size}",
                end.saturating_sub(1)
            ));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        connection.output = head(status, http::content_type(path), end - start, &extra, keep);
        connection.sent = 0;
        connection.body = if request.method == Method::Get {
            Body::File {
                path: String::from(path),
                offset: start,
                end,
            }
        } else {
            Body::None
        };
        None
    }

    fn listing(&self, path: &str) -> Option<String> {
        let mut entries = Vec::new();
        let mut start = 0u32;
        loop {
            match self
                .files
                .request::<fs::Request, fs::Response>(&fs::Request::List {
                    path: String::from(path),
                    start,
                }) {
                Ok(fs::Response::Entries {
                    entries: page,
                    more,
                }) => {
                    start += page.len() as u32;
                    let empty = page.is_empty();
                    entries.extend(page);
                    if !more || empty || entries.len() > 4096 {
                        break;
                    }
                }
                _ => return None,
            }
        }
        let title = http::html_escape(path);
        let mut page = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th></tr>\n"
        );
        if path != "/" {
            page.push_str("<tr><td><a href=\"../\">../</a></td><td></td></tr>\n");
        }
        for entry in entries {
            let name = if entry.directory {
                format!("{}/", entry.name)
            } else {
                entry.name.clone()
            };
            let size = if entry.directory {
                String::new()
            } else {
                format!("{}", entry.size)
            };
            let _ = writeln!(
                page,
                "<tr><td><a href=\"{}\">{}</a></td><td>{size}</td></tr>",
                http::encode_path(&format!("{path}{name}")),
                http::html_escape(&name)
            );
        }
        page.push_str("</table>\n</body></html>\n");
        Some(page)
    }
}

fn error_page(status: u16) -> (u16, &'static str, Vec<u8>, Vec<String>) {
    let body = format!("{status} {}\n", http::reason(status));
    (
        status,
        "text/plain; charset=utf-8",
        body.into_bytes(),
        Vec::new(),
    )
}

fn head(status: u16, content_type: &str, length: u64, extra: &[&str], keep_alive: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: atoll-httpd\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n",
        http::reason(status)
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    head.into_bytes()
}

/// Every service's record, from the kernel.
fn services() -> Vec<atoll_abi::info::ServiceInfo> {
    (0..)
        .map_while(|index| atoll_sdk::driver::service_info(index).ok())
        .collect()
}

fn status_json() -> String {
    let mut out = String::from("{");
    if let Ok(system) = atoll_sdk::driver::system_info() {
        let _ = write!(
            out,
            "\"system\":{{\"name\":{},\"uptime_ns\":{},\"services\":{},\"heap_in_use\":{},\"heap_available\":{},\"queued_bytes\":{},\"message_budget\":{},\"messages\":{},\"interrupts\":{}}},",
            http::json_string(&system.system_name),
            system.uptime_ns,
            system.services,
            system.heap_in_use,
            system.heap_available,
            system.queued_bytes,
            system.message_budget,
            system.messages,
            system.interrupts
        );
    }
    out.push_str("\"services\":[");
    for (index, service) in services().iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"name\":{},\"state\":{},\"memory_bytes\":{},\"fuel_used\":{},\"sent\":{},\"received\":{},\"restarts\":{},\"swaps\":{},\"dma_bytes\":{}}}",
            http::json_string(&service.name),
            http::json_string(service.state.name()),
            service.memory_bytes,
            service.fuel_used,
            service.sent,
            service.received,
            service.restarts,
            service.swaps,
            service.dma_bytes
        );
    }
    out.push_str("]}\n");
    out
}

fn status_html() -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\"><title>Atoll status</title>\n<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px;text-align:right}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}</style></head>\n<body>\n",
    );
    if let Ok(system) = atoll_sdk::driver::system_info() {
        let _ = write!(
            out,
            "<h1>Atoll: {}</h1>\n<p id=\"summary\">up {} s, {} services, kernel heap {} KiB in use and {} KiB free, {} messages, {} interrupts</p>\n",
            http::html_escape(&system.system_name),
            system.uptime_ns / 1_000_000_000,
            system.services,
            system.heap_in_use / 1024,
            system.heap_available / 1024,
            system.messages,
            system.interrupts
        );
    }
    out.push_str("<table id=\"services\">\n<tr><th>service</th><th>state</th><th>memory KiB</th><th>fuel</th><th>sent</th><th>received</th><th>restarts</th></tr>\n");
    for service in services() {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            http::html_escape(&service.name),
            http::html_escape(service.state.name()),
            service.memory_bytes / 1024,
            service.fuel_used,
            service.sent,
            service.received,
            service.restarts
        );
    }
    out.push_str("</table>\n<p><a href=\"/status.json\">JSON</a> · <a href=\"/\">files</a></p>\n</body></html>\n");
    out
}
