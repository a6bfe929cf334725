//! The kernel core hosted on Linux: the same `atoll-core` that runs in the
//! kernel, driven by a platform of threads and `std` clocks instead of a CPU.
//! Used to compare the interpreter and IPC costs with and without emulation,
//! and to run systems quickly during development.

use atoll_core::{Kernel, Platform, RunSummary};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Console to stdout (unless quiet) and to a buffer; monotonic clock from
/// `Instant`; idle waits sleep until the deadline.
struct HostPlatform {
    started: Instant,
    echo: bool,
    console: Mutex<String>,
}

impl Platform for HostPlatform {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn console_write(&self, text: &str) {
        if self.echo {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
        if let Ok(mut console) = self.console.lock() {
            console.push_str(text);
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
    let platform = Arc::new(HostPlatform {
        started: Instant::now(),
        echo,
        console: Mutex::new(String::new()),
    });
    platform.console_write("atoll: hosted kernel core on Linux\n");
    let (mut kernel, _settings) =
        Kernel::boot(bundle, platform.clone()).map_err(|error| format!("cannot boot: {error}"))?;
    let summary = kernel.run();
    platform.console_write(&format!(
        "atoll: no service can run: {} exited, {} faulted, {} failed to load, {} waiting for ever\n",
        summary.exited, summary.faulted, summary.failed_to_load, summary.blocked
    ));
    let console = platform
        .console
        .lock()
        .map(|console| console.clone())
        .unwrap_or_default();
    Ok((console, summary))
}
