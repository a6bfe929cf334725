//! `image-builder chaos`: the seeded fault-injection campaign, run in the
//! kernel core hosted on Linux (docs/reliability.md, "The fault campaign").
//!
//! The system (`tests/systems/chaos.toml`) does the injecting and the
//! checking from inside: its supervisor arms and causes faults drawn from the
//! seed and checks each one's outcome; the victims check the kernel's answers
//! to their misuse; the clients count answers. This file boots it with the
//! number of faults and the seed as the supervisor's arguments, watches the
//! console (the kernel's fault lines, the supervisor's checkpoints and final
//! report), measures the process heap with a counting allocator, and judges
//! the run: no panic, every fault injected, no violation or stall, the
//! uninvolved stream answered exactly once and in order, one kernel fault
//! report per trap, and the heap flat from the first checkpoint to the last
//! and back to where it was once the kernel is dropped.
//!
//! What is not here: the faults themselves (the services), a QEMU campaign.

use crate::builder::{self, BuildOptions};
use crate::error::{Context, Error};
use crate::manifest;
use atoll_core::{Kernel, Platform, RunSummary};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rise of the heap's floor allowed from the first tenth of the checkpoints
/// after the warm-up (1,000 faults) to the last tenth, and heap left once
/// the kernel is dropped. Quiet moments differ by up to about 48 KiB (a
/// swapped victim's interpreter still held at a checkpoint, measured in a
/// 30,000-fault run); a leak of one byte per fault exceeds the slack from
/// 64 Ki faults on (a million-fault run's floor rose 2,217 bytes).
pub const HEAP_SLACK: i64 = 64 * 1024;
/// The console lines kept to show when a run fails.
const TAIL_LINES: usize = 40;
/// Lines that matter (violations, the stream's errors) kept whole.
const NOTABLE_LINES: usize = 40;
/// Longest console line kept.
const LINE_BYTES: usize = 300;
/// A run whose console is silent this long is hung.
const SILENCE: Duration = Duration::from_secs(60);

/// What the run showed, gathered from the console.
struct Observed {
    /// Live heap bytes at each `checkpoint` line.
    checkpoints: Vec<usize>,
    high_water: usize,
    /// `service X faulted:` lines of the kernel.
    kernel_faults: u64,
    report: String,
    tail: Vec<String>,
    tail_next: usize,
    notable: Vec<String>,
}

/// The hosted platform of the campaign: a real clock, a seeded entropy
/// source, and a console that is parsed instead of kept (a million faults
/// make hundreds of megabytes of log). Every buffer it keeps is allocated
/// before the kernel boots, so its own memory does not move the heap figures.
struct ChaosPlatform {
    started: Instant,
    seed: u64,
    echo: bool,
    heap: fn() -> usize,
    last_line_ns: AtomicU64,
    observed: Mutex<Observed>,
}

impl ChaosPlatform {
    fn new(seed: u64, echo: bool, faults: u64, heap: fn() -> usize) -> Self {
        let line = || String::with_capacity(LINE_BYTES + 4);
        let checkpoints = usize::try_from(faults / 1000 + 16).unwrap_or(usize::MAX);
        ChaosPlatform {
            started: Instant::now(),
            seed,
            echo,
            heap,
            last_line_ns: AtomicU64::new(0),
            observed: Mutex::new(Observed {
                checkpoints: Vec::with_capacity(checkpoints),
                high_water: 0,
                kernel_faults: 0,
                report: String::with_capacity(4096),
                tail: (0..TAIL_LINES).map(|_| line()).collect(),
                tail_next: 0,
                notable: Vec::with_capacity(NOTABLE_LINES + TAIL_LINES),
            }),
        }
    }
}

