//! The compute rows of `image-builder bench`: the kernels of `test-compute`
//! (SHA-256 over 1 MiB, sorting 100,000 integers, a 128x128 f64 matrix
//! multiply, a UTF-8 scan over 1 MiB) timed six ways in the same run:
//!
//! - in QEMU on the kernel as it is (hard-float target, tail-call dispatch),
//! - in QEMU on the baseline kernel of before issue 12 (soft-float target,
//!   portable dispatch; `--baseline-kernel`),
//! - in the hosted core (atoll-core natively, fuel and all),
//! - under plain wasmi on the host, default features and `Config` (no fuel):
//!   `tests/wasmi-runner`, built by the bench,
//! - the same runner with wasmi's portable dispatch,
//! - the same runner with wasmi's fuel metering on (unlimited fuel): what
//!   the hosted core's metering costs by itself.
//!
//! The six are timed in turn, [`ROUNDS`] times (the four host places
//! [`HOST_RUNS`] times in each round), and each keeps its best time (each
//! boot and each host process already reports the best of three runs of a
//! kernel): measured once each, minutes apart, their ratios moved by up to
//! 2x with the machine's load (docs/benchmarks.md).
//!
//! It also boots the stack torture system and reads the kernel stack's
//! high-water mark. Every place must report the same checksums.

use crate::builder::{self, BuildOptions, KernelConfig};
use crate::error::{Context, Error};
use crate::{hosted, qemu};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The kernels of `test-compute` (Rust), then those of
/// `tests/services/compute-c` (C, prefixed `c_`: the same algorithms on the
/// same data, so each must give its Rust twin's checksum).
pub const KERNELS: [&str; 9] = [
    "sha256", "sort", "matmul", "utf8", "postcard", "c_sha256", "c_sort", "c_matmul", "c_utf8",
];

/// The C kernels' Rust twins, whose checksums they must match.
const C_TWINS: [(&str, &str); 4] = [
    ("c_sha256", "sha256"),
    ("c_sort", "sort"),
    ("c_matmul", "matmul"),
    ("c_utf8", "utf8"),
];

/// Where a compute figure was measured, in table order.
pub const PLACES: [&str; 6] = [
    "guest-baseline",
    "guest",
    "hosted",
    "wasmi",
    "wasmi-portable",
    "wasmi-fuel",
];

/// Times (ns) and checksums of one place, by kernel name.
#[derive(Debug, Default)]
pub struct Timings {
    pub ns: BTreeMap<String, f64>,
    pub checksums: BTreeMap<String, String>,
}

/// What the compute part of the bench measured.
#[derive(Debug)]
pub struct Compute {
    /// One [`Timings`] per entry of [`PLACES`].
    pub places: Vec<Timings>,
    /// Kernel stack high-water mark (KiB) and stack size (KiB) after the
    /// torture test.
    pub torture_stack_kib: Option<(f64, f64)>,
}

/// Reads `bench: compute_NAME_ns=V` and `compute: NAME checksum 0x...` lines.
fn parse_service(console: &str) -> Timings {
    let mut timings = Timings::default();
    for line in console.lines() {
        if let Some(rest) = line.split("bench: compute_").nth(1)
            && let Some((name, value)) = rest.split_once("_ns=")
            && let Ok(value) = value.trim().parse::<f64>()
        {
            timings.ns.insert(name.to_string(), value);
        }
        if let Some(rest) = line.split("compute: ").nth(1)
            && let Some((name, checksum)) = rest.split_once(" checksum ")
        {
            timings
                .checksums
                .insert(name.to_string(), checksum.trim().to_string());
        }
    }
    timings
}

