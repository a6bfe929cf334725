//! The kernel core hosted on Linux: the same `atoll-core` that runs in the
//! kernel, driven by a platform of threads and `std` clocks instead of a CPU.
//! Used to compare the interpreter and IPC costs with and without emulation,
//! and to run systems quickly during development.

use crate::host_clock::HostClock;
use atoll_core::{Kernel, Platform, RunSummary};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Console to stdout (unless quiet) and to a buffer; the monotonic clock of
/// [`HostClock`]; idle waits sleep until the deadline.
struct HostPlatform {
    clock: HostClock,
    echo: bool,
    /// WASI programs without a console service read this process's stdin.
    stdin: bool,
    console: Mutex<String>,
    /// Control requests to feed the kernel, one at a time: the next is
    /// released once the kernel has answered the previous one.
    script: Mutex<Script>,
}

#[derive(Default)]
struct Script {
    frames: std::collections::VecDeque<Vec<u8>>,
    /// Bytes of the released frame not yet read by the kernel.
    sending: Vec<u8>,
    /// Frames released, and swaps the kernel reported finished (its
    /// "swap pause" line: the new version serves).
    released: usize,
    finished: usize,
    /// When the last swap finished; the next frame waits a little, so that
    /// the services run between swaps.
    finished_at: Option<Instant>,
}

/// Time between one swap finishing and the next request.
const SCRIPT_GAP: Duration = Duration::from_millis(2);

impl Platform for HostPlatform {
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    fn boot_wall_clock_ns(&self) -> u64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_nanos())
            .unwrap_or(0)
            .saturating_sub(self.now_ns())
    }

    fn stdin_read(&self, max: usize) -> Option<Vec<u8>> {
        if !self.stdin {
            return None;
        }
        use std::io::Read;
        let mut buffer = vec![0u8; max.min(64 * 1024)];
        // Blocks the hosted kernel until input comes, as a terminal would
        // block the program.
        let count = std::io::stdin().lock().read(&mut buffer).unwrap_or(0);
        buffer.truncate(count);
        Some(buffer)
    }

    fn physical_address(&self, virtual_address: usize) -> Option<u64> {
        // No device reads it here: the address only has to be stable.
        Some(virtual_address as u64)
    }

    fn random_seed(&self) -> u64 {
        // std's hasher keys come from the OS's random source.
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(self.now_ns())
    }

    fn console_write(&self, text: &str) {
        if self.echo {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
        if text.contains("swap pause of ")
            && let Ok(mut script) = self.script.lock()
        {
            script.finished += 1;
            script.finished_at = Some(Instant::now());
        }
        if let Ok(mut console) = self.console.lock() {
            console.push_str(text);
        }
    }

    fn control_read(&self, buffer: &mut [u8]) -> usize {
        let Ok(mut script) = self.script.lock() else {
            return 0;
        };
        let rested = script
            .finished_at
            .is_none_or(|at| at.elapsed() >= SCRIPT_GAP);
        if script.sending.is_empty()
            && script.finished == script.released
            && rested
            && let Some(frame) = script.frames.pop_front()
        {
            script.sending = frame;
            script.released += 1;
        }
        let count = script.sending.len().min(buffer.len());
        let taken: Vec<u8> = script.sending.drain(..count).collect();
        if let Some(target) = buffer.get_mut(..count) {
            target.copy_from_slice(&taken);
        }
        count
    }

    fn control_write(&self, text: &str) {
        if !text.starts_with("ok:")
            && let Ok(mut script) = self.script.lock()
        {
            // A failed request: go on with the next one.
            script.finished = script.released;
            script.finished_at = Some(Instant::now());
        }
        if self.echo {
            print!("control: {text}");
        }
    }

    fn wait_until(&self, deadline_ns: u64) {
        let now = self.now_ns();
        if deadline_ns > now {
            std::thread::sleep(Duration::from_nanos(deadline_ns - now));
        }
    }
}

