//! A longer listen backlog for QEMU's forwarded ports.
//!
//! QEMU's user networking (libslirp's `tcp_listen`) listens on each forwarded
//! host port with a backlog of one, and accepts from QEMU's main loop. When a
//! browser or `ab` opens several connections at once, the host kernel drops
//! the SYNs that find that accept queue full, and the client sends them again
//! only after its one-second retransmission timeout: a page load or a request
//! waits a second before the guest ever sees it (docs/network.md, "From the
//! host"). [`widen`] gives those sockets a backlog of
//! [`BACKLOG`]: `pidfd_getfd` (Linux 5.6) lends image-builder a socket of its
//! own child, and `listen` on a socket that already listens only changes its
//! backlog. It is best effort: where the host refuses (an older kernel, a
//! sandbox without `pidfd_getfd`), QEMU keeps its backlog of one and the run
//! goes on, with a note on stderr.

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// The backlog QEMU's forwarded ports get (that of a busy web server).
pub const BACKLOG: i32 = 128;

/// How long QEMU may take to open its forwarded ports.
const SETTLE: Duration = Duration::from_secs(10);

/// Widens the backlog of QEMU's (process `pid`, just spawned: not yet
/// reaped, so the number names QEMU) listening sockets on 127.0.0.1 at
/// `ports`, from a thread that waits for QEMU to open them.
pub fn widen(pid: u32, ports: Vec<u16>) {
    // The pidfd pins the process: once QEMU is gone, `pidfd_getfd` fails
    // with ESRCH, even if its number is reused.
    let pidfd = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or(Errno::SRCH)
        .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()));
    let pidfd = match pidfd {
        Ok(pidfd) => pidfd,
        Err(error) => {
            eprintln!(
                "image-builder: note: QEMU keeps its listen backlog of 1 (pidfd_open: {error})"
            );
            return;
        }
    };
    std::thread::spawn(move || {
        let deadline = Instant::now() + SETTLE;
        let mut left = ports;
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|&port| match widen_port(pid, &pidfd, port) {
                Ok(done) => !done,
                // QEMU ended before it listened: nothing to widen.
                Err(Failure::Gone) => false,
                Err(Failure::Refused(reason)) => {
                    eprintln!(
                        "image-builder: note: port {port} keeps QEMU's listen backlog of 1 ({reason})"
                    );
                    false
                }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        for port in left {
            eprintln!(
                "image-builder: note: port {port} keeps QEMU's listen backlog of 1 (QEMU did not listen on it within {} s)",
                SETTLE.as_secs()
            );
        }
    });
}

/// Why a socket was not widened.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The process has ended.
    Gone,
    /// The host refused (or something else went wrong), with the reason.
    Refused(String),
}

/// Re-listens on the socket process `pid` (`pidfd`) listens with on
/// 127.0.0.1:`port`. `Ok(false)`: it does not listen yet.
fn widen_port(pid: u32, pidfd: &OwnedFd, port: u16) -> Result<bool, Failure> {
    if ended(pidfd) {
        return Err(Failure::Gone);
    }
    let inodes = listening_inodes(port).map_err(Failure::Refused)?;
    if inodes.is_empty() {
        return Ok(false);
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Err(Failure::Gone);
    };
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
        let Some(inode) = inode.filter(|inode| inodes.contains(inode)) else {
            continue;
        };
        let socket = match rustix::process::pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty()) {
            Ok(socket) => socket,
            Err(Errno::SRCH) => return Err(Failure::Gone),
            Err(error) => return Err(Failure::Refused(format!("pidfd_getfd: {error}"))),
        };
        // The descriptor may have been closed and its number reused since
        // /proc was read: widen only the socket that was matched.
        let same = rustix::fs::fstat(&socket).is_ok_and(|stat| stat.st_ino == inode);
        if !same {
            continue;
        }
        rustix::net::listen(&socket, BACKLOG)
            .map_err(|error| Failure::Refused(format!("listen: {error}")))?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether the process of `pidfd` has ended (its pidfd turns readable).
fn ended(pidfd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&now)).is_ok_and(|ready| ready > 0)
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
        let pidfd = rustix::process::pidfd_open(
            Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap(),
            PidfdFlags::empty(),
        )
        .unwrap();
        let widened = widen_port(child.id(), &pidfd, port);
        let after = connections(port, 8, &mut held);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(before, 2);
        assert_eq!(widened, Ok(true));
        assert_eq!(after, 8);
        // Reaped: the pidfd says so, whatever now holds its number.
        assert_eq!(widen_port(child.id(), &pidfd, port), Err(Failure::Gone));
    }
}
