//! `image-builder bench`: measures IPC and spawn costs and prints a table.
//!
//! One benchmark system (`tests/systems/bench.toml`) runs twice: in QEMU (the
//! real kernel under TCG emulation) and hosted on Linux (the same kernel core
//! and interpreter, natively). Its client service prints `bench: NAME=VALUE`
//! lines; the kernel's boot log gives each service's load time and the TSC
//! frequency. A Linux pipe round trip between two processes, measured in the
//! same run, is the baseline. Figures go to the terminal as a table and to
//! `target/bench/results.jsonl` as JSON lines.

use crate::builder::{self, BuildOptions, Firmware};
use crate::error::{Context, Error};
use crate::manifest::System;
use crate::{boot_time, charts, compute, hosted, netbench, qemu, trace_bench};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Table names of the compute kernels, in the order of [`compute::KERNELS`].
const COMPUTE_NAMES: [&str; 9] = [
    "compute: SHA-256 of 1 MiB",
    "compute: sort 100,000 u32",
    "compute: f64 matrix multiply 128x128",
    "compute: UTF-8 scan of 1 MiB",
    "compute: postcard 4,000 round trips",
    "compute (C): SHA-256 of 1 MiB",
    "compute (C): heap sort 100,000 u32",
    "compute (C): f64 matrix multiply 128x128",
    "compute (C): UTF-8 scan of 1 MiB",
];

/// Prints the compute table: milliseconds per place, then the ratios the
/// issue sets targets for.
fn print_compute(compute: &compute::Compute) {
    let at = |place: usize, name: &str| {
        compute
            .places
            .get(place)
            .and_then(|timings| timings.ns.get(name))
            .map(|ns| ns / 1e6)
    };
    let show = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let ratio = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}x"));
    println!();
    println!(
        "| {:<38} | {:>14} | {:>11} | {:>8} | {:>11} | {:>11} | {:>14} | {:>12} | {:>12} | {:>12} |",
        "compute (ms)",
        "guest baseline",
        "guest now",
        "speed-up",
        "hosted core",
        "plain wasmi",
        "hosted / wasmi",
        "wasmi portable",
        "wasmi + fuel",
        "hosted / w+f"
    );
    println!(
        "|{:-<40}|{:->16}|{:->13}|{:->10}|{:->13}|{:->13}|{:->16}|{:->14}|{:->14}|{:->14}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    for (index, name) in compute::KERNELS.iter().enumerate() {
        let [baseline, guest, hosted, wasmi, portable, fuel] =
            [0, 1, 2, 3, 4, 5].map(|place| at(place, name));
        // Throughput ratios: time of the reference / time of the measured.
        let speed_up = baseline.zip(guest).map(|(before, now)| before / now);
        let hosted_vs_wasmi = wasmi.zip(hosted).map(|(wasmi, hosted)| wasmi / hosted);
        let hosted_vs_fuel = fuel.zip(hosted).map(|(fuel, hosted)| fuel / hosted);
        println!(
            "| {:<38} | {:>14} | {:>11} | {:>8} | {:>11} | {:>11} | {:>14} | {:>12} | {:>12} | {:>12} |",
            COMPUTE_NAMES.get(index).copied().unwrap_or(name),
            show(baseline),
            show(guest),
            ratio(speed_up),
            show(hosted),
            show(wasmi),
            ratio(hosted_vs_wasmi),
            show(portable),
            show(fuel),
            ratio(hosted_vs_fuel)
        );
    }
    println!(
        "speed-up: guest throughput now / baseline kernel (soft-float, portable dispatch); hosted / wasmi: throughput of the hosted core relative to plain wasmi (default features and Config); hosted / w+f: the same against plain wasmi with fuel metering on (unlimited fuel)"
    );
}

/// Round trips of the pipe baseline.
const PIPE_ROUND_TRIPS: u32 = 20_000;
/// Bytes per pipe message, as in the IPC benchmark.
const MESSAGE_LEN: usize = 16;

/// Where each figure of a [`Row`] was measured.
const PLACES: [&str; 3] = ["guest", "hosted", "linux-pipe"];

/// One line of the table: a figure per place of [`PLACES`].
struct Row {
    name: &'static str,
    unit: &'static str,
    values: [Option<f64>; 3],
}

/// What one run of the benchmark system printed.
#[derive(Default, Debug)]
struct Figures {
    values: BTreeMap<String, f64>,
    /// Load times of the `spawn-*` services, in microseconds.
    spawn_us: Vec<f64>,
    tsc_mhz: Option<f64>,
}

