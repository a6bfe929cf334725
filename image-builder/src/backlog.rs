//! A longer listen backlog for QEMU's forwarded ports.
//!
//! QEMU's user networking (libslirp's `tcp_listen`) listens on each forwarded
//! host port with a backlog of one, and accepts from QEMU's main loop. When a
//! browser or `ab` opens several connections at once, the host kernel drops
//! the SYNs that find that accept queue full, and the client sends them again
//! only after its one-second retransmission timeout: a page load or a request
//! waits a second before the guest ever sees it (docs/network.md, "Reaching
//! the system from the host"). [`widen`] gives those sockets a backlog of
//! [`BACKLOG`]: `pidfd_getfd` (Linux 5.6) lends image-builder a socket of its
//! own child, and `listen` on a socket that already listens only changes its
//! backlog. It is best effort: where the host refuses (an older kernel, a
//! sandbox without `pidfd_getfd`), QEMU keeps its backlog of one and the run
//! goes on, with a note on stderr.

use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags};
use std::time::{Duration, Instant};

/// The backlog QEMU's forwarded ports get (that of a busy web server).
pub const BACKLOG: i32 = 128;

/// How long QEMU may take to open its forwarded ports.
const SETTLE: Duration = Duration::from_secs(10);

/// Widens the backlog of QEMU's (process `pid`) listening sockets on
/// 127.0.0.1 at `ports`, from a thread that waits for QEMU to open them.
pub fn widen(pid: u32, ports: Vec<u16>) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + SETTLE;
        let mut left = ports;
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|&port| match widen_port(pid, port) {
                Ok(done) => !done,
                // QEMU ended before it listened: nothing to widen.
                Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => false,
                Err(reason) => {
                    eprintln!(
                        "image-builder: note: port {port} keeps QEMU's listen backlog of 1 ({reason})"
                    );
                    false
                }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// Re-listens on process `pid`'s socket listening on 127.0.0.1:`port`.
/// `Ok(false)`: it does not listen yet.
fn widen_port(pid: u32, port: u16) -> Result<bool, String> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Ok(false);
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|error| format!("reading QEMU's descriptors: {error}"))?;
    for entry in fds.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|inode| inode.parse::<u64>().ok());
        let Some(fd) = entry.file_name().to_str().and_then(|fd| fd.parse().ok()) else {
            continue;
        };
        if inode.is_some_and(|inode| inodes.contains(&inode)) {
            let pid = i32::try_from(pid)
                .ok()
                .and_then(Pid::from_raw)
                .ok_or("no such process")?;
            let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())
                .map_err(|error| format!("pidfd_open: {error}"))?;
            let socket = rustix::process::pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())
                .map_err(|error| format!("pidfd_getfd: {error}"))?;
            rustix::net::listen(&socket, BACKLOG).map_err(|error| format!("listen: {error}"))?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The inodes of the IPv4 sockets listening on 127.0.0.1:`port`, from
/// `/proc/net/tcp` (`local_address` is the address and port in hex, the
/// address in the kernel's byte order; state `0A` is LISTEN).
fn listening_inodes(port: u16) -> Result<Vec<u64>, String> {
    let table = std::fs::read_to_string("/proc/net/tcp")
        .map_err(|error| format!("reading /proc/net/tcp: {error}"))?;
    Ok(parse_listening(&table, port))
}

fn parse_listening(table: &str, port: u16) -> Vec<u64> {
    let local = format!("{:08X}:{port:04X}", u32::from_ne_bytes([127, 0, 0, 1]));
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, address, _, "0A", _, _, _, _, _, inode, ..] if *address == local => {
                    inode.parse().ok()
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_socket_listening_on_loopback_at_the_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4245 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(parse_listening(table, 8080), vec![4242]);
        assert_eq!(parse_listening(table, 8081), vec![4245]);
        assert_eq!(parse_listening(table, 9000), Vec::<u64>::new());
    }

    /// Opens `count` connections to `port` (none is accepted); how many the
    /// host completed within a short timeout.
    fn connections(port: u16, count: usize, held: &mut Vec<std::net::TcpStream>) -> usize {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        (0..count)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)).ok()
            })
            .map(|stream| held.push(stream))
            .count()
    }

    #[test]
    fn a_child_listening_with_a_backlog_of_one_gets_a_longer_one() {
        // A child process that listens with a backlog of one and never
        // accepts, as QEMU's slirp does while its main loop is busy.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen(1)\nprint('up',flush=True)\ntime.sleep(30)"
                ),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let mut held = Vec::new();
        // Linux queues backlog + 1 connections and drops the next SYNs.
        let before = connections(port, 4, &mut held);
        let widened = widen_port(child.id(), port);
        let after = connections(port, 8, &mut held);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(before, 2);
        assert_eq!(widened, Ok(true));
        assert_eq!(after, 8);
    }
}