/// Boots a bundle in the hosted core and runs it until nothing can run.
/// Returns the console text and how the run ended.
pub fn run(bundle: &[u8], echo: bool) -> Result<(String, RunSummary), String> {
    run_scripted(bundle, echo, Vec::new())
}

/// [`run`], feeding the kernel's control channel `frames` (e.g. swap
/// requests), each once the previous one has been answered.
pub fn run_scripted(
    bundle: &[u8],
    echo: bool,
    frames: Vec<Vec<u8>>,
) -> Result<(String, RunSummary), String> {
    run_with(bundle, echo, frames, false, false).map(|(console, summary, _)| (console, summary))
}

/// What a hosted run leaves besides its console and summary.
#[derive(Default)]
pub struct Observed {
    /// The trace ring's dump lines (empty unless tracing was on).
    pub dump: Vec<String>,
    /// The services' and endpoints' counters at the end, as tables.
    pub counters: String,
}

/// [`run`] for `host-run`, with tracing on from the start when `trace`;
/// also returns what the kernel counted and traced. WASI programs that have
/// no console service read this process's stdin on descriptor 0.
pub fn run_traced(
    bundle: &[u8],
    echo: bool,
    trace: bool,
) -> Result<(String, RunSummary, Observed), String> {
    run_with(bundle, echo, Vec::new(), trace, true)
}

/// The kernel's counters as two text tables (services, endpoints).
fn counters(kernel: &Kernel) -> String {
    let mut text = format!(
        "{:<20} {:>9} {:>12} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>10} {:>10} {:>10}\n",
        "service",
        "mem KiB",
        "fuel",
        "slices",
        "calls",
        "sent",
        "received",
        "faults",
        "restarts",
        "recv ms",
        "reply ms",
        "sleep ms"
    );
    for service in kernel.service_info() {
        text.push_str(&format!(
            "{:<20} {:>9} {:>12} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>10.1} {:>10.1} {:>10.1}\n",
            service.name,
            service.memory_bytes / 1024,
            service.fuel_used,
            service.slices,
            service.syscalls,
            service.sent,
            service.received,
            service.faults,
            service.restarts,
            service.blocked_receive_ns as f64 / 1e6,
            service.blocked_reply_ns as f64 / 1e6,
            service.blocked_sleep_ns as f64 / 1e6,
        ));
    }
    text.push_str(&format!(
        "\n{:<20} {:>9} {:>8} {:>8} {:>6} {:>6}\n",
        "endpoint", "queue", "queued", "deepest", "full", "gone"
    ));
    for endpoint in kernel.endpoint_info() {
        text.push_str(&format!(
            "{:<20} {:>9} {:>8} {:>8} {:>6} {:>6}\n",
            endpoint.name,
            format!("{}/{}", endpoint.queue_len, endpoint.queue_depth),
            endpoint.queued,
            endpoint.deepest,
            endpoint.queue_full,
            endpoint.peer_gone
        ));
    }
    text
}

fn run_with(
    bundle: &[u8],
    echo: bool,
    frames: Vec<Vec<u8>>,
    trace: bool,
    stdin: bool,
) -> Result<(String, RunSummary, Observed), String> {
    let platform = Arc::new(HostPlatform {
        clock: HostClock::new(),
        echo,
        stdin,
        console: Mutex::new(String::new()),
        script: Mutex::new(Script {
            frames: frames.into(),
            ..Script::default()
        }),
    });
    platform.console_write("atoll: hosted kernel core on Linux\n");
    let (mut kernel, _settings) =
        Kernel::boot(bundle, platform.clone()).map_err(|error| format!("cannot boot: {error}"))?;
    if trace {
        kernel
            .set_tracing(true)
            .map_err(|error| format!("cannot trace: {error}"))?;
    }
    let summary = kernel.run();
    let observed = Observed {
        dump: if trace {
            kernel.trace_dump()
        } else {
            Vec::new()
        },
        counters: counters(&kernel),
    };
    platform.console_write(&format!("atoll: no service can run: {summary}\n"));
    let console = platform
        .console
        .lock()
        .map(|console| console.clone())
        .unwrap_or_default();
    Ok((console, summary, observed))
}