/// Reads the runner's `bench_NAME ns=V checksum=0x...` lines.
fn parse_runner(output: &str) -> Timings {
    let mut timings = Timings::default();
    for line in output.lines() {
        let mut words = line.split_whitespace();
        let (Some(export), Some(ns), Some(checksum)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Some(name) = export.strip_prefix("bench_") else {
            continue;
        };
        if let (Some(ns), Some(checksum)) = (
            ns.strip_prefix("ns=").and_then(|ns| ns.parse::<f64>().ok()),
            checksum.strip_prefix("checksum="),
        ) {
            timings.ns.insert(name.to_string(), ns);
            timings
                .checksums
                .insert(name.to_string(), checksum.to_string());
        }
    }
    timings
}

/// `atoll: kernel stack high-water mark N KiB of M KiB`: (N, M).
pub fn stack_report(console: &str) -> Option<(f64, f64)> {
    let line = console
        .lines()
        .find_map(|line| line.split("atoll: kernel stack high-water mark ").nth(1))?;
    let mut numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse::<f64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Builds `system` with `kernel` and returns its BIOS image.
fn image(path: &Path, options: &BuildOptions, kernel: KernelConfig) -> Result<PathBuf, Error> {
    let system = crate::manifest::load(path).map_err(Error::Diagnostics)?;
    let mut options = options.clone();
    options.kernel = kernel;
    builder::build(&system, &options)?
        .bios_image
        .ok_or_else(|| Error::Other("no BIOS image was written".into()))
}

/// Boots `image` in QEMU (BIOS) and returns its console.
fn boot(image: &Path) -> Result<String, Error> {
    let run_options = qemu::RunOptions {
        uefi: false,
        timeout: Some(Duration::from_secs(900)),
        gdb: false,
        memory_mib: 512,
        disk: None,
        network: None,
        control_socket: None,
    };
    let (outcome, console) = qemu::run_captured(image, &run_options)?;
    if outcome != qemu::Outcome::Success {
        return Err(Error::Other(format!(
            "{} did not finish in QEMU ({outcome:?}); its console:\n{console}",
            image.display()
        )));
    }
    Ok(console)
}

/// Builds `tests/wasmi-runner` (with wasmi's portable dispatch if `portable`)
/// in a target folder of its own and returns the binary.
fn build_runner(options: &BuildOptions, portable: bool) -> Result<PathBuf, Error> {
    let target_dir =
        options
            .workspace
            .join("target")
            .join(if portable { "cross-baseline" } else { "cross" });
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&options.workspace)
        .args(["build", "--quiet", "--release", "-p", "wasmi-runner"])
        .arg("--target-dir")
        .arg(&target_dir);
    if portable {
        command.args(["--features", "portable-dispatch"]);
    }
    let status = command
        .status()
        .context(|| "building wasmi-runner".to_string())?;
    if !status.success() {
        return Err(Error::Other(format!(
            "building wasmi-runner failed ({status})"
        )));
    }
    Ok(target_dir.join("release").join("wasmi-runner"))
}

/// Runs `kernels` of `module` under `runner`.
fn run_runner(
    runner: &Path,
    fuel: bool,
    module: &Path,
    kernels: &[&str],
) -> Result<Timings, Error> {
    let output = Command::new(runner)
        .args(fuel.then_some("--fuel"))
        .arg(module)
        .args(kernels.iter().map(|name| format!("bench_{name}")))
        .output()
        .context(|| format!("running {}", runner.display()))?;
    if !output.status.success() {
        return Err(Error::Other(format!(
            "{} failed: {}",
            runner.display(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(parse_runner(&String::from_utf8_lossy(&output.stdout)))
}

/// Rounds of the compute measurement. The places are timed in turn within
/// each round and each keeps its best time over the rounds, so that a load
/// change on the machine between two places (minutes apart in one round)
/// does not decide their ratio.
pub const ROUNDS: usize = 3;

/// Turns of the host places (the hosted core, then plain wasmi with each
/// dispatch and with fuel) within each round. They take seconds where a
/// QEMU boot takes tens, and one process's figure moves by up to 30% from
/// the next one's on this machine (their ratio moved between 0.72x and
/// 1.33x across runs with one turn each), so each keeps its best of
/// `ROUNDS * HOST_RUNS` processes.
pub const HOST_RUNS: usize = 3;

impl Timings {
    /// Adds the figures of other kernels (another system's, another
    /// module's), measured in the same place.
    fn add(&mut self, other: Timings) {
        self.ns.extend(other.ns);
        self.checksums.extend(other.checksums);
    }

    /// Takes `other`'s figures in: the lower time of each kernel, and the
    /// checksums (which must agree: checked when the rounds are done).
    fn keep_best(&mut self, other: Timings) {
        for (name, ns) in other.ns {
            let best = self.ns.entry(name).or_insert(ns);
            *best = best.min(ns);
        }
        for (name, checksum) in other.checksums {
            let first = self
                .checksums
                .entry(name.clone())
                .or_insert_with(|| checksum.clone());
            if *first != checksum {
                // A disagreement between rounds of one place is reported as
                // a disagreement between places by the check below.
                first.push_str(&format!(" / {checksum} in a later round"));
            }
        }
    }
}

/// Runs every measurement of the compute part, [`ROUNDS`] rounds of the
/// places in turn.
pub fn run(options: &BuildOptions) -> Result<Compute, Error> {
    let path = options.workspace.join("tests/systems/bench-compute.toml");
    let system = crate::manifest::load(&path).map_err(Error::Diagnostics)?;
    let c_path = options.workspace.join("tests/systems/bench-compute-c.toml");
    let c_system = crate::manifest::load(&c_path).map_err(Error::Diagnostics)?;

    // The Rust and the C services boot as two systems, so that neither
    // shares the CPU with the other while it is timed.
    let images = |kernel: KernelConfig| -> Result<[PathBuf; 2], Error> {
        Ok([
            image(&path, options, kernel)?,
            image(&c_path, options, kernel)?,
        ])
    };
    let baseline_images = images(KernelConfig::Baseline)?;
    let guest_images = images(KernelConfig::HardFloat)?;
    let bundles = [
        builder::bundle_only(&system, options)?,
        builder::bundle_only(&c_system, options)?,
    ];
    let module = options
        .workspace
        .join("target/cross/wasm32-unknown-unknown/service/test_compute.wasm");
    let c_module = options
        .workspace
        .join("tests/services/compute-c/build/compute-c.wasm");
    let (c_kernels, rust_kernels): (Vec<&str>, Vec<&str>) =
        KERNELS.iter().partition(|name| name.starts_with("c_"));
    let default_runner = build_runner(options, false)?;
    // The runs of plain wasmi, in `PLACES` order: default, portable
    // dispatch, default with fuel.
    let runners = [
        (default_runner.clone(), false),
        (build_runner(options, true)?, false),
        (default_runner, true),
    ];

    let mut places: Vec<Timings> = PLACES.iter().map(|_| Timings::default()).collect();
    for round in 1..=ROUNDS {
        let mut measured: Vec<Timings> = Vec::with_capacity(PLACES.len());
        for (label, images) in [
            (
                "baseline kernel (soft-float, portable dispatch)",
                &baseline_images,
            ),
            ("current kernel", &guest_images),
        ] {
            eprintln!("bench: compute round {round}/{ROUNDS}: services in QEMU, {label}...");
            let mut timings = Timings::default();
            for image in images {
                let booted = parse_service(&boot(image)?);
                timings.add(booted);
            }
            measured.push(timings);
        }
        eprintln!(
            "bench: compute round {round}/{ROUNDS}: the hosted core and plain wasmi, {HOST_RUNS} turns..."
        );
        // The hosted core, then one place per runner.
        let mut host_places: Vec<Timings> =
            (0..=runners.len()).map(|_| Timings::default()).collect();
        for _ in 0..HOST_RUNS {
            let mut hosted = Timings::default();
            for bundle in &bundles {
                let (console, _) = hosted::run(bundle, false).map_err(Error::Other)?;
                hosted.add(parse_service(&console));
            }
            host_places[0].keep_best(hosted);
            for ((runner, fuel), place) in runners.iter().zip(&mut host_places[1..]) {
                let mut timings = Timings::default();
                for (module, kernels) in [(&module, &rust_kernels), (&c_module, &c_kernels)] {
                    timings.add(run_runner(runner, *fuel, module, kernels)?);
                }
                place.keep_best(timings);
            }
        }
        measured.extend(host_places);
        for (place, timings) in places.iter_mut().zip(measured) {
            place.keep_best(timings);
        }
    }

    for name in KERNELS {
        let checksums: Vec<Option<&String>> = places
            .iter()
            .map(|timings| timings.checksums.get(name))
            .collect();
        if checksums.iter().any(|checksum| *checksum != checksums[0]) || checksums[0].is_none() {
            return Err(Error::Other(format!(
                "compute kernel {name}: the places disagree on its checksum ({checksums:?} for {PLACES:?})"
            )));
        }
    }
    for (c, rust) in C_TWINS {
        let (c_sum, rust_sum) = (places[0].checksums.get(c), places[0].checksums.get(rust));
        if c_sum != rust_sum {
            return Err(Error::Other(format!(
                "compute kernel {c} gives {c_sum:?}, its Rust twin {rust} {rust_sum:?}"
            )));
        }
    }

    eprintln!("bench: stack torture test in QEMU...");
    let torture = boot(&image(
        &options.workspace.join("tests/systems/torture.toml"),
        options,
        KernelConfig::HardFloat,
    )?)?;
    Ok(Compute {
        places,
        torture_stack_kib: stack_report(&torture),
    })
}
