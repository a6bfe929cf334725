//! `image-builder bench --trace-overhead`: the hosted IPC round trip with the
//! trace ring off, on, and compiled out (atoll-core's `no-trace` feature), in
//! one run, beside the least the same round trip costs under plain wasmi.
//! `tests/trace-bench` is built three times (with and without the feature,
//! and with the release profile's default code units for the message path's
//! crates, the configuration before they had one each); each
//! run is 200,000 round trips between a WAT client and an echo server (in
//! WAT, or the bench system's, in Rust on the SDK), timed
//! by the thread's own time on the CPU. The two floors are
//! `tests/wasmi-runner`'s `ipc-floor`, fuel on as in Atoll, no kernel at all
//! (place `wasmi-fuel`): a client's host call that resumes a server parked in
//! `receive` until it parks again (the shape of Atoll's direct switch), and
//! one that calls the server's exported handler instead (an upcall, which
//! also has no `reply` call). They run [`FLOOR_ROUND_TRIPS`] each: the CPU
//! time Linux reports moves in scheduler ticks (4 ms here), so a run must be
//! long for it. The variants take turns, round after round, so that a change
//! in the machine's load touches all of them alike; a loaded machine only
//! ever adds time to a run, so the best run of each variant is the headline
//! figure, the median is reported beside it.

use crate::builder::BuildOptions;
use crate::error::{Context, Error};
use crate::manifest::System;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Round trips of each floor run (`ipc-floor --round-trips`): 0.25-0.5 s,
/// long against the 4 ms steps of the CPU time Linux reports.
pub const FLOOR_ROUND_TRIPS: u32 = 2_000_000;

/// Where the floors start in [`VARIANTS`]: before it, Atoll's hosted core.
pub const FLOORS: usize = 6;

/// The variants, in the order they run each round: six of Atoll's hosted
/// core (the server with a handler export, which calls switched to it run
/// by upcall, and without one, answering with `reply_receive` in its loop
/// as before handlers; one built with [`DEFAULT_UNITS`]; the last with the
/// bench system's server, written in Rust on the SDK's `serve_raw`, in
/// place of the WAT one: what the SDK adds to a round trip), then (from
/// [`FLOORS`] on) the two floors under plain wasmi.
pub const VARIANTS: [&str; 8] = [
    "no-trace build",
    "tracing off",
    "tracing on",
    "tracing off, no handler",
    "default code units",
    "Rust SDK server",
    "plain wasmi floor, park and resume",
    "plain wasmi floor, upcall",
];

/// Best and median round trips (ns) of the variants of [`VARIANTS`], over
/// `rounds`.
#[derive(Clone, Debug)]
pub struct Overhead {
    pub best_ns: [f64; 8],
    pub median_ns: [f64; 8],
    pub rounds: usize,
}

impl Overhead {
    /// Tracing off against the build without tracing, and on against off
    /// (best runs).
    pub fn ratios(&self) -> (f64, f64) {
        let [none, off, on, ..] = self.best_ns;
        (off / none, on / off)
    }
}

/// The crates the release profile builds in one code unit each (the
/// workspace's Cargo.toml), which the "default code units" variant builds
/// with rustc's default of 16 instead: the configuration before.
pub const DEFAULT_UNITS: [&str; 4] = ["atoll-core", "wasmi", "wasmi_core", "wasmi_collections"];

/// How a variant's binary is built.
#[derive(Clone, Copy, PartialEq)]
enum Build {
    Traced,
    Untraced,
    DefaultUnits,
}

/// Builds `tests/trace-bench` as `kind` says and copies the binary to
/// `target/bench/NAME` (the traced and untraced builds share one target
/// folder: only atoll-core and the binary differ; the default-units build
/// has its own).
fn build(options: &BuildOptions, kind: Build) -> Result<PathBuf, Error> {
    let folder = if kind == Build::DefaultUnits {
        "trace-bench-units"
    } else {
        "trace-bench"
    };
    let target_dir = options.workspace.join("target").join(folder);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&options.workspace)
        .args(["build", "--quiet", "--release", "-p", "atoll-trace-bench"])
        .arg("--target-dir")
        .arg(&target_dir);
    match kind {
        Build::Untraced => {
            command.args(["--features", "no-trace"]);
        }
        Build::DefaultUnits => {
            for krate in DEFAULT_UNITS {
                command.args([
                    "--config",
                    &format!("profile.release.package.{krate}.codegen-units=16"),
                ]);
            }
        }
        Build::Traced => {}
    }
    let status = command
        .status()
        .context(|| "building atoll-trace-bench".to_string())?;
    if !status.success() {
        return Err(Error::Other(format!(
            "building atoll-trace-bench failed ({status})"
        )));
    }
    let out = options.workspace.join("target").join("bench");
    std::fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
    let copy = out.join(match kind {
        Build::Traced => "trace-bench",
        Build::Untraced => "trace-bench-no-trace",
        Build::DefaultUnits => "trace-bench-default-units",
    });
    let built = target_dir.join("release").join("atoll-trace-bench");
    std::fs::copy(&built, &copy).context(|| format!("copying {}", built.display()))?;
    Ok(copy)
}

/// Builds `tests/wasmi-runner`'s `ipc-floor` (plain wasmi, default
/// features) in the target folder the compute bench builds the runner in.
fn build_floor(options: &BuildOptions) -> Result<PathBuf, Error> {
    let target_dir = options.workspace.join("target").join("cross");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&options.workspace)
        .args(["build", "--quiet", "--release", "-p", "wasmi-runner"])
        .args(["--bin", "ipc-floor", "--target-dir"])
        .arg(&target_dir)
        .status()
        .context(|| "building ipc-floor".to_string())?;
    if !status.success() {
        return Err(Error::Other(format!(
            "building ipc-floor failed ({status})"
        )));
    }
    Ok(target_dir.join("release").join("ipc-floor"))
}