/// `text` cut to at most `bytes` bytes on a character boundary.
fn cut(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

impl Platform for ChaosPlatform {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn random_seed(&self) -> u64 {
        self.seed
    }

    fn console_write(&self, text: &str) {
        // Sampled before this function allocates anything.
        let live = (self.heap)();
        self.last_line_ns.store(self.now_ns(), Ordering::Relaxed);
        if self.echo {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
        }
        let Ok(mut observed) = self.observed.lock() else {
            return;
        };
        observed.high_water = observed.high_water.max(live);
        if text.starts_with("atoll: service ") && text.contains(" faulted: ") {
            observed.kernel_faults += 1;
        }
        if text.starts_with("[chaos-supervisor] checkpoint ")
            && observed.checkpoints.len() < observed.checkpoints.capacity()
        {
            observed.checkpoints.push(live);
        }
        if let Some(report) = text.strip_prefix("[chaos-supervisor] report ") {
            observed.report.clear();
            let report = cut(report.trim_end(), 4000);
            observed.report.push_str(report);
        }
        let notable = text.contains("VIOLATION")
            || text.contains("note to the supervisor lost")
            || text.starts_with("[stream] stream:");
        if notable && observed.notable.is_empty() {
            // The console before the first violation: what led to it.
            for index in 0..TAIL_LINES {
                let at = (observed.tail_next + index) % TAIL_LINES;
                let line = observed
                    .tail
                    .get(at)
                    .map(|line| format!("before: {}", line.trim_end()));
                if let Some(line) = line.filter(|line| line.len() > "before: ".len()) {
                    observed.notable.push(line);
                }
            }
        }
        if notable && observed.notable.len() < NOTABLE_LINES + TAIL_LINES {
            // Allocates, but only on a failing run.
            observed
                .notable
                .push(cut(text.trim_end(), LINE_BYTES).to_string());
        }
        let next = observed.tail_next;
        if let Some(line) = observed.tail.get_mut(next) {
            line.clear();
            line.push_str(cut(text, LINE_BYTES));
        }
        observed.tail_next = (next + 1) % TAIL_LINES;
    }

    fn wait_until(&self, deadline_ns: u64) {
        let now = self.now_ns();
        if deadline_ns > now {
            std::thread::sleep(Duration::from_nanos(deadline_ns - now));
        }
    }
}

/// One campaign's settings.
pub struct Settings {
    pub faults: u64,
    pub seed: u64,
    pub verbose: bool,
}

/// Builds the chaos system, runs the campaign and prints its report.
/// Returns the exit status: 0 passed, 1 an invariant failed, 3 the kernel
/// panicked.
pub fn run(
    system_path: &Path,
    options: &BuildOptions,
    settings: &Settings,
    heap: fn() -> usize,
) -> Result<u8, Error> {
    let mut system = manifest::load(system_path).map_err(Error::Diagnostics)?;
    let supervisor = system
        .services
        .iter_mut()
        .find(|service| service.supervisor)
        .ok_or_else(|| Error::Other(format!("{}: no supervisor", system_path.display())))?;
    supervisor.args.push(settings.faults.to_string());
    supervisor.args.push(settings.seed.to_string());
    let bundle = builder::bundle_only(&system, options)?;
    println!(
        "chaos: {} faults, seed {}, system {}",
        settings.faults,
        settings.seed,
        system_path.display()
    );
    let platform = Arc::new(ChaosPlatform::new(
        settings.seed,
        settings.verbose,
        settings.faults,
        heap,
    ));
    let finished = Arc::new(AtomicBool::new(false));
    watchdog(Arc::clone(&platform), Arc::clone(&finished));
    let heap_before = heap();
    let started = Instant::now();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let kernel_platform: Arc<dyn Platform> = platform.clone();
        let (mut kernel, _) = Kernel::boot(&bundle, kernel_platform).map_err(|e| e.to_string())?;
        let summary = kernel.run();
        drop(kernel);
        Ok::<RunSummary, String>(summary)
    }));
    let wall = started.elapsed();
    let heap_after = heap();
    finished.store(true, Ordering::Relaxed);
    let observed = match platform.observed.lock() {
        Ok(observed) => observed,
        Err(poisoned) => poisoned.into_inner(),
    };
    let summary = match ran {
        Ok(Ok(summary)) => summary,
        Ok(Err(error)) => {
            show_tail(&observed);
            eprintln!("chaos: FAILED: the kernel cannot boot: {error}");
            return Ok(3);
        }
        Err(_) => {
            show_tail(&observed);
            eprintln!("chaos: FAILED: kernel panic");
            return Ok(3);
        }
    };
    let report = parse_report(&observed.report);
    let value = |key: &str| report.get(key).copied().unwrap_or(0);
    let as_signed = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
    let leak = as_signed(heap_after) - as_signed(heap_before);
    // The first 1,000 faults are the warm-up: queues, tables and
    // interpreter stacks reach their working size (about 0.5 MiB). From the
    // checkpoint after them on, the heap must stay flat.
    let checkpoints = &observed.checkpoints;
    let warm_up = match (checkpoints.first(), checkpoints.get(1)) {
        (Some(&first), Some(&second)) => as_signed(second) - as_signed(first),
        _ => 0,
    };
    // A leak raises the heap's floor; a checkpoint that happens to find a
    // swapped-out version not yet freed, or messages queued, sits above it.
    // So the floor of the first tenth after the warm-up is compared with
    // the floor of the last tenth.
    let steady_growth = if checkpoints.len() >= 3 {
        let after_warm_up = checkpoints.get(1..).unwrap_or_default();
        let tenth = after_warm_up.len().div_ceil(10);
        let floor = |samples: &[usize]| samples.iter().copied().min().map_or(0, as_signed);
        let early = floor(after_warm_up.get(..tenth).unwrap_or_default());
        let late = floor(
            after_warm_up
                .get(after_warm_up.len() - tenth..)
                .unwrap_or_default(),
        );
        late - early
    } else {
        0
    };
    let high_water = observed.high_water.saturating_sub(heap_before);

    let mut failures = Vec::new();
    let mut require = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    require(
        !report.is_empty(),
        "the supervisor wrote no report".to_string(),
    );
    require(
        value("faults") == settings.faults,
        format!("{} faults injected of {}", value("faults"), settings.faults),
    );
    for key in ["violations", "victim-violations", "stalls"] {
        require(value(key) == 0, format!("{key}: {}", value(key)));
    }
    require(
        value("stream-served") > 0 && value("stream-failed") == 0 && value("stream-wrong") == 0,
        format!(
            "uninvolved stream: {} answered, {} failed, {} wrong",
            value("stream-served"),
            value("stream-failed"),
            value("stream-wrong")
        ),
    );
    let trapping: u64 = [
        "unreachable",
        "out-of-bounds",
        "divide-by-zero",
        "stack-exhaustion",
        "memory-bomb",
    ]
    .iter()
    .map(|kind| value(kind))
    .sum();
    require(
        value("traps") == trapping && observed.kernel_faults == trapping,
        format!(
            "{} trapping faults injected, {} reported to the supervisor, {} logged by the kernel",
            trapping,
            value("traps"),
            observed.kernel_faults
        ),
    );
    require(
        value("swaps") == value("swapped-mid-call"),
        format!(
            "{} swaps of {} swap faults",
            value("swaps"),
            value("swapped-mid-call")
        ),
    );
    require(
        summary.failed_to_load == 0
            && u64::try_from(summary.faulted).unwrap_or(u64::MAX) == trapping,
        format!("kernel summary: {summary}"),
    );
    require(
        checkpoints.len() >= 2,
        format!("{} heap checkpoints", checkpoints.len()),
    );
    require(
        steady_growth <= HEAP_SLACK,
        format!(
            "the heap's floor rose {steady_growth} bytes from the first tenth of the checkpoints after the warm-up to the last"
        ),
    );
    require(
        leak.abs() <= HEAP_SLACK,
        format!("heap after the kernel is dropped differs by {leak} bytes"),
    );

    println!("chaos: faults injected by kind:");
    for (kind, count) in &report {
        if !matches!(
            kind.as_str(),
            "faults"
                | "restarts"
                | "swaps"
                | "traps"
                | "stalls"
                | "violations"
                | "victim-violations"
                | "checkpoints"
                | "served"
                | "failed"
                | "wrong"
                | "stream-served"
                | "stream-failed"
                | "stream-wrong"
        ) {
            println!("  {kind:<20} {count:>10}");
        }
    }
    let seconds = wall.as_secs_f64();
    println!(
        "chaos: {} faults in {seconds:.1} s ({:.0} per second); {} restarts; {} swaps; {} traps",
        value("faults"),
        value("faults") as f64 / seconds.max(1e-9),
        value("restarts"),
        value("swaps"),
        value("traps"),
    );
    println!(
        "chaos: callers of victims: {} answered, {} failed with an error, {} garbage answers",
        value("served"),
        value("failed"),
        value("wrong")
    );
    println!(
        "chaos: uninvolved stream: {} requests answered in order, {} failed, {} wrong",
        value("stream-served"),
        value("stream-failed"),
        value("stream-wrong")
    );
    let steady = if checkpoints.len() >= 3 {
        format!(
            "then its floor {steady_growth:+} bytes from the first tenth of the {} checkpoints to the last",
            checkpoints.len()
        )
    } else {
        "too few checkpoints to judge after it (run 3,000 faults or more)".to_string()
    };
    println!(
        "chaos: kernel heap: high-water {} KiB; warm-up (first 1,000 faults) {warm_up:+} bytes, {steady}; after the kernel is dropped {leak:+} bytes",
        high_water / 1024,
    );
    println!("chaos: kernel: {summary}");

    let record = serde_json::json!({
        "timestamp": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        "benchmark": "chaos",
        "where": "hosted",
        "seed": settings.seed,
        "faults": value("faults"),
        "by_kind": report
            .iter()
            .filter(|(kind, _)| {
                KINDS.contains(&kind.as_str())
            })
            .collect::<BTreeMap<_, _>>(),
        "restarts": value("restarts"),
        "swaps": value("swaps"),
        "traps": value("traps"),
        "served": value("served"),
        "failed": value("failed"),
        "wrong": value("wrong"),
        "stream_served": value("stream-served"),
        "heap_high_water_bytes": high_water,
        "heap_warm_up_bytes": warm_up,
        "heap_checkpoint_growth_bytes": steady_growth,
        "heap_leak_bytes": leak,
        "wall_s": seconds,
        "passed": failures.is_empty(),
    });
    append_record(&options.workspace, &record)?;

    if failures.is_empty() {
        println!("chaos: passed");
        return Ok(0);
    }
    show_tail(&observed);
    for line in &observed.notable {
        eprintln!("  {line}");
    }
    for failure in &failures {
        eprintln!("chaos: FAILED: {failure}");
    }
    Ok(1)
}

