//! The network stack in QEMU, driven from the host: curl and plain TCP
//! clients against the default system's HTTP server, through QEMU's user
//! networking (`restrict=on`, a forwarded port on 127.0.0.1).
//!
//! Each test boots the default system with a data disk made from a folder
//! of generated files and a free host port, waits for the server's
//! "serving" line, and checks bytes, statuses and the serial log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(120);
const VM_TIMEOUT: Duration = Duration::from_secs(600);

/// Deterministic file contents (not all-zero, not periodic within a frame).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A folder for the data disk, holding the default disk's files plus
/// `BIG.BIN` (1 MiB) and `HUGE.BIN` (4 MiB).
fn disk_folder(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("network")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("DOCS")).unwrap();
    let default = support::workspace().join("examples/default/disk");
    for file in ["HELLO.TXT", "README.TXT"] {
        std::fs::copy(default.join(file), dir.join(file)).unwrap();
    }
    std::fs::copy(
        default.join("DOCS/ABOUT.TXT"),
        dir.join("DOCS").join("ABOUT.TXT"),
    )
    .unwrap();
    std::fs::write(dir.join("BIG.BIN"), pattern(1 << 20, 1)).unwrap();
    std::fs::write(dir.join("HUGE.BIN"), pattern(4 << 20, 2)).unwrap();
    dir
}

struct Web {
    vm: support::Vm,
    port: u16,
    folder: PathBuf,
}

/// Boots the default system with networking and waits until it serves.
fn boot(name: &str) -> Web {
    boot_system(
        name,
        support::workspace().join("examples/default/system.toml"),
    )
}

fn boot_system(name: &str, system: PathBuf) -> Web {
    boot_with(name, system, &[])
}

fn boot_with(name: &str, system: PathBuf, extra: &[&str]) -> Web {
    let folder = disk_folder(name);
    let port = support::free_port();
    let port_text = port.to_string();
    let mut args = vec![
        "--disk",
        folder.to_str().unwrap(),
        "--http-port",
        &port_text,
    ];
    args.extend_from_slice(extra);
    let mut vm = support::Vm::start_with(system, &args, VM_TIMEOUT);
    vm.wait_for_seen("[net] interface up: 10.0.2.15/24 via 10.0.2.2", BOOT);
    vm.wait_for_seen("[httpd] serving HTTP on port 80", BOOT);
    vm.wait_for_seen("[fat] mounted FAT16 volume", BOOT);
    Web { vm, port, folder }
}

impl Web {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// curl, with the serial log in the panic if it fails.
    fn curl(&self, args: &[&str]) -> Vec<u8> {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "120"])
            .args(args)
            .output()
            .expect("curl runs (apt-get install curl)");
        assert!(
            output.status.success(),
            "curl {args:?} failed: {}\nserial log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.vm.log
        );
        output.stdout
    }
}

/// One request on an open connection; returns (status, body).
fn exchange(stream: &mut BufReader<TcpStream>, request: &str) -> (u16, Vec<u8>) {
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    read_response(stream)
}

fn read_response(stream: &mut BufReader<TcpStream>) -> (u16, Vec<u8>) {
    let mut status_line = String::new();
    stream.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, body)
}

fn connect(port: u16) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    BufReader::new(stream)
}