/// One run of `binary` with `args`: the round trip it printed (on-CPU ns;
/// wall ns where the CPU time is not known).
fn run_once(binary: &Path, args: &[&str]) -> Result<f64, Error> {
    let mut command = Command::new(binary);
    command.args(args);
    let output = command
        .output()
        .context(|| format!("running {}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let figure = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|value| value.trim().parse::<f64>().ok())
        })
    };
    figure("cpu_ns_per_round_trip=")
        .or_else(|| figure("wall_ns_per_round_trip="))
        .ok_or_else(|| {
            Error::Other(format!(
                "{} printed no round trip:\n{text}{}",
                binary.display(),
                String::from_utf8_lossy(&output.stderr)
            ))
        })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The service of `system` whose module the "Rust SDK server" variant
/// serves with: the bench system's echo server.
const RUST_SERVER: &str = "bench-server";

/// Measures the variants of [`VARIANTS`] for `rounds` rounds; `system` is
/// the bench system, whose [`RUST_SERVER`] is built for the Rust variant.
pub fn measure(options: &BuildOptions, system: &System, rounds: usize) -> Result<Overhead, Error> {
    eprintln!(
        "bench: building the hosted core with and without tracing, and with default code units..."
    );
    let traced = build(options, Build::Traced)?;
    let untraced = build(options, Build::Untraced)?;
    let default_units = build(options, Build::DefaultUnits)?;
    let floor = build_floor(options)?;
    let rust_server = options.workspace.join("target/bench/rust-sdk-server.wasm");
    let module = crate::builder::service_module(system, options, RUST_SERVER)?;
    std::fs::write(&rust_server, module)
        .context(|| format!("writing {}", rust_server.display()))?;
    let rust_server = rust_server.to_string_lossy();
    let floor_round_trips = FLOOR_ROUND_TRIPS.to_string();
    let runs: [(&Path, &[&str]); 8] = [
        (&untraced, &[]),
        (&traced, &[]),
        (&traced, &["--trace"]),
        (&traced, &["--no-handler"]),
        (&default_units, &[]),
        (&traced, &["--server", &rust_server]),
        (&floor, &["--fuel", "--round-trips", &floor_round_trips]),
        (
            &floor,
            &["--fuel", "--upcall", "--round-trips", &floor_round_trips],
        ),
    ];
    let mut samples: [Vec<f64>; 8] = Default::default();
    eprintln!("bench: {rounds} rounds of {VARIANTS:?}, hosted...");
    for _ in 0..rounds {
        for ((binary, args), samples) in runs.iter().zip(samples.iter_mut()) {
            samples.push(run_once(binary, args)?);
        }
    }
    let best = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Overhead {
        best_ns: samples.each_ref().map(|values| best(values)),
        median_ns: samples.each_mut().map(|values| median(values)),
        rounds,
    })
}

/// The JSON lines of the variants from `first` on (0: all; [`FLOORS`]: the
/// floors alone), best runs: Atoll's under place `hosted` (named `IPC round trip,
/// hosted: VARIANT`, as the full bench's rows), the floors under
/// `wasmi-fuel` (named `IPC round trip: VARIANT`).
pub fn records(overhead: &Overhead, timestamp: u64, first: usize) -> String {
    let mut lines = String::new();
    let variants = VARIANTS.iter().zip(overhead.best_ns).enumerate();
    for (index, (variant, value)) in variants.skip(first) {
        let (benchmark, place) = if index < FLOORS {
            (format!("IPC round trip, hosted: {variant}"), "hosted")
        } else {
            (format!("IPC round trip: {variant}"), "wasmi-fuel")
        };
        let record = serde_json::json!({
            "timestamp": timestamp,
            "benchmark": benchmark,
            "where": place,
            "unit": "ns",
            "value": value,
        });
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    lines
}

/// The floors in one line, for the full bench's output.
pub fn floors(overhead: &Overhead) -> String {
    let [.., parked, upcall] = overhead.best_ns;
    format!(
        "plain wasmi floor for the round trip (no kernel, fuel on, best of {}): park and resume {parked:.0} ns, upcall {upcall:.0} ns",
        overhead.rounds
    )
}

/// The table `bench --trace-overhead` prints.
pub fn report(overhead: &Overhead) -> String {
    let mut text = format!(
        "| IPC call/reply round trip, on-CPU time ({} runs each; Atoll hosted: 16 B, 200,000 round trips; plain wasmi floors: one i32, {FLOOR_ROUND_TRIPS}) | best ns | median ns |\n|---|---:|---:|\n",
        overhead.rounds
    );
    for ((variant, best), median) in VARIANTS
        .iter()
        .zip(overhead.best_ns)
        .zip(overhead.median_ns)
    {
        text.push_str(&format!("| {variant} | {best:.0} | {median:.0} |\n"));
    }
    let (off, on) = overhead.ratios();
    let [none, off_median, on_median, ..] = overhead.median_ns;
    text.push_str(&format!(
        "\nbest runs: tracing off / build without tracing = {off:.3} (target <= 1.02); tracing on / off = {on:.3} (target <= 1.3)\nmedians:   tracing off / build without tracing = {:.3}; tracing on / off = {:.3}\n",
        off_median / none,
        on_median / off_median
    ));
    text
}
