//! The network rows of `image-builder bench`: the default system in QEMU
//! with user networking, measured from the host through the forwarded port
//! (curl bulk download, `ab` keep-alive requests per second and their 99th
//! percentile time) and from the
//! guest's shell (`ping` of QEMU's gateway).

use crate::builder::{self, BuildOptions};
use crate::error::{Context, Error};
use crate::qemu;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Size of the bulk download.
const BULK_BYTES: usize = 4 << 20;
const BULK_RUNS: usize = 3;
/// `ab`: requests and concurrency (keep-alive).
const AB_REQUESTS: u32 = 500;
const AB_CONCURRENCY: u32 = 10;
const PINGS: u32 = 10;

/// What was measured; `None` where a tool is missing or a step failed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Network {
    /// Median of [`BULK_RUNS`] downloads, megabytes (10^6) per second.
    pub bulk_mb_per_s: Option<f64>,
    pub requests_per_s: Option<f64>,
    /// `ab`'s 99th percentile of request time (connection included),
    /// milliseconds.
    pub p99_ms: Option<f64>,
    /// Average round trip to 10.0.2.2, milliseconds.
    pub ping_ms: Option<f64>,
}

/// A host port nobody listens on now.
fn free_port() -> Result<u16, Error> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context(|| "binding a free port".to_string())?;
    Ok(listener
        .local_addr()
        .context(|| "reading a bound port".to_string())?
        .port())
}

/// Waits for a console line containing `marker`.
fn wait_for(lines: &mpsc::Receiver<String>, marker: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100))
            && line.contains(marker)
        {
            return Some(line);
        }
    }
    None
}

pub fn run(options: &BuildOptions) -> Result<Network, Error> {
    let path = options.workspace.join("examples/default/system.toml");
    let system = crate::manifest::load(&path).map_err(Error::Diagnostics)?;
    let bench_dir = options.workspace.join("target").join("bench");
    let folder = bench_dir.join("network-files");
    std::fs::create_dir_all(&folder).context(|| format!("creating {}", folder.display()))?;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let contents: Vec<u8> = (0..BULK_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(folder.join("BULK.BIN"), &contents)
        .context(|| format!("writing {}", folder.display()))?;
    std::fs::write(folder.join("SMALL.TXT"), "a small file for ab\n")
        .context(|| format!("writing {}", folder.display()))?;
    let image = bench_dir.join("network.img");
    crate::disk::make_fat_image(&folder, 16, &image)?;
    let artifacts = builder::build(&system, options)?;
    let boot_image = artifacts
        .bios_image
        .ok_or_else(|| Error::Other("no BIOS image was written".into()))?;
    let port = free_port()?;
    let run_options = qemu::RunOptions {
        uefi: false,
        timeout: None,
        gdb: false,
        memory_mib: 512,
        disk: Some(image),
        network: Some(qemu::Network {
            host_port: port,
            forwards: Vec::new(),
            capture: None,
            monitor: None,
        }),
        control_socket: None,
    };
    let mut child = qemu::spawn(
        qemu::command(&boot_image, &run_options)?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        &run_options,
    )
    .context(|| "starting qemu-system-x86_64".to_string())?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Other("QEMU's output is not captured".into()))?;
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line.replace('\r', "")).is_err() {
                break;
            }
        }
    });
    let result = measure(&mut child, &lines, port, &contents);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn measure(
    child: &mut std::process::Child,
    lines: &mpsc::Receiver<String>,
    port: u16,
    contents: &[u8],
) -> Result<Network, Error> {
    if wait_for(
        lines,
        "[httpd] serving HTTP on port 80",
        Duration::from_secs(180),
    )
    .is_none()
    {
        return Err(Error::Other("the HTTP server did not start in QEMU".into()));
    }
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let mut network = Network::default();

    let mut speeds = Vec::new();
    for _ in 0..BULK_RUNS {
        let started = Instant::now();
        let output = Command::new("curl")
            .args(["--silent", "--max-time", "300"])
            .arg(url("/BULK.BIN"))
            .output();
        let elapsed = started.elapsed().as_secs_f64();
        match output {
            Ok(output) if output.status.success() && output.stdout == contents => {
                speeds.push(contents.len() as f64 / elapsed / 1e6);
            }
            Ok(output) => eprintln!(
                "bench: a bulk download failed or differed ({} bytes)",
                output.stdout.len()
            ),
            Err(error) => eprintln!("bench: curl: {error} (apt-get install curl)"),
        }
    }
    speeds.sort_by(f64::total_cmp);
    network.bulk_mb_per_s = speeds.get(speeds.len() / 2).copied();

    match Command::new("ab")
        .args(["-q", "-k", "-n", &AB_REQUESTS.to_string()])
        .args(["-c", &AB_CONCURRENCY.to_string()])
        .arg(url("/SMALL.TXT"))
        .output()
    {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            let failed = text
                .lines()
                .find_map(|line| line.strip_prefix("Failed requests:"))
                .and_then(|n| n.trim().parse::<u32>().ok());
            network.requests_per_s = text
                .lines()
                .find_map(|line| line.strip_prefix("Requests per second:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .filter(|_| failed == Some(0));
            network.p99_ms = text
                .lines()
                .find_map(|line| line.trim_start().strip_prefix("99%"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|ms| ms.parse().ok())
                .filter(|_| failed == Some(0));
            if network.requests_per_s.is_none() {
                eprintln!("bench: ab failed:\n{text}");
            }
        }
        Err(error) => eprintln!("bench: ab: {error} (apt-get install apache2-utils)"),
    }

    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin
            .write_all(format!("ping 10.0.2.2 {PINGS}\r").as_bytes())
            .and_then(|()| stdin.flush());
        if let Some(line) = wait_for(lines, " answered, average ", Duration::from_secs(120)) {
            network.ping_ms = line
                .split("average ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|ms| ms.parse().ok());
        }
    }
    Ok(network)
}
