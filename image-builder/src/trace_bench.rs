//! `image-builder bench --trace-overhead`: the hosted IPC round trip with the
//! trace ring off, on, and compiled out (atoll-core's `no-trace` feature), in
//! one run. `tests/trace-bench` is built twice (with and without the feature);
//! each run is 200,000 round trips between a WAT client and an echo server,
//! timed by the thread's own time on the CPU. The three variants take turns,
//! round after round, so that a change in the machine's load touches all
//! three alike; a loaded machine only ever adds time to a run, so the best run
//! of each variant is the headline figure, the median is reported beside it.

use crate::builder::BuildOptions;
use crate::error::{Context, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The three variants, in the order they run each round.
pub const VARIANTS: [&str; 3] = ["no-trace build", "tracing off", "tracing on"];

/// Best and median round trips (ns) of the variants of [`VARIANTS`], over
/// `rounds`.
#[derive(Clone, Debug)]
pub struct Overhead {
    pub best_ns: [f64; 3],
    pub median_ns: [f64; 3],
    pub rounds: usize,
}

impl Overhead {
    /// Tracing off against the build without tracing, and on against off
    /// (best runs).
    pub fn ratios(&self) -> (f64, f64) {
        let [none, off, on] = self.best_ns;
        (off / none, on / off)
    }
}

/// Builds `tests/trace-bench` with `features` in `target/trace-bench` and
/// copies the binary to `target/bench/NAME` (the two builds share one
/// target folder: only atoll-core and the binary differ).
fn build(options: &BuildOptions, no_trace: bool) -> Result<PathBuf, Error> {
    let target_dir = options.workspace.join("target").join("trace-bench");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&options.workspace)
        .args(["build", "--quiet", "--release", "-p", "atoll-trace-bench"])
        .arg("--target-dir")
        .arg(&target_dir);
    if no_trace {
        command.args(["--features", "no-trace"]);
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
    let copy = out.join(if no_trace {
        "trace-bench-no-trace"
    } else {
        "trace-bench"
    });
    let built = target_dir.join("release").join("atoll-trace-bench");
    std::fs::copy(&built, &copy).context(|| format!("copying {}", built.display()))?;
    Ok(copy)
}

/// One run: the round trip it printed (on-CPU ns; wall ns where the CPU
/// time is not known).
fn run_once(binary: &Path, trace: bool) -> Result<f64, Error> {
    let mut command = Command::new(binary);
    if trace {
        command.arg("--trace");
    }
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

/// Measures the three variants for `rounds` rounds.
pub fn measure(options: &BuildOptions, rounds: usize) -> Result<Overhead, Error> {
    eprintln!("bench: building the hosted core with and without tracing...");
    let traced = build(options, false)?;
    let untraced = build(options, true)?;
    let mut samples: [Vec<f64>; 3] = Default::default();
    eprintln!("bench: {rounds} rounds of {VARIANTS:?}, hosted...");
    for _ in 0..rounds {
        samples[0].push(run_once(&untraced, false)?);
        samples[1].push(run_once(&traced, false)?);
        samples[2].push(run_once(&traced, true)?);
    }
    let [none, off, on] = &mut samples;
    let best = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Overhead {
        best_ns: [best(none), best(off), best(on)],
        median_ns: [median(none), median(off), median(on)],
        rounds,
    })
}

/// The table `bench --trace-overhead` prints.
pub fn report(overhead: &Overhead) -> String {
    let mut text = format!(
        "| IPC call/reply round trip, 16 B, hosted, on-CPU time ({} runs of 200,000 each) | best ns | median ns |\n|---|---:|---:|\n",
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
    let [none, off_median, on_median] = overhead.median_ns;
    text.push_str(&format!(
        "\nbest runs: tracing off / build without tracing = {off:.3} (target <= 1.02); tracing on / off = {on:.3} (target <= 1.3)\nmedians:   tracing off / build without tracing = {:.3}; tracing on / off = {:.3}\n",
        off_median / none,
        on_median / off_median
    ));
    text
}