fn parse(console: &str) -> Figures {
    let mut figures = Figures::default();
    for line in console.lines() {
        if let Some(rest) = line.split("bench: ").nth(1)
            && let Some((name, value)) = rest.split_once('=')
            && let Ok(value) = value.trim().parse::<f64>()
        {
            figures.values.insert(name.to_string(), value);
        }
        if let Some(rest) = line.strip_prefix("atoll: loaded service spawn-")
            && let Some(micros) = rest.split(", ").nth(1)
            && let Some(micros) = micros.strip_suffix(" us)")
            && let Ok(micros) = micros.parse::<f64>()
        {
            figures.spawn_us.push(micros);
        }
        if let Some(rest) = line.strip_prefix("atoll: clock ")
            && let Some(mhz) = rest.split(' ').next()
            && let Ok(mhz) = mhz.parse::<f64>()
        {
            figures.tsc_mhz = Some(mhz);
        }
    }
    figures
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// The host CPU's nominal clock, for converting host nanoseconds to cycles.
fn host_mhz() -> Option<f64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// The child side of the pipe baseline: echoes fixed-size messages.
pub fn pipe_echo() -> Result<(), Error> {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut message = [0u8; MESSAGE_LEN];
    while stdin.read_exact(&mut message).is_ok() {
        stdout
            .write_all(&message)
            .and_then(|()| stdout.flush())
            .context(|| "echoing".to_string())?;
    }
    Ok(())
}

/// Round trip of a 16-byte message through two pipes between two processes.
fn pipe_round_trip_ns() -> Result<f64, Error> {
    let exe = std::env::current_exe().context(|| "finding image-builder".to_string())?;
    let mut child = Command::new(exe)
        .arg("pipe-echo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context(|| "starting the pipe echo process".to_string())?;
    let (Some(mut to_child), Some(mut from_child)) = (child.stdin.take(), child.stdout.take())
    else {
        return Err(Error::Other("pipes to the echo process are missing".into()));
    };
    let mut message = [7u8; MESSAGE_LEN];
    let mut round_trip = |message: &mut [u8; MESSAGE_LEN]| {
        to_child
            .write_all(message)
            .and_then(|()| to_child.flush())
            .and_then(|()| from_child.read_exact(message))
            .context(|| "pipe round trip".to_string())
    };
    for _ in 0..1000 {
        round_trip(&mut message)?;
    }
    let started = Instant::now();
    for _ in 0..PIPE_ROUND_TRIPS {
        round_trip(&mut message)?;
    }
    let elapsed = started.elapsed();
    drop(to_child);
    let _ = child.wait();
    Ok(elapsed.as_nanos() as f64 / f64::from(PIPE_ROUND_TRIPS))
}

/// Loads `tests/systems/<file>` and builds the two counter versions that the
/// swap benchmarks alternate: [v2, v1].
fn counter_versions(options: &BuildOptions, file: &str) -> Result<(System, [Vec<u8>; 2]), Error> {
    let load = |name: &str| {
        crate::manifest::load(&options.workspace.join("tests/systems").join(name))
            .map_err(Error::Diagnostics)
    };
    let system = load(file)?;
    let system_v2 = load("swaps-v2.toml")?;
    let versions = [
        builder::service_module(&system_v2, options, "counter")?,
        builder::service_module(&system, options, "counter")?,
    ];
    Ok((system, versions))
}

/// Hot swaps pushed for the pause measurement: enough for a p99 that is not
/// simply the worst swap (with 100, it is the second worst; the first swap
/// after boot, which runs kernel and interpreter paths for the first time,
/// has its own row).
const SWAPS: usize = 100;

/// Boots `tests/systems/bench-swaps.toml` in QEMU, pushes [`SWAPS`] versions of its
/// counter through the control channel while its client keeps calling, and
/// returns the swaps the kernel logged ([`SwapTimes`]), and how many requests
/// failed.
fn swap_pauses(options: &BuildOptions) -> Result<(SwapTimes, usize), Error> {
    let (system, versions) = counter_versions(options, "bench-swaps.toml")?;
    let artifacts = builder::build(&system, options)?;
    let image = artifacts
        .bios_image
        .ok_or_else(|| Error::Other("no BIOS image was written".into()))?;
    let state = crate::push::state_dir(&options.workspace, &system.name, None)?;
    let _running = crate::push::lock_run(&state, &system.name)?;
    let socket = crate::push::socket_path(&state);
    let run_options = qemu::RunOptions {
        uefi: false,
        timeout: None,
        gdb: false,
        memory_mib: 512,
        disk: None,
        network: None,
        control_socket: Some(socket.clone()),
    };
    let mut child = qemu::command(&image, &run_options)?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context(|| "starting qemu-system-x86_64".to_string())?;
    let console = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    if let Some(mut stdout) = child.stdout.take() {
        let console = std::sync::Arc::clone(&console);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read) = stdout.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                if let (Ok(mut console), Some(bytes)) = (console.lock(), chunk.get(..read)) {
                    console.push_str(&String::from_utf8_lossy(bytes));
                }
            }
        });
    }
    let text = || console.lock().map(|text| text.clone()).unwrap_or_default();
    let result = (|| {
        let started = Instant::now();
        while !text().contains("[client] 3: ") {
            if started.elapsed() > Duration::from_secs(120) {
                return Err(Error::Other(format!(
                    "the swap system did not start:\n{}",
                    text()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for swap in 0..SWAPS {
            let module = versions.get(swap % 2).map_or(&[][..], Vec::as_slice);
            if !crate::push::push(&socket, "counter", module, Duration::ZERO)? {
                return Err(Error::Other(format!("swap {swap} failed:\n{}", text())));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let console = text();
    let _ = std::fs::create_dir_all(options.workspace.join("target/bench"));
    let _ = std::fs::write(
        options.workspace.join("target/bench/guest-swaps.log"),
        &console,
    );
    let failed = console
        .lines()
        .filter(|line| line.starts_with("[client] ") && !line.contains(", count "))
        .count();
    Ok((SwapTimes::parse(&console), failed))
}

/// The counter's swaps as the kernel logged them (`atoll: swap pause of
/// counter: P us (L us from the request)`), in microseconds.
#[derive(Debug, Default)]
struct SwapTimes {
    /// The pause: from the old version's quiescent point (it stops serving)
    /// to the new version waiting in `receive`, ready to serve.
    pauses: Vec<f64>,
    /// From the request (the new version compiled and started) to the new
    /// version ready to serve; the old version serves until its quiescent
    /// point.
    latencies: Vec<f64>,
}

impl SwapTimes {
    fn parse(console: &str) -> SwapTimes {
        let mut times = SwapTimes::default();
        for line in console.lines() {
            let Some(rest) = line
                .trim_end()
                .strip_prefix("atoll: swap pause of counter: ")
            else {
                continue;
            };
            let Some((pause, latency)) = rest.split_once(" us (") else {
                continue;
            };
            if let (Ok(pause), Ok(latency)) = (
                pause.parse::<f64>(),
                latency
                    .trim_end_matches(" us from the request)")
                    .parse::<f64>(),
            ) {
                times.pauses.push(pause);
                times.latencies.push(latency);
            }
        }
        times
    }
}

/// The same swaps in the hosted core: the counter of `swaps-hosted.toml`
/// under a finite request stream, fed [`SWAPS`] swap requests through the
/// hosted platform's control channel. Pauses in microseconds, and the
/// requests answered wrongly.
fn hosted_swap_pauses(options: &BuildOptions) -> Result<(SwapTimes, Option<f64>), Error> {
    let (system, versions) = counter_versions(options, "swaps-hosted.toml")?;
    let frames = (0..SWAPS)
        .map(|swap| {
            let module = versions.get(swap % 2).map_or(&[][..], Vec::as_slice);
            atoll_abi::control::encode_swap("counter", module)
        })
        .collect();
    let bundle = builder::bundle_only(&system, options)?;
    let (console, _) = hosted::run_scripted(&bundle, false, frames).map_err(Error::Other)?;
    let log = options.workspace.join("target/bench/hosted-swaps.log");
    let _ = std::fs::create_dir_all(options.workspace.join("target/bench"));
    let _ = std::fs::write(&log, &console);
    Ok((
        SwapTimes::parse(&console),
        parse(&console).values.get("swap_requests_failed").copied(),
    ))
}

/// The value below which `fraction` of `values` lie.
fn percentile(values: &[f64], fraction: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied()
}

/// Runs the benchmark and prints the table.
/// Size of the file the storage benchmark reads.
const BIG_FILE_BYTES: usize = 2 * 1024 * 1024;

/// Boots `tests/systems/bench-storage.toml` with a FAT disk holding a 2 MiB
/// file; returns its figures and the host's own read speed of the image file
/// (KB/s, from the page cache: context, not a like-for-like figure).
fn storage(options: &BuildOptions) -> Result<(Figures, f64), Error> {
    let path = options.workspace.join("tests/systems/bench-storage.toml");
    let system = crate::manifest::load(&path).map_err(Error::Diagnostics)?;
    let bench_dir = options.workspace.join("target").join("bench");
    let folder = bench_dir.join("storage-files");
    std::fs::create_dir_all(&folder).context(|| format!("creating {}", folder.display()))?;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let contents: Vec<u8> = (0..BIG_FILE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(folder.join("BIG.BIN"), &contents)
        .context(|| format!("writing {}", folder.display()))?;
    let image = bench_dir.join("storage.img");
    crate::disk::make_fat_image(&folder, 16, &image)?;

    let artifacts = builder::build(&system, options)?;
    let boot_image = artifacts
        .bios_image
        .ok_or_else(|| Error::Other("no BIOS image was written".into()))?;
    let run_options = qemu::RunOptions {
        uefi: false,
        timeout: Some(Duration::from_secs(600)),
        gdb: false,
        memory_mib: 512,
        disk: Some(image.clone()),
        network: None,
        control_socket: None,
    };
    let (_, console) = qemu::run_until(&boot_image, &run_options, "bench: wasi_done=1")?;
    // Kept for a look at what the services said (target/bench/storage-console.log).
    let log = bench_dir.join("storage-console.log");
    std::fs::write(&log, &console).context(|| format!("writing {}", log.display()))?;
    let figures = parse(&console);
    if !figures.values.contains_key("storage_done") || !figures.values.contains_key("wasi_done") {
        return Err(Error::Other(format!(
            "the storage benchmark did not finish in QEMU; its console:\n{console}"
        )));
    }
    let started = Instant::now();
    let mut total = 0usize;
    for _ in 0..8 {
        total += std::fs::read(&image)
            .context(|| format!("reading {}", image.display()))?
            .len();
    }
    let host = total as f64 / started.elapsed().as_secs_f64() / 1000.0;
    Ok((figures, host))
}

/// `bench --storage-only`: the storage rows alone (block, FAT and WASI file
/// throughput in QEMU), printed; nothing is appended to the results.
pub fn run_storage(options: &BuildOptions) -> Result<(), Error> {
    let mut build_options = options.clone();
    build_options.firmware = Firmware::Bios;
    eprintln!("bench: storage throughput (virtio-blk driver and FAT service in QEMU)...");
    let (storage, _) = storage(&build_options)?;
    let rows = [
        ("block read, 3.5 KiB requests", "block_read_kb_per_s"),
        (
            "file read via FAT + driver, 3 KiB requests",
            "file_read_kb_per_s",
        ),
        (
            "WASI file read (C read()), 64 KiB requests",
            "wasi_read_kb_per_s",
        ),
        (
            "WASI file write (C write()), 64 KiB requests",
            "wasi_write_kb_per_s",
        ),
    ]
    .map(|(name, key)| (name, "KB/s", storage.values.get(key).copied()));
    guest_table(&rows, 0);
    Ok(())
}

/// `bench --network-only`: the network rows alone, printed and appended to
/// `target/bench/results.jsonl`.
/// Boot to `system ready` against the floor, lazy and eager translation.
fn print_boot_ratios(boot: &boot_time::BootTimes) {
    for (firmware, (ready, floor), eager) in [
        ("BIOS", boot.bios, boot.eager.0),
        ("UEFI", boot.uefi, boot.eager.1),
    ] {
        if let Some((ready, floor)) = ready.zip(floor) {
            let before = eager.map_or_else(String::new, |eager| {
                format!("; eager translation: {:.2}", eager / floor)
            });
            println!(
                "boot to system ready / floor, {firmware}: {:.2} (target <= 1.2){before}",
                ready / floor
            );
        }
    }
}

/// `bench --boot-only`: the boot rows alone (floor, lazy and eager
/// translation, BIOS and UEFI), printed and appended as JSON lines.
pub fn run_boot(options: &BuildOptions) -> Result<(), Error> {
    eprintln!("bench: boot time of the default system against the floor (BIOS and UEFI)...");
    let boot = boot_time::run(options)?;
    let rows = [
        ("boot to system ready, default system, BIOS", boot.bios.0),
        ("boot floor (kernel powers off at entry), BIOS", boot.bios.1),
        (
            "boot to system ready, eager translation, BIOS",
            boot.eager.0,
        ),
        ("boot to system ready, default system, UEFI", boot.uefi.0),
        ("boot floor (kernel powers off at entry), UEFI", boot.uefi.1),
        (
            "boot to system ready, eager translation, UEFI",
            boot.eager.1,
        ),
    ]
    .map(|(name, seconds)| (name, "ms", seconds.map(|s| s * 1000.0)));
    guest_table(&rows, 0);
    print_boot_ratios(&boot);
    append_results(options, &guest_records(&rows))
}

pub fn run_network(options: &BuildOptions) -> Result<(), Error> {
    let mut build_options = options.clone();
    build_options.firmware = Firmware::Bios;
    eprintln!("bench: network (curl, ab and ping against the default system in QEMU)...");
    let network = netbench::run(&build_options)?;
    let rows = [
        (
            "HTTP bulk download, 4 MiB (curl, host to guest)",
            "MB/s",
            network.bulk_mb_per_s,
        ),
        (
            "HTTP requests, keep-alive, 10 at once (ab)",
            "req/s",
            network.requests_per_s,
        ),
        (
            "HTTP keep-alive request time, p99 (ab)",
            "ms",
            network.p99_ms,
        ),
        (
            "ping round trip, guest to QEMU gateway",
            "ms",
            network.ping_ms,
        ),
    ];
    guest_table(&rows, 2);
    append_results(options, &guest_records(&rows))
}

/// Prints guest-only rows `(benchmark, unit, value)` as a table, values with
/// `decimals` places (`-` where nothing was measured).
fn guest_table(rows: &[(&str, &str, Option<f64>)], decimals: usize) {
    println!(
        "| {:<48} | {:<6} | {:>14} |",
        "benchmark", "unit", "guest (TCG)"
    );
    println!("|{:-<50}|{:-<8}|{:->16}|", "", "", "");
    for (name, unit, value) in rows {
        let shown = value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"));
        println!("| {name:<48} | {unit:<6} | {shown:>14} |");
    }
}

/// The JSON lines of guest-only rows that were measured, for results.jsonl.
fn guest_records(rows: &[(&str, &str, Option<f64>)]) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut lines = String::new();
    for (name, unit, value) in rows {
        if let Some(value) = value {
            let record = serde_json::json!({
                "timestamp": timestamp,
                "benchmark": name,
                "where": "guest",
                "unit": unit,
                "value": value,
            });
            lines.push_str(&record.to_string());
            lines.push('\n');
        }
    }
    lines
}

/// The JSON lines of the compute figures, one per kernel and place.
fn compute_records(compute: &compute::Compute, timestamp: u64) -> String {
    let mut lines = String::new();
    for (index, name) in compute::KERNELS.iter().enumerate() {
        let benchmark = COMPUTE_NAMES.get(index).copied().unwrap_or(name);
        for (place, timings) in compute::PLACES.iter().zip(&compute.places) {
            if let Some(ns) = timings.ns.get(*name) {
                let record = serde_json::json!({
                    "timestamp": timestamp,
                    "benchmark": benchmark,
                    "where": place,
                    "unit": "ms",
                    "value": ns / 1e6,
                });
                lines.push_str(&record.to_string());
                lines.push('\n');
            }
        }
    }
    lines
}

/// The hot-swap rows (guest, hosted, no third column), for `make bench` and
/// `bench --swap-only`.
fn swap_rows(
    guest: &SwapTimes,
    guest_failed: usize,
    hosted: &SwapTimes,
    hosted_failed: Option<f64>,
) -> [Row; 6] {
    let row = |name, unit, values: [Option<f64>; 2]| Row {
        name,
        unit,
        values: [values[0], values[1], None],
    };
    let both = |times: fn(&SwapTimes) -> Option<f64>| [times(guest), times(hosted)];
    [
        row(
            "hot-swap pause, median (quiescent to serving)",
            "us",
            both(|times| percentile(&times.pauses, 0.5)),
        ),
        row(
            "hot-swap pause, p99",
            "us",
            both(|times| percentile(&times.pauses, 0.99)),
        ),
        row(
            "hot-swap pause, first swap after boot",
            "us",
            both(|times| times.pauses.first().copied()),
        ),
        row(
            "hot-swap latency, median (request to serving)",
            "us",
            both(|times| percentile(&times.latencies, 0.5)),
        ),
        row(
            "hot-swap latency, p99",
            "us",
            both(|times| percentile(&times.latencies, 0.99)),
        ),
        row(
            "requests failed during the swaps",
            "count",
            [Some(guest_failed as f64), hosted_failed],
        ),
    ]
}

/// `bench --swap-only`: the hot-swap rows alone ([`SWAPS`] swaps pushed into
/// a running VM, and as many in the hosted core), printed and appended as
/// JSON lines.
pub fn run_swaps(options: &BuildOptions) -> Result<(), Error> {
    eprintln!("bench: {SWAPS} hot swaps pushed into a running VM...");
    let (pauses, failed) = swap_pauses(options)?;
    eprintln!("bench: {SWAPS} hot swaps in the hosted core...");
    let (hosted_pauses, hosted_failed) = hosted_swap_pauses(options)?;
    let rows = swap_rows(&pauses, failed, &hosted_pauses, hosted_failed);
    let show = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    println!(
        "| {:<48} | {:<6} | {:>14} | {:>14} |",
        "benchmark", "unit", "guest (TCG)", "hosted core"
    );
    println!("|{:-<50}|{:-<8}|{:->16}|{:->16}|", "", "", "", "");
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut lines = String::new();
    for Row {
        name,
        unit,
        values: [guest, hosted, _],
    } in rows
    {
        println!(
            "| {name:<48} | {unit:<6} | {:>14} | {:>14} |",
            show(guest),
            show(hosted)
        );
        for (place, value) in [("guest", guest), ("hosted", hosted)] {
            if let Some(value) = value {
                let record = serde_json::json!({
                    "timestamp": timestamp,
                    "benchmark": name,
                    "where": place,
                    "unit": unit,
                    "value": value,
                });
                lines.push_str(&record.to_string());
                lines.push('\n');
            }
        }
    }
    append_results(options, &lines)
}

/// `bench --compute-only`: the compute rows alone ([`compute::ROUNDS`]
/// interleaved rounds of the five places) and the torture test's stack
/// high-water mark, printed and appended as JSON lines.
pub fn run_compute(options: &BuildOptions) -> Result<(), Error> {
    let compute = compute::run(options)?;
    if let Some((used, size)) = compute.torture_stack_kib {
        println!("kernel stack high-water mark, torture test: {used:.0} KiB of {size:.0} KiB");
    }
    print_compute(&compute);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    append_results(options, &compute_records(&compute, timestamp))
}

/// Appends JSON lines to target/bench/results.jsonl.
fn append_results(options: &BuildOptions, lines: &str) -> Result<(), Error> {
    let out_dir = options.workspace.join("target").join("bench");
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join("results.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(lines.as_bytes()))
        .context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn run(system: &System, options: &BuildOptions) -> Result<(), Error> {
    let mut build_options = options.clone();
    build_options.firmware = Firmware::Bios;
    eprintln!("bench: booting `{}` in QEMU (TCG)...", system.name);
    let artifacts = builder::build(system, &build_options)?;
    let image = artifacts
        .bios_image
        .ok_or_else(|| Error::Other("no BIOS image was written".into()))?;
    let run_options = qemu::RunOptions {
        uefi: false,
        timeout: Some(Duration::from_secs(600)),
        gdb: false,
        memory_mib: 512,
        disk: None,
        network: None,
        control_socket: None,
    };
    let (outcome, guest_console) = qemu::run_captured(&image, &run_options)?;
    let guest = parse(&guest_console);
    // The system's crasher faults on purpose (the restart figure): a run
    // ends with status 1 (ServicesFailed), and that is a finished run.
    let finished = |outcome: qemu::Outcome| {
        matches!(
            outcome,
            qemu::Outcome::Success | qemu::Outcome::ServicesFailed
        )
    };
    if !finished(outcome) || !guest.values.contains_key("done") {
        return Err(Error::Other(format!(
            "the benchmark system did not finish in QEMU ({outcome:?}); its console:\n{guest_console}"
        )));
    }

    eprintln!(
        "bench: booting `{}` in QEMU on the baseline kernel (soft-float, portable dispatch)...",
        system.name
    );
    let mut baseline_options = build_options.clone();
    baseline_options.kernel = crate::builder::KernelConfig::Baseline;
    let baseline_artifacts = builder::build(system, &baseline_options)?;
    let baseline_image = baseline_artifacts
        .bios_image
        .ok_or_else(|| Error::Other("no BIOS image was written".into()))?;
    let (baseline_outcome, baseline_console) = qemu::run_captured(&baseline_image, &run_options)?;
    let baseline = parse(&baseline_console);
    if !finished(baseline_outcome) || !baseline.values.contains_key("done") {
        return Err(Error::Other(format!(
            "the benchmark system did not finish on the baseline kernel ({baseline_outcome:?}); its console:\n{baseline_console}"
        )));
    }

    eprintln!("bench: running `{}` hosted on Linux...", system.name);
    let bundle = builder::bundle_only(system, &build_options)?;
    let (hosted_console, _) = hosted::run(&bundle, false).map_err(Error::Other)?;
    let hosted = parse(&hosted_console);
    let tracing = trace_bench::measure(&build_options, system, TRACE_ROUNDS)?;
    if !hosted.values.contains_key("done") {
        return Err(Error::Other(format!(
            "the benchmark system did not finish hosted; its console:\n{hosted_console}"
        )));
    }

    eprintln!("bench: {SWAPS} hot swaps pushed into a running VM...");
    let (pauses, failed_requests) = swap_pauses(&build_options)?;

    eprintln!("bench: {SWAPS} hot swaps in the hosted core...");
    let (hosted_pauses, hosted_failed) = hosted_swap_pauses(&build_options)?;

    eprintln!("bench: Linux pipe round trip...");
    let pipe_ns = pipe_round_trip_ns()?;

    eprintln!("bench: storage throughput (virtio-blk driver and FAT service in QEMU)...");
    let (storage, host_file_kb_per_s) = storage(&build_options)?;

    let compute = compute::run(&build_options)?;

    eprintln!("bench: boot time of the default system against the floor (BIOS and UEFI)...");
    let boot = boot_time::run(&build_options)?;

    eprintln!("bench: network (curl, ab and ping against the default system in QEMU)...");
    let network = netbench::run(&build_options)?;

    let host_mhz = host_mhz();
    let cycles = |ns: Option<f64>, mhz: Option<f64>| ns.zip(mhz).map(|(ns, mhz)| ns * mhz / 1000.0);
    let guest_rt = guest.values.get("ipc_round_trip_ns").copied();
    let hosted_rt = hosted.values.get("ipc_round_trip_ns").copied();
    let mut rows = vec![
        Row {
            name: "IPC call/reply round trip, 16 B",
            unit: "ns",
            values: [guest_rt, hosted_rt, Some(pipe_ns)],
        },
        Row {
            name: "IPC call/reply round trip, 16 B",
            unit: "cycles",
            values: [
                cycles(guest_rt, guest.tsc_mhz),
                cycles(hosted_rt, host_mhz),
                cycles(Some(pipe_ns), host_mhz),
            ],
        },
        Row {
            name: "send throughput, 16 B",
            unit: "msg/s",
            values: [
                guest.values.get("send_per_second").copied(),
                hosted.values.get("send_per_second").copied(),
                None,
            ],
        },
        Row {
            name: "restart, fault to next request (median of 21)",
            unit: "us",
            values: [
                guest.values.get("restart_ns").map(|ns| ns / 1000.0),
                hosted.values.get("restart_ns").map(|ns| ns / 1000.0),
                None,
            ],
        },
    ];
    rows.extend(swap_rows(
        &pauses,
        failed_requests,
        &hosted_pauses,
        hosted_failed,
    ));
    rows.extend([
        Row {
            name: "service spawn (validated module, median of 20)",
            unit: "us",
            values: [median(&guest.spawn_us), median(&hosted.spawn_us), None],
        },
        Row {
            name: "IPC round trip, best of 5 x 2,000: tracing off",
            unit: "ns",
            values: [
                guest
                    .values
                    .get("ipc_round_trip_trace_off_best_ns")
                    .copied(),
                hosted
                    .values
                    .get("ipc_round_trip_trace_off_best_ns")
                    .copied(),
                None,
            ],
        },
        Row {
            name: "IPC round trip, best of 5 x 2,000: tracing on",
            unit: "ns",
            values: [
                guest.values.get("ipc_round_trip_trace_on_best_ns").copied(),
                hosted
                    .values
                    .get("ipc_round_trip_trace_on_best_ns")
                    .copied(),
                None,
            ],
        },
        Row {
            name: "IPC round trip, hosted: no-trace build",
            unit: "ns",
            values: [None, Some(tracing.best_ns[0]), None],
        },
        Row {
            name: "IPC round trip, hosted: tracing off",
            unit: "ns",
            values: [None, Some(tracing.best_ns[1]), None],
        },
        Row {
            name: "IPC round trip, hosted: tracing on",
            unit: "ns",
            values: [None, Some(tracing.best_ns[2]), None],
        },
        Row {
            name: "IPC round trip, hosted: tracing off, no handler",
            unit: "ns",
            values: [None, Some(tracing.best_ns[3]), None],
        },
        Row {
            name: "IPC round trip, hosted: default code units",
            unit: "ns",
            values: [None, Some(tracing.best_ns[4]), None],
        },
        Row {
            name: "IPC round trip, hosted: Rust SDK server",
            unit: "ns",
            values: [None, Some(tracing.best_ns[5]), None],
        },
        Row {
            name: "block read, 3.5 KiB requests (Linux: image file)",
            unit: "KB/s",
            values: [
                storage.values.get("block_read_kb_per_s").copied(),
                None,
                Some(host_file_kb_per_s),
            ],
        },
        Row {
            name: "file read via FAT + driver, 3 KiB requests",
            unit: "KB/s",
            values: [
                storage.values.get("file_read_kb_per_s").copied(),
                None,
                Some(host_file_kb_per_s),
            ],
        },
        Row {
            name: "WASI file read (C read()), 64 KiB requests",
            unit: "KB/s",
            values: [
                storage.values.get("wasi_read_kb_per_s").copied(),
                None,
                Some(host_file_kb_per_s),
            ],
        },
        Row {
            name: "WASI file write (C write()), 64 KiB requests",
            unit: "KB/s",
            values: [
                storage.values.get("wasi_write_kb_per_s").copied(),
                None,
                None,
            ],
        },
        Row {
            name: "boot to system ready, default system, BIOS",
            unit: "ms",
            values: [boot.bios.0.map(|s| s * 1000.0), None, None],
        },
        Row {
            name: "boot floor (kernel powers off at entry), BIOS",
            unit: "ms",
            values: [boot.bios.1.map(|s| s * 1000.0), None, None],
        },
        Row {
            name: "boot to system ready, default system, UEFI",
            unit: "ms",
            values: [boot.uefi.0.map(|s| s * 1000.0), None, None],
        },
        Row {
            name: "boot floor (kernel powers off at entry), UEFI",
            unit: "ms",
            values: [boot.uefi.1.map(|s| s * 1000.0), None, None],
        },
        Row {
            name: "boot to system ready, eager translation, BIOS",
            unit: "ms",
            values: [boot.eager.0.map(|s| s * 1000.0), None, None],
        },
        Row {
            name: "boot to system ready, eager translation, UEFI",
            unit: "ms",
            values: [boot.eager.1.map(|s| s * 1000.0), None, None],
        },
        Row {
            name: "HTTP bulk download, 4 MiB (curl, host to guest)",
            unit: "MB/s",
            values: [network.bulk_mb_per_s, None, None],
        },
        Row {
            name: "HTTP requests, keep-alive, 10 at once (ab)",
            unit: "req/s",
            values: [network.requests_per_s, None, None],
        },
        Row {
            name: "HTTP keep-alive request time, p99 (ab)",
            unit: "ms",
            values: [network.p99_ms, None, None],
        },
        Row {
            name: "ping round trip, guest to QEMU gateway",
            unit: "ms",
            values: [network.ping_ms, None, None],
        },
        Row {
            name: "kernel stack high-water mark, this system",
            unit: "KiB",
            values: [
                compute::stack_report(&guest_console).map(|(used, _)| used),
                None,
                None,
            ],
        },
        Row {
            name: "kernel stack high-water mark, torture test",
            unit: "KiB",
            values: [compute.torture_stack_kib.map(|(used, _)| used), None, None],
        },
    ]);
    let show = |value: Option<f64>| {
        value.map_or_else(
            || "-".to_string(),
            |v| {
                // Small figures (MB/s, ms) keep two decimals.
                if v.abs() < 100.0 && v.fract() != 0.0 {
                    format!("{v:.2}")
                } else {
                    format!("{v:.0}")
                }
            },
        )
    };
    println!();
    // The guest on the kernel of before issue 12, for the rows the IPC
    // benchmark system gives.
    let baseline_value = |row: &Row| -> Option<f64> {
        match (row.name, row.unit) {
            ("IPC call/reply round trip, 16 B", "ns") => {
                baseline.values.get("ipc_round_trip_ns").copied()
            }
            ("IPC call/reply round trip, 16 B", "cycles") => cycles(
                baseline.values.get("ipc_round_trip_ns").copied(),
                baseline.tsc_mhz,
            ),
            ("send throughput, 16 B", _) => baseline.values.get("send_per_second").copied(),
            ("restart, fault to next request (median of 21)", _) => {
                baseline.values.get("restart_ns").map(|ns| ns / 1000.0)
            }
            ("service spawn (validated module, median of 20)", _) => median(&baseline.spawn_us),
            ("kernel stack high-water mark, this system", _) => {
                compute::stack_report(&baseline_console).map(|(used, _)| used)
            }
            _ => None,
        }
    };
    println!(
        "| {:<48} | {:<6} | {:>14} | {:>14} | {:>14} | {:>14} |",
        "benchmark", "unit", "guest (TCG)", "guest baseline", "hosted core", "Linux"
    );
    println!(
        "|{:-<50}|{:-<8}|{:->16}|{:->16}|{:->16}|{:->16}|",
        "", "", "", "", "", ""
    );
    for row in &rows {
        let [guest_value, hosted_value, pipe_value] = row.values;
        println!(
            "| {:<48} | {:<6} | {:>14} | {:>14} | {:>14} | {:>14} |",
            row.name,
            row.unit,
            show(guest_value),
            show(baseline_value(row)),
            show(hosted_value),
            show(pipe_value)
        );
    }
    if let Some(ratio) = hosted_rt.map(|hosted| hosted / pipe_ns) {
        println!(
            "\nhosted IPC round trip / Linux pipe round trip = {ratio:.2} (Singularity: 0.23)"
        );
    }
    println!(
        "swaps measured: {} in the guest, {} hosted",
        pauses.pauses.len(),
        hosted_pauses.pauses.len()
    );
    println!(
        "guest TSC {} MHz; host CPU {} MHz; guest figures are under TCG emulation",
        show(guest.tsc_mhz),
        show(host_mhz)
    );
    if let Some((_, size)) = compute.torture_stack_kib {
        println!("kernel stack size {size:.0} KiB");
    }
    println!("{}", trace_bench::floors(&tracing));
    print_boot_ratios(&boot);
    print_compute(&compute);

    let out_dir = options.workspace.join("target").join("bench");
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join("results.jsonl");
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut lines = String::new();
    for row in &rows {
        if let Some(value) = baseline_value(row) {
            let record = serde_json::json!({
                "timestamp": timestamp,
                "benchmark": row.name,
                "where": "guest-baseline",
                "unit": row.unit,
                "value": value,
            });
            lines.push_str(&record.to_string());
            lines.push('\n');
        }
        for (place, value) in PLACES.iter().zip(row.values) {
            if let Some(value) = value {
                let record = serde_json::json!({
                    "timestamp": timestamp,
                    "benchmark": row.name,
                    "where": place,
                    "unit": row.unit,
                    "value": value,
                });
                lines.push_str(&record.to_string());
                lines.push('\n');
            }
        }
    }
    // The floors (the hosted variants are rows above).
    lines.push_str(&trace_bench::records(
        &tracing,
        timestamp,
        trace_bench::FLOORS,
    ));
    lines.push_str(&compute_records(&compute, timestamp));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(lines.as_bytes()))
        .context(|| format!("writing {}", path.display()))?;
    println!("figures appended to {}", path.display());
    let (off, on) = tracing.ratios();
    println!(
        "tracing off / build without tracing = {off:.3} (target <= 1.02); on / off = {on:.3} (target <= 1.3)"
    );
    let (latest, history) = charts::write(&path)?;
    println!("charts: {} and {}", latest.display(), history.display());
    Ok(())
}

/// Rounds of the tracing-overhead measurement within a full `bench`.
const TRACE_ROUNDS: usize = 15;

/// `bench --trace-overhead`: the hosted IPC round trip with the trace ring
/// compiled out, off and on, and plain wasmi's two floors for it; a table,
/// and the figures appended to results.jsonl.
pub fn trace_overhead(options: &BuildOptions, system: &System, rounds: usize) -> Result<(), Error> {
    let overhead = trace_bench::measure(options, system, rounds.max(1))?;
    println!("{}", trace_bench::report(&overhead));
    let path = options
        .workspace
        .join("target")
        .join("bench")
        .join("results.jsonl");
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let lines = trace_bench::records(&overhead, timestamp, 0);
    append_results(options, &lines)?;
    println!("figures appended to {}", path.display());
    charts(options)
}

/// Redraws the bench charts from results.jsonl.
pub fn charts(options: &BuildOptions) -> Result<(), Error> {
    let path = options
        .workspace
        .join("target")
        .join("bench")
        .join("results.jsonl");
    let (latest, history) = charts::write(&path)?;
    println!("charts: {} and {}", latest.display(), history.display());
    Ok(())
}
