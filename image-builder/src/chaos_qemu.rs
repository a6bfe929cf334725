//! `image-builder chaos --qemu`: the fault campaign in QEMU, against the
//! storage path and the console (docs/reliability.md, "The QEMU campaign").
//!
//! The system (`tests/systems/storage-chaos.toml`) does the injecting and the
//! checking from inside: its supervisor kills, stops and feeds garbage and
//! hostile requests to the disk driver, the file system and the console,
//! while a reader verifies a file byte by byte. This file writes that file
//! (the reader's pattern) into a fresh FAT disk, boots the system with the
//! number of faults and the seed as the supervisor's arguments, shows its
//! checkpoints, and judges the run: the supervisor's verdict, no kernel
//! panic or CPU exception, no console silence longer than [`SILENCE`].

use crate::builder::{self, BuildOptions};
use crate::chaos::{Settings, parse_report};
use crate::error::{Context, Error};
use crate::{disk, manifest, qemu};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A campaign whose console says nothing for this long is hung.
const SILENCE: Duration = Duration::from_secs(90);
/// Time allowed per fault beyond two minutes (10,000 faults take about 50 s).
const PER_FAULT: Duration = Duration::from_millis(20);
/// Size of the file the reader verifies.
const PATTERN_BYTES: u64 = 256 * 1024;
/// Console lines kept to show when a run fails.
const TAIL_LINES: usize = 60;

/// Byte `index` of the reader's file (test-storage-chaos-reader's
/// `expected`): each 8-byte word a bijection of its number, so no two words
/// are equal.
fn pattern(index: u64) -> u8 {
    let word = (index / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let word = word ^ (word >> 29);
    (word >> ((index % 8) * 8)) as u8
}

/// Builds and boots the campaign, prints its report; returns the exit status:
/// 0 passed, 1 an invariant failed, 3 the kernel failed or hung.
pub fn run(
    system_path: &Path,
    options: &BuildOptions,
    settings: &Settings,
    instance: Option<&str>,
) -> Result<u8, Error> {
    let mut system = manifest::load(system_path).map_err(Error::Diagnostics)?;
    let supervisor = system
        .services
        .iter_mut()
        .find(|service| service.supervisor)
        .ok_or_else(|| Error::Other(format!("{}: no supervisor", system_path.display())))?;
    supervisor.args.push(settings.faults.to_string());
    supervisor.args.push(settings.seed.to_string());
    let artifacts = builder::build(&system, options)?;
    let image = artifacts
        .bios_image
        .ok_or_else(|| Error::Other("no BIOS image was written".into()))?;
    let state = crate::push::state_dir(&options.workspace, &system.name, instance)?;
    let _running = crate::push::lock_run(&state, &system.name)?;
    let folder = state.join("disk-folder");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).context(|| format!("creating {}", folder.display()))?;
    let bytes: Vec<u8> = (0..PATTERN_BYTES).map(pattern).collect();
    std::fs::write(folder.join("PATTERN.BIN"), bytes)
        .context(|| format!("writing {}", folder.display()))?;
    let disk_image = state.join("disk.img");
    disk::make_fat_image(&folder, manifest::DEFAULT_DISK_MIB, &disk_image)?;
    println!(
        "chaos: QEMU campaign, {} faults, seed {}, system {}",
        settings.faults,
        settings.seed,
        system_path.display()
    );
    let run_options = qemu::RunOptions {
        uefi: false,
        timeout: None,
        gdb: false,
        memory_mib: 512,
        control_socket: None,
        disk: Some(disk_image),
        network: None,
    };
    let mut child = qemu::command(&image, &run_options)?
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context(|| "starting qemu-system-x86_64".to_string())?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Other("QEMU's output is not captured".into()))?;
    let (lines_in, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let limit = Duration::from_secs(120)
        + PER_FAULT.saturating_mul(u32::try_from(settings.faults).unwrap_or(u32::MAX));
    let mut last_line = Instant::now();
    let mut tail: Vec<String> = Vec::new();
    let mut report = None;
    let mut verdict = None;
    let mut kernel_failure = None;
    let mut first_wrong = None;
    let (mut hung, mut timed_out, mut ended_early) = (false, false, false);
    loop {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_string();
                last_line = Instant::now();
                if settings.verbose
                    || line.starts_with("checkpoint ")
                    || line.contains("VIOLATION")
                    || line.contains("CORRUPT")
                {
                    println!("  {line}");
                }
                if line.contains("KERNEL PANIC") || line.contains("CPU EXCEPTION") {
                    kernel_failure = Some(line.clone());
                }
                // The first wrong answer or violation ends the run: a reader
                // that keeps failing would take hours to reach a verdict.
                if line.contains("CORRUPT") || line.contains("VIOLATION") {
                    first_wrong = Some(line.clone());
                }
                if line.contains("storage-chaos: report ") {
                    report = Some(line.clone());
                }
                if line.contains("storage-chaos: passed") {
                    verdict = Some(true);
                } else if line.contains("storage-chaos: FAILED") {
                    verdict = Some(false);
                }
                tail.push(line);
                if tail.len() > TAIL_LINES {
                    tail.remove(0);
                }
                if verdict.is_some() || kernel_failure.is_some() || first_wrong.is_some() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                ended_early = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if last_line.elapsed() >= SILENCE {
                    hung = true;
                    break;
                }
            }
        }
        if started.elapsed() >= limit {
            timed_out = true;
            break;
        }
    }
    let wall = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();

    let values = report.as_deref().map(parse_report).unwrap_or_default();
    let value = |key: &str| values.get(key).copied().unwrap_or(0);
    let mut failures = Vec::new();
    if let Some(line) = &kernel_failure {
        failures.push(format!("the kernel failed: {line}"));
    }
    if hung {
        failures.push(format!(
            "the console was silent for {} s",
            SILENCE.as_secs()
        ));
    }
    if timed_out {
        failures.push(format!("no verdict within {} s", limit.as_secs()));
    }
    if let Some(line) = &first_wrong {
        failures.push(format!(
            "stopped at the first wrong answer or violation: {line}"
        ));
    }
    let quit_early = ended_early && verdict.is_none() && kernel_failure.is_none();
    if quit_early {
        failures.push("QEMU ended before the campaign's verdict".to_string());
    }
    if report.is_none() {
        failures.push("no report from the campaign".to_string());
    } else {
        // Every count must be there; the faults are counted by kind.
        for key in KEYS.iter().chain(KINDS.iter()) {
            if !values.contains_key(*key) {
                failures.push(format!("the report has no {key}"));
            }
        }
        let by_kind: u64 = KINDS.iter().map(|kind| value(kind)).sum();
        if by_kind != settings.faults {
            failures.push(format!("{by_kind} of {} faults injected", settings.faults));
        }
        for key in [
            "violations",
            "stalls",
            "corrupt",
            "refused",
            "driver-faults",
        ] {
            if value(key) != 0 {
                failures.push(format!("{key}={}", value(key)));
            }
        }
        if verdict != Some(true) {
            failures.push("the campaign's verdict is FAILED".to_string());
        }
    }
    if let Some(line) = &report {
        println!("chaos: {}", line.trim_start_matches("[storage-chaos] "));
    }
    println!(
        "chaos: {} faults in {:.1} s; reader: {} reads, {} verified byte for byte, {} failed with an error a fault may cause, {} refused otherwise, {} answered wrongly",
        value("faults"),
        wall.as_secs_f64(),
        value("reads"),
        value("verified"),
        value("failed"),
        value("refused"),
        value("corrupt")
    );
    let record = serde_json::json!({
        "campaign": "qemu-storage",
        "faults": value("faults"),
        "seed": settings.seed,
        "restarts": value("restarts"),
        "violations": value("violations"),
        "stalls": value("stalls"),
        "driver_faults": value("driver-faults"),
        "reads": value("reads"),
        "verified": value("verified"),
        "failed": value("failed"),
        "refused": value("refused"),
        "corrupt": value("corrupt"),
        "guest_ms": value("guest-ms"),
        "wall_s": wall.as_secs_f64(),
        "passed": failures.is_empty(),
    });
    crate::chaos::append_record(&options.workspace, &record)?;
    if failures.is_empty() {
        println!("chaos: passed");
        return Ok(0);
    }
    eprintln!("chaos: the console's last lines:");
    for line in &tail {
        eprintln!("  {line}");
    }
    for failure in &failures {
        eprintln!("chaos: FAILED: {failure}");
    }
    let kernel_failed = kernel_failure.is_some() || hung || timed_out || quit_early;
    Ok(if kernel_failed { 3 } else { 1 })
}