/// The fault kinds of the supervisor's report, in its order.
const KINDS: [&str; 13] = [
    "unreachable",
    "out-of-bounds",
    "divide-by-zero",
    "stack-exhaustion",
    "memory-bomb",
    "killed-mid-call",
    "infinite-loop",
    "garbage-answers",
    "capability-misuse",
    "random-host-calls",
    "killed-any-time",
    "restart-storm",
    "swapped-mid-call",
];

/// Appends a run's figures to `target/bench/chaos.jsonl` (both campaigns).
pub(crate) fn append_record(workspace: &Path, record: &serde_json::Value) -> Result<(), Error> {
    let out_dir = workspace.join("target").join("bench");
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join("chaos.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{record}"))
        .context(|| format!("writing {}", path.display()))?;
    println!("chaos: figures appended to {}", path.display());
    Ok(())
}

/// `key=value` pairs of a campaign's report line (both campaigns).
pub(crate) fn parse_report(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(key, value)| Some((key.to_string(), value.parse().ok()?)))
        .collect()
}

fn show_tail(observed: &Observed) {
    eprintln!("chaos: the last console lines:");
    for index in 0..TAIL_LINES {
        let line = observed
            .tail
            .get((observed.tail_next + index) % TAIL_LINES)
            .map_or("", String::as_str);
        if !line.is_empty() {
            eprint!("  {line}");
        }
    }
}

/// Ends the process (status 124) if the console stays silent for
/// [`SILENCE`]: the kernel loop itself is stuck.
fn watchdog(platform: Arc<ChaosPlatform>, finished: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !finished.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(1));
            let silent = platform
                .now_ns()
                .saturating_sub(platform.last_line_ns.load(Ordering::Relaxed));
            if Duration::from_nanos(silent) > SILENCE && !finished.load(Ordering::Relaxed) {
                eprintln!("chaos: FAILED: no console line for {} s", SILENCE.as_secs());
                std::process::exit(124);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_line_parses_into_counts() {
        let report = parse_report("faults=12 unreachable=3 restarts=40 junk stream-wrong=0");
        assert_eq!(report.get("faults"), Some(&12));
        assert_eq!(report.get("unreachable"), Some(&3));
        assert_eq!(report.get("stream-wrong"), Some(&0));
        assert_eq!(report.len(), 4);
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }
}