#[test]
fn curl_fetches_a_1_mib_file_byte_exact_and_status_json_lists_every_service() {
    let web = boot("fetch");
    let big = web.curl(&[&web.url("/BIG.BIN")]);
    assert!(
        big == std::fs::read(web.folder.join("BIG.BIN")).unwrap(),
        "BIG.BIN differs ({} bytes)",
        big.len()
    );
    let range = web.curl(&["--range", "100-199", &web.url("/BIG.BIN")]);
    assert_eq!(range, pattern(1 << 20, 1)[100..200]);
    let listing = String::from_utf8(web.curl(&[&web.url("/")])).unwrap();
    assert!(
        listing.contains("<a href=\"/HUGE.BIN\">HUGE.BIN</a></td><td>4194304"),
        "{listing}"
    );
    let head = String::from_utf8(web.curl(&["--head", &web.url("/HELLO.TXT")])).unwrap();
    assert!(head.contains("Content-Length: 63"), "{head}");
    assert!(head.contains("Content-Type: text/plain"), "{head}");

    let json = web.curl(&[&web.url("/status.json")]);
    let status: serde_json::Value = serde_json::from_slice(&json)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&json)));
    let names: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|service| service["name"].as_str().unwrap())
        .collect();
    let system =
        std::fs::read_to_string(support::workspace().join("examples/default/system.toml")).unwrap();
    let described: Vec<&str> = system
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .skip(1) // the system's own name
        .collect();
    assert_eq!(names, described);
    assert_eq!(status["system"]["services"], described.len());
    let httpd = &status["services"][names.iter().position(|&n| n == "httpd").unwrap()];
    assert_eq!(httpd["state"], "running");
    assert!(httpd["sent"].as_u64().unwrap() > 300, "{httpd}");
    let page = String::from_utf8(web.curl(&[&web.url("/status")])).unwrap();
    assert!(page.contains("http-equiv=\"refresh\""), "{page}");
    assert!(page.contains("<td>virtio-net</td>"), "{page}");
}