/// The counts every report carries besides the kinds.
const KEYS: [&str; 11] = [
    "faults",
    "restarts",
    "stalls",
    "violations",
    "driver-faults",
    "reads",
    "verified",
    "failed",
    "corrupt",
    "refused",
    "guest-ms",
];

/// The fault kinds, as the injector names them (tests/services/storage-chaos).
const KINDS: [&str; 12] = [
    "kill-disk-driver",
    "kill-file-system",
    "kill-console",
    "stop-start-disk-driver",
    "garbage-to-disk-driver",
    "garbage-to-file-system",
    "garbage-to-console",
    "cut-request-to-file-system",
    "garbage-call-to-file-system",
    "oversized-call-to-file-system",
    "hostile-disk-read",
    "hostile-file-read",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_line_parses_into_its_counts() {
        let values = parse_report(
            "[storage-chaos] storage-chaos: report faults=12 kill-console=3 corrupt=0 guest-ms=4",
        );
        assert_eq!(values.get("faults"), Some(&12));
        assert_eq!(values.get("kill-console"), Some(&3));
        assert_eq!(values.get("corrupt"), Some(&0));
        assert_eq!(values.get("storage-chaos:"), None);
    }

    #[test]
    fn no_two_words_of_the_pattern_are_equal() {
        let words: std::collections::BTreeSet<[u8; 8]> = (0..PATTERN_BYTES / 8)
            .map(|word| std::array::from_fn(|byte| pattern(word * 8 + byte as u64)))
            .collect();
        assert_eq!(words.len() as u64, PATTERN_BYTES / 8);
    }
}
