//! The driver shared by Atoll's fuzz targets: plain binaries (no libFuzzer,
//! no sanitizer runtime) that feed `arbitrary` byte strings to a target.
//!
//! Each binary first runs its committed seed corpus (`tests/fuzz/corpus/<name>/`),
//! then inputs drawn from a seeded generator: fresh random bytes, or a corpus
//! entry with a few bytes changed. Input `i` of seed `s` is always the same,
//! so a run is repeatable. A panic stops the run, saves the input under
//! `target/fuzz/crashes/` and exits with status 1. A stack overflow or abort
//! ends the process without that; the last progress line names the
//! iteration, and `--start` replays from there.
//!
//! Options: `--for 30s|10m|1h` (default 10 s), `--iterations N`, `--seed S`,
//! `--start I`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What one input did, for the summary (e.g. "valid", "refused").
pub type Outcome = &'static str;

/// The settings of one run.
#[derive(Debug)]
pub struct Settings {
    pub duration: Option<Duration>,
    pub iterations: Option<u64>,
    pub seed: u64,
    pub start: u64,
}

impl Settings {
    /// From the command line; exits with status 2 on a bad option.
    #[must_use]
    pub fn from_args() -> Settings {
        let mut settings = Settings {
            duration: Some(Duration::from_secs(10)),
            iterations: None,
            seed: 1,
            start: 0,
        };
        let mut args = std::env::args().skip(1);
        while let Some(option) = args.next() {
            let value = args.next().unwrap_or_default();
            let number = || value.parse::<u64>().ok();
            let ok = match option.as_str() {
                "--for" => parse_duration(&value).map(|duration| {
                    settings.duration = Some(duration);
                }),
                "--iterations" => number().map(|count| {
                    settings.iterations = Some(count);
                    settings.duration = None;
                }),
                "--seed" => number().map(|seed| settings.seed = seed),
                "--start" => number().map(|start| settings.start = start),
                _ => None,
            };
            if ok.is_none() {
                eprintln!(
                    "usage: [--for 30s|10m|1h] [--iterations N] [--seed S] [--start I] (bad: {option} {value})"
                );
                std::process::exit(2);
            }
        }
        settings
    }
}

/// `30s`, `10m`, `1h` or plain seconds.
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = match text.char_indices().last()? {
        (at, 's') => (text.get(..at)?, 1),
        (at, 'm') => (text.get(..at)?, 60),
        (at, 'h') => (text.get(..at)?, 3600),
        _ => (text, 1),
    };
    number
        .parse::<u64>()
        .ok()
        .map(|count| Duration::from_secs(count * unit))
}

/// splitmix64: the generator of inputs.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound.max(1) as u64).unwrap_or(0)
    }
}

/// Input `index` of a run with `seed`: random bytes, or a corpus entry
/// mutated.
fn input(seed: u64, index: u64, corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut generator = Generator(seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f));
    if !corpus.is_empty() && generator.next() % 2 == 0 {
        let mut bytes = corpus[generator.below(corpus.len())].clone();
        for _ in 0..1 + generator.below(8) {
            match generator.below(4) {
                0 if !bytes.is_empty() => {
                    let at = generator.below(bytes.len());
                    bytes[at] = generator.next() as u8;
                }
                1 if !bytes.is_empty() => {
                    let at = generator.below(bytes.len());
                    bytes.truncate(at);
                }
                _ => bytes.push(generator.next() as u8),
            }
        }
        return bytes;
    }
    let len = generator.below(max_len + 1);
    (0..len).map(|_| generator.next() as u8).collect()
}

/// The committed seed corpus of target `name`.
fn corpus(name: &str) -> Vec<Vec<u8>> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(|entry| Some(entry.ok()?.path()))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