#[test]
fn two_hundred_requests_over_twenty_keep_alive_connections_are_all_answered() {
    let web = boot("concurrent");
    let expected_hello = std::fs::read(web.folder.join("HELLO.TXT")).unwrap();
    let expected_about = std::fs::read(web.folder.join("DOCS/ABOUT.TXT")).unwrap();
    let started = Instant::now();
    let port = web.port;
    let clients: Vec<_> = (0..20)
        .map(|client| {
            let (hello, about) = (expected_hello.clone(), expected_about.clone());
            std::thread::spawn(move || {
                let mut stream = connect(port);
                for request in 0..10 {
                    let (path, expected) = if (client + request) % 2 == 0 {
                        ("/HELLO.TXT", &hello)
                    } else {
                        ("/DOCS/ABOUT.TXT", &about)
                    };
                    let (status, body) = exchange(
                        &mut stream,
                        &format!("GET {path} HTTP/1.1\r\nHost: atoll\r\n\r\n"),
                    );
                    assert_eq!(
                        (status, &body),
                        (200, expected),
                        "client {client} request {request}"
                    );
                }
                10
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        answered += client
            .join()
            .unwrap_or_else(|_| panic!("a client failed; serial log:\n{}", web.vm.log));
    }
    assert_eq!(answered, 200);
    eprintln!(
        "200 requests over 20 connections in {:?}",
        started.elapsed()
    );
}

#[test]
fn malformed_and_oversized_requests_get_400_413_414_and_the_server_keeps_serving() {
    let web = boot("malformed");
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(5000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Filler: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let cases: [(&str, &str, u16); 7] = [
        ("garbage", "GARBAGE\r\n\r\n", 400),
        ("no host", "GET / HTTP/1.1\r\n\r\n", 400),
        ("bad escape", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("climbing", "GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (
            "binary",
            "\u{1}\u{2}\u{3} / HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
        ),
        ("long target", &long_target, 414),
        ("big header", &big_header, 413),
    ];
    for (what, request, expected) in cases {
        let mut stream = connect(web.port);
        let (status, _) = exchange(&mut stream, request);
        assert_eq!(status, expected, "{what}; serial log:\n{}", web.vm.log);
        // The connection is closed after a refusal.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{what}: bytes after the refusal");
    }
    // A client that sends half a request and disappears, one that connects
    // and goes without a word.
    {
        let mut stream = connect(web.port);
        stream.get_mut().write_all(b"GET /HELLO.TXT HTT").unwrap();
    }
    {
        let _silent = TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    }
    let mut stream = connect(web.port);
    let (status, body) = exchange(&mut stream, "GET /HELLO.TXT HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        (status, body),
        (200, std::fs::read(web.folder.join("HELLO.TXT")).unwrap())
    );
    let (status, _) = exchange(&mut stream, "GET /MISSING.TXT HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _) = exchange(
        &mut stream,
        "GET /BIG.BIN HTTP/1.1\r\nHost: a\r\nRange: bytes=2000000-\r\n\r\n",
    );
    assert_eq!(status, 416);
    let mut stream = connect(web.port);
    let (status, _) = exchange(&mut stream, "DELETE /HELLO.TXT HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(status, 405);
    web.vm
        .log
        .contains("faulted")
        .then(|| panic!("a service faulted:\n{}", web.vm.log));
}

/// Size of a file being written, 0 while it does not exist.
fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_4_mib_download_survives_a_restart_and_a_hot_swap_of_the_network_driver() {
    let mut web = boot("driver-restart");
    let out = web.folder.join("..").join("driver-restart.out");
    let _ = std::fs::remove_file(&out);
    // At most 1 MB/s, so that the restart and the swap both fall inside it.
    let mut curl = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "300"])
        .args(["--limit-rate", "1M", "--output"])
        .arg(&out)
        .arg(web.url("/HUGE.BIN"))
        .spawn()
        .expect("curl runs");
    let wait_for_bytes = |web: &Web, curl: &mut std::process::Child, bytes: u64| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while size_of(&out) < bytes {
            assert!(
                Instant::now() < deadline,
                "the download does not progress:\n{}",
                web.vm.log
            );
            assert!(
                curl.try_wait().unwrap().is_none(),
                "curl ended early:\n{}",
                web.vm.log
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Restart the driver once a quarter of the file has arrived.
    wait_for_bytes(&web, &mut curl, 1 << 20);
    web.vm.type_line("restart virtio-net");
    web.vm.wait_for(
        "atoll: service virtio-net restarted (1 so far)",
        Duration::from_secs(60),
    );
    let at_restart = size_of(&out);
    web.vm.wait_for(
        "[virtio-net] network card at 00:06.0",
        Duration::from_secs(60),
    );
    // Then swap a new version in from the host once half has arrived (the
    // description's own module: a new instance, the endpoints and queues
    // kept, the card set up again).
    wait_for_bytes(&web, &mut curl, 2 << 20);
    let at_swap = size_of(&out);
    let pushed = support::image_builder()
        .arg("push")
        .arg(support::workspace().join("examples/default/system.toml"))
        .args(["--instance", &web.vm.instance])
        .args(["--service", "virtio-net", "--watch", "0"])
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "push: {}{}\n{}",
        String::from_utf8_lossy(&pushed.stdout),
        String::from_utf8_lossy(&pushed.stderr),
        web.vm.log
    );
    web.vm.wait_for(
        "atoll: service virtio-net swapped to a new version (1 swaps)",
        Duration::from_secs(60),
    );
    // The new version set the card up again (in its own buffers).
    web.vm.wait_for(
        "[virtio-net] network card at 00:06.0",
        Duration::from_secs(60),
    );
    let status = curl.wait().unwrap();
    assert!(
        status.success(),
        "curl failed ({status}); serial log:\n{}",
        web.vm.log
    );
    assert!(
        at_restart < at_swap && at_swap < 4 << 20,
        "the download ended before the restart ({at_restart}) or the swap ({at_swap})"
    );
    let got = std::fs::read(&out).unwrap();
    assert!(
        got == std::fs::read(web.folder.join("HUGE.BIN")).unwrap(),
        "HUGE.BIN differs after the restart and the swap ({} bytes)",
        got.len()
    );
    // The connection above the driver is the same one: the TCP/IP service
    // was neither restarted nor swapped.
    assert!(
        !web.vm.log.contains("service net restarted")
            && !web.vm.log.contains("service net swapped"),
        "{}",
        web.vm.log
    );
}

#[test]
fn the_shell_shows_the_interface_and_sockets_and_pings_and_httpd_restarts() {
    let mut web = boot("shell");
    // QEMU's DHCP server hands out the same addresses as the static ones.
    web.vm.wait_for_seen(
        "[net] interface up: 10.0.2.15/24 via 10.0.2.2 (DHCP lease)",
        Duration::from_secs(60),
    );
    web.vm.type_line("ifconfig");
    web.vm.wait_for(
        "eth0: link up, mac 52:54:00:12:34:56, mtu 1514",
        Duration::from_secs(30),
    );
    web.vm.wait_for(
        "inet 10.0.2.15/24 gateway 10.0.2.2 (dhcp)",
        Duration::from_secs(30),
    );
    web.vm.type_line("netstat");
    web.vm.wait_for_line(
        "httpd's listening socket",
        |line| {
            line.starts_with("tcp")
                && line.contains("*:80")
                && line.contains("LISTEN")
                && line.ends_with("httpd")
        },
        Duration::from_secs(30),
    );
    web.vm.type_line("ping 10.0.2.2 3");
    web.vm
        .wait_for("3 sent, 3 answered", Duration::from_secs(60));
    web.vm.type_line("ping 10.0.2.99 1");
    web.vm.wait_for(
        "seq=1: the TCP/IP service: timed out",
        Duration::from_secs(60),
    );
    web.vm.type_line("ping nowhere");
    web.vm.wait_for(
        "error: `nowhere` is not an IPv4 address",
        Duration::from_secs(30),
    );
    // A restarted HTTP server gets its port back at once (the TCP/IP
    // service drops its previous instance's sockets) and serves.
    web.vm.type_line("restart httpd");
    web.vm.wait_for(
        "atoll: service httpd restarted (1 so far)",
        Duration::from_secs(30),
    );
    web.vm
        .wait_for("[httpd] serving HTTP on port 80", Duration::from_secs(30));
    let hello = std::fs::read(web.folder.join("HELLO.TXT")).unwrap();
    assert_eq!(web.curl(&[&web.url("/HELLO.TXT")]), hello);
}

#[test]
fn the_tcp_ip_service_faulting_is_restarted_and_a_new_request_succeeds() {
    let mut web = boot_system("fault", support::system("net-fault"));
    let hello = std::fs::read(web.folder.join("HELLO.TXT")).unwrap();
    assert_eq!(web.curl(&[&web.url("/HELLO.TXT")]), hello);
    // The faulty build traps on `ifconfig`'s request.
    web.vm.type_line("ifconfig");
    web.vm.wait_for(
        "[net] fault injection: trapping on an Interface request",
        Duration::from_secs(30),
    );
    web.vm
        .wait_for("atoll: service net faulted", Duration::from_secs(30));
    web.vm.wait_for(
        "atoll: service net restarted (1 so far)",
        Duration::from_secs(30),
    );
    web.vm.wait_for(
        "[net] interface up: 10.0.2.15/24 via 10.0.2.2",
        Duration::from_secs(60),
    );
    web.vm
        .wait_for("[httpd] serving HTTP on port 80", Duration::from_secs(60));
    assert_eq!(web.curl(&[&web.url("/HELLO.TXT")]), hello);
    let big = web.curl(&[&web.url("/BIG.BIN")]);
    assert!(
        big == pattern(1 << 20, 1),
        "BIG.BIN differs after the restart"
    );
}

#[test]
fn chromium_renders_the_status_page_with_every_service() {
    let web = boot("chromium");
    let shots = support::workspace().join("target/network");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join("status.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chromium-profile");
    let chromium = |extra: &[&str]| {
        let output = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--window-size=1024,768")
            .args(extra)
            .arg(web.url("/status"))
            .output()
            .expect("chromium runs (apt-get install chromium)");
        assert!(
            output.status.success(),
            "chromium {extra:?} failed: {}\nserial log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            web.vm.log
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.contains("<table id=\"services\">"), "{dom}");
    for service in [
        "supervisor",
        "console",
        "virtio-net",
        "net",
        "httpd",
        "fat",
        "shell",
    ] {
        assert!(
            dom.contains(&format!("<td>{service}</td>")),
            "{service} missing:\n{dom}"
        );
    }
    chromium(&[&format!("--screenshot={}", screenshot.display())]);
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot: {}", screenshot.display());
}

#[test]
fn the_link_going_down_and_up_reaches_the_driver_and_ifconfig() {
    let monitor = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("network")
        .join("link-monitor.sock");
    let mut web = boot_with(
        "link",
        support::workspace().join("examples/default/system.toml"),
        &["--monitor", monitor.to_str().unwrap()],
    );
    let mut qemu = std::os::unix::net::UnixStream::connect(&monitor).unwrap();
    qemu.write_all(b"set_link n0 off\n").unwrap();
    // A configuration interrupt tells the driver, which tells the TCP/IP
    // service.
    web.vm
        .wait_for("[virtio-net] link down", Duration::from_secs(30));
    web.vm.type_line("ifconfig");
    web.vm.wait_for("eth0: link down", Duration::from_secs(30));
    qemu.write_all(b"set_link n0 on\n").unwrap();
    web.vm
        .wait_for("[virtio-net] link up", Duration::from_secs(30));
    web.vm.type_line("ifconfig");
    web.vm.wait_for("eth0: link up", Duration::from_secs(30));
    let hello = std::fs::read(web.folder.join("HELLO.TXT")).unwrap();
    assert_eq!(web.curl(&[&web.url("/HELLO.TXT")]), hello);
}

#[test]
fn unmodified_wasi_programs_in_rust_and_go_serve_http_on_their_listening_sockets() {
    // tests/systems/wasi-sockets.toml: Rust std on guest port 8081, Go
    // net/http on 8082, each given its listening socket as descriptor 3.
    let rust_port = support::free_port();
    let go_port = support::free_port();
    let http_port = support::free_port().to_string();
    let rust_forward = format!("{rust_port}:8081");
    let go_forward = format!("{go_port}:8082");
    let mut vm = support::Vm::start_with(
        support::system("wasi-sockets"),
        &[
            "--http-port",
            &http_port,
            "--forward",
            &rust_forward,
            "--forward",
            &go_forward,
        ],
        VM_TIMEOUT,
    );
    vm.wait_for_seen("[net] interface up: 10.0.2.15/24 via 10.0.2.2", BOOT);
    vm.wait_for_seen(
        "[rust-server] rust-server: serving HTTP on descriptor 3",
        BOOT,
    );
    vm.wait_for_seen("[go-server] go-server: serving HTTP on descriptor 3", BOOT);
    let curl = |port: u16, path: &str| -> String {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--max-time", "60"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs (apt-get install curl)");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    let log = |vm: &support::Vm| vm.log.clone();
    // A declared socket listens from the program's first call on it (its
    // first accept), which may come a moment after its line on the console:
    // until then the guest resets connections to the port (curl's 56, or
    // 7 / 52). Request 1 to each server is retried until it is answered,
    // for at most 60 s; the rest must be answered at once.
    for (port, path) in [(rust_port, "/rust/1"), (go_port, "/go/1")] {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = curl(port, path);
            if answer.starts_with("Hello from") {
                assert!(
                    answer.ends_with(&format!(": request 1 for {path}\n")),
                    "{answer}"
                );
                print!("answered: {answer}");
                break;
            }
            let not_yet = ["(56)", "(7)", "(52)"]
                .iter()
                .any(|code| answer.contains(code));
            assert!(
                not_yet && std::time::Instant::now() < deadline,
                "{answer}\nserial log:\n{}",
                log(&vm)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    for request in 2..=5 {
        let body = curl(rust_port, &format!("/rust/{request}"));
        assert_eq!(
            body,
            format!(
                "Hello from a Rust std program (wasm32-wasip1) on Atoll: request {request} for /rust/{request}\n"
            ),
            "serial log:\n{}",
            log(&vm)
        );
        print!("rust-server answered: {body}");
        let body = curl(go_port, &format!("/go/{request}"));
        assert_eq!(
            body,
            format!(
                "Hello from a Go net/http program (GOOS=wasip1) on Atoll: request {request} for /go/{request}\n"
            ),
            "serial log:\n{}",
            log(&vm)
        );
        print!("go-server answered: {body}");
    }
    // Go's server keeps a connection alive: three requests on one.
    let mut stream = connect(go_port);
    for request in 6..=8 {
        let (status, body) = exchange(&mut stream, "GET /kept HTTP/1.1\r\nHost: atoll\r\n\r\n");
        assert_eq!(status, 200);
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!(
                "Hello from a Go net/http program (GOOS=wasip1) on Atoll: request {request} for /kept\n"
            )
        );
    }
    vm.wait_for_seen("[go-server] go-server: answered request 8 for /kept", BOOT);
    vm.wait_for_seen(
        "[rust-server] rust-server: answered request 5 for /rust/5",
        BOOT,
    );
}