/// Runs target `name` on its corpus, then on generated inputs of at most
/// `max_len` bytes, until the settings' time or count is reached. Prints a
/// summary of the outcomes; exit status 1 on a panic.
pub fn run(name: &str, max_len: usize, mut target: impl FnMut(&[u8]) -> Outcome) -> ExitCode {
    let settings = Settings::from_args();
    let corpus = corpus(name);
    let started = Instant::now();
    let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
    let mut last_progress = Instant::now();
    let mut done = 0u64;
    println!(
        "fuzz {name}: seed {}, {} corpus entries, {}",
        settings.seed,
        corpus.len(),
        match (settings.iterations, settings.duration) {
            (Some(count), _) => format!("{count} inputs"),
            (None, Some(duration)) => format!("{} s", duration.as_secs()),
            (None, None) => "no bound".to_string(),
        }
    );
    let inputs = corpus.iter().cloned().map(|bytes| (None, bytes)).chain(
        (settings.start..)
            .map(|index| (Some(index), input(settings.seed, index, &corpus, max_len))),
    );
    for (index, bytes) in inputs {
        if settings.iterations.is_some_and(|count| done >= count)
            || settings
                .duration
                .is_some_and(|duration| started.elapsed() >= duration)
        {
            break;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&bytes)));
        match outcome {
            Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
            Err(_) => {
                let folder =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz/crashes");
                let _ = std::fs::create_dir_all(&folder);
                let path = folder.join(format!(
                    "{name}-{}-{}.bin",
                    settings.seed,
                    index.map_or("corpus".to_string(), |index| index.to_string())
                ));
                let _ = std::fs::write(&path, &bytes);
                eprintln!(
                    "fuzz {name}: PANIC on input {index:?} (seed {}); saved to {}",
                    settings.seed,
                    path.display()
                );
                return ExitCode::from(1);
            }
        }
        done += 1;
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            println!(
                "fuzz {name}: {done} inputs in {:.0} s (next generated input {})",
                started.elapsed().as_secs_f64(),
                index.map_or(settings.start, |index| index + 1)
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary: Vec<String> = outcomes
        .iter()
        .map(|(outcome, count)| format!("{outcome} {count}"))
        .collect();
    println!(
        "fuzz {name}: {done} inputs in {seconds:.1} s ({:.0}/s), no panic: {}",
        done as f64 / seconds.max(1e-9),
        summary.join(", ")
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_seed_is_a_bundle_of_the_current_format() {
        // fuzz-protocols' target 19 decodes a bundle: its seed must be one
        // this build reads, or the target only ever sees refusals. (After
        // a format change, write it again from `bundle::encode`.)
        let seed = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/protocols/bundle-three-services"),
        )
        .unwrap();
        let (&target, bundle) = seed.split_first().unwrap();
        assert_eq!(target % 25, 19);
        let wired = atoll_abi::bundle::decode(bundle).unwrap();
        assert_eq!(wired.bundle.services.len(), 3);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn inputs_are_repeatable() {
        let corpus = vec![vec![1, 2, 3]];
        for index in 0..50 {
            assert_eq!(input(9, index, &corpus, 64), input(9, index, &corpus, 64));
        }
        assert_ne!(
            (0..50)
                .map(|index| input(9, index, &corpus, 64))
                .collect::<Vec<_>>(),
            (0..50)
                .map(|index| input(10, index, &corpus, 64))
                .collect::<Vec<_>>()
        );
    }
}

/// A kernel core booted on a virtual machine for the fuzz targets.
pub mod hosted {
    use atoll_abi::bundle::{self, Bundle, KernelSettings, ServiceImage, ServiceLimits};
    use atoll_core::{Kernel, Platform, RunSummary};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The limits every fuzzed service gets: 1 MiB of memory, small slices.
    pub const LIMITS: ServiceLimits = ServiceLimits {
        memory_bytes: 1 << 20,
        fuel_slice: 10_000,
        queue_depth: 4,
        swap_probation_ms: 2000,
    };

    /// A clock that moves 1 us per reading and jumps to each deadline the
    /// kernel waits for (no real sleeping), and a console that is counted,
    /// not kept (printed when `FUZZ_CONSOLE` is set); with a `marker`, the
    /// console's lines that are exactly it are counted too.
    #[derive(Default)]
    pub struct VirtualPlatform {
        clock: AtomicU64,
        console_bytes: AtomicU64,
        marker: &'static str,
        marked: AtomicU64,
    }

    impl VirtualPlatform {
        /// A platform that counts the console lines that are `marker`.
        #[must_use]
        pub fn marking(marker: &'static str) -> VirtualPlatform {
            VirtualPlatform {
                marker,
                ..VirtualPlatform::default()
            }
        }

        /// How many console lines were the marker so far.
        pub fn marked(&self) -> u64 {
            self.marked.load(Ordering::Relaxed)
        }
    }

    impl Platform for VirtualPlatform {
        fn now_ns(&self) -> u64 {
            self.clock.fetch_add(1000, Ordering::Relaxed)
        }

        fn console_write(&self, text: &str) {
            if std::env::var_os("FUZZ_CONSOLE").is_some() {
                print!("{text}");
            }
            self.console_bytes
                .fetch_add(text.len() as u64, Ordering::Relaxed);
            if !self.marker.is_empty() {
                let lines = text.lines().filter(|line| *line == self.marker);
                self.marked
                    .fetch_add(lines.count() as u64, Ordering::Relaxed);
            }
        }

        fn wait_until(&self, deadline_ns: u64) {
            self.clock.fetch_max(deadline_ns, Ordering::Relaxed);
        }
    }

    /// One service of a fuzzed system.
    pub struct Spec<'a> {
        pub name: &'a str,
        pub module: &'a [u8],
        pub provides: Vec<&'a str>,
        pub uses: Vec<&'a str>,
        pub supervisor: bool,
    }

    /// Boots `services` and runs them until nothing can run; returns how it
    /// ended and the kernel calls the kernel counted. Everything the kernel
    /// allocated is dropped before this returns.
    pub fn run(services: &[Spec<'_>], wasi_shim: Option<&[u8]>) -> Option<(RunSummary, u64)> {
        run_on(services, wasi_shim, Arc::new(VirtualPlatform::default()))
    }

    /// [`run`] on `platform`.
    pub fn run_on(
        services: &[Spec<'_>],
        wasi_shim: Option<&[u8]>,
        platform: Arc<VirtualPlatform>,
    ) -> Option<(RunSummary, u64)> {
        let bundle = bundle::encode(&Bundle {
            kernel: KernelSettings {
                system_name: "fuzz".into(),
                exit_when_idle: true,
                inject_fault: None,
            },
            services: services
                .iter()
                .map(|spec| ServiceImage {
                    name: spec.name,
                    module: spec.module,
                    limits: LIMITS,
                    provides: spec.provides.clone(),
                    uses: spec.uses.clone(),
                    supervisor: spec.supervisor,
                    restart: Default::default(),
                    args: Vec::new(),
                    env: Vec::new(),
                    grants: Default::default(),
                    preopens: Vec::new(),
                    listen: Vec::new(),
                })
                .collect(),
            wasi_shim,
        })
        .ok()?;
        let platform: Arc<dyn Platform> = platform;
        let (mut kernel, _) = Kernel::boot(&bundle, platform).ok()?;
        let summary = kernel.run();
        let calls = kernel
            .service_states()
            .iter()
            .map(|(_, _, stats)| stats.syscalls)
            .sum();
        Some((summary, calls))
    }

    /// A WASI shim as WAT: it imports every function of the ABI but the
    /// driver functions, and the shim's kernel functions (module
    /// `atoll-shim`), and exports every function of WASI preview1; the export
    /// named `body_of` runs `body`, every other returns `ENOSYS` (`proc_exit`
    /// calls the kernel's `exit`). Imports are `$a{i}` for
    /// `atoll::HOST_FUNCTIONS[i]` and `$s{i}` for `wasi::SHIM_FUNCTIONS[i]`.
    #[must_use]
    pub fn shim_wat(body_of: &str, body: &str) -> String {
        let mut wat = String::from("(module\n");
        for (index, function) in atoll_abi::HOST_FUNCTIONS.iter().enumerate() {
            if is_driver(function.name) {
                continue;
            }
            wat.push_str(&format!(
                "  (import \"{}\" \"{}\" (func $a{index} (param{}) (result{})))\n",
                atoll_abi::IMPORT_MODULE,
                function.name,
                types(function.params),
                types(function.results)
            ));
        }
        for (index, function) in atoll_abi::wasi::SHIM_FUNCTIONS.iter().enumerate() {
            wat.push_str(&format!(
                "  (import \"{}\" \"{}\" (func $s{index} (param{}) (result{})))\n",
                atoll_abi::wasi::SHIM_IMPORT_MODULE,
                function.name,
                types(function.params),
                types(function.results)
            ));
        }
        wat.push_str("  (memory (export \"memory\") 1)\n  (data (i32.const 0) \"pa pb a b\")\n");
        for function in atoll_abi::wasi::FUNCTIONS {
            let exit = atoll_abi::wasi::SHIM_FUNCTIONS
                .iter()
                .position(|shim| shim.name == "exit")
                .unwrap_or(0);
            let code = if function.name == body_of {
                body.to_string()
            } else if function.name == "proc_exit" {
                format!("(call $s{exit} (local.get 0))")
            } else {
                String::new()
            };
            let result = if function.results.is_empty() {
                ""
            } else {
                "(i32.const 52)"
            };
            wat.push_str(&format!(
                "  (func (export \"{}\") (param{}) (result{})\n{code}\n{result})\n",
                function.name,
                types(function.params),
                types(function.results)
            ));
        }
        wat.push(')');
        wat
    }

    /// Whether `name` is one of the ABI's driver functions (not the shim's).
    #[must_use]
    pub fn is_driver(name: &str) -> bool {
        atoll_abi::DRIVER_FUNCTIONS
            .iter()
            .any(|driver| driver.name == name)
    }

    /// A stand-in WASI shim (every function `ENOSYS`), assembled.
    #[must_use]
    pub fn wasi_shim() -> Vec<u8> {
        wat::parse_str(shim_wat("", "")).unwrap_or_default()
    }

    /// The imports a fuzzed module may have: every host function of the ABI
    /// and of WASI preview1, as a WAT module (for wasm-smith).
    #[must_use]
    pub fn imports_wat() -> String {
        let mut wat = String::from("(module\n");
        let functions = atoll_abi::HOST_FUNCTIONS
            .iter()
            .map(|function| {
                (
                    atoll_abi::IMPORT_MODULE,
                    function.name,
                    function.params,
                    function.results,
                )
            })
            .chain(atoll_abi::wasi::FUNCTIONS.iter().map(|function| {
                (
                    atoll_abi::wasi::IMPORT_MODULE,
                    function.name,
                    function.params,
                    function.results,
                )
            }));
        for (module, name, params, results) in functions {
            wat.push_str(&format!(
                "  (import \"{module}\" \"{name}\" (func (param{}) (result{})))\n",
                types(params),
                types(results)
            ));
        }
        wat.push(')');
        wat
    }

    /// ` i32 i64 ...`
    #[must_use]
    pub fn types(values: &[atoll_abi::ValueType]) -> String {
        values
            .iter()
            .map(|value| match value {
                atoll_abi::ValueType::I32 => " i32",
                atoll_abi::ValueType::I64 => " i64",
            })
            .collect()
    }
}
