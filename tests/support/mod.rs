//! The QEMU test harness: build a test system, boot it, watch its serial log.
//!
//! Each test names a system description under `tests/systems/`. The harness
//! builds it with image-builder (cargo makes the kernel build a no-op after the
//! first), boots it with `image-builder run`, and collects the serial console.
//! A boot ends when QEMU exits, when an awaited marker appears (for systems that
//! idle), or at the timeout. Assertions print the whole serial log on failure:
//! a triple fault exits QEMU silently, so tests always look for a positive marker.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The image-builder binary cargo built for these tests.
pub fn image_builder() -> Command {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A host port nobody listens on now (for `run --http-port`: a system with
/// a network card must not depend on 8080 being free).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

/// A copy of a system of its own for one boot (`run --instance`): its data
/// disk and control socket are not shared with a boot of the same system in
/// a test running alongside. Short, since a Unix socket's path is.
pub fn instance() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("t{}-{n}", std::process::id())
}

/// Removes an instance's state folder after its boot (the made disk image).
fn forget_instance(system: &std::path::Path, instance: &str) {
    let Ok(text) = std::fs::read_to_string(system) else {
        return;
    };
    let Some(name) = text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    }) else {
        return;
    };
    let _ = std::fs::remove_dir_all(
        workspace()
            .join("target/atoll")
            .join(name)
            .join("instances")
            .join(instance),
    );
}

/// A test system description.
pub fn system(name: &str) -> PathBuf {
    workspace()
        .join("tests/systems")
        .join(format!("{name}.toml"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

/// What a boot printed and how it ended.
#[derive(Debug)]
pub struct Boot {
    pub system: PathBuf,
    pub log: String,
    /// image-builder's exit status (0 success, 1 a service faulted or failed
    /// to load, 3 kernel failure or no report, 124 timeout); `None` when the
    /// harness stopped QEMU at a marker.
    pub status: Option<i32>,
    pub elapsed: Duration,
}

impl Boot {
    /// Panics with the serial log unless `marker` was printed.
    #[track_caller]
    pub fn expect(&self, marker: &str) -> &Self {
        assert!(
            self.log.contains(marker),
            "expected `{marker}` on the serial console of {}; it printed:\n{}",
            self.system.display(),
            self.log
        );
        self
    }

    /// Panics with the serial log if `text` was printed.
    #[track_caller]
    pub fn expect_no(&self, text: &str) -> &Self {
        assert!(
            !self.log.contains(text),
            "did not expect `{text}` on the serial console of {}; it printed:\n{}",
            self.system.display(),
            self.log
        );
        self
    }

    /// Panics with the serial log unless image-builder exited with `status`.
    #[track_caller]
    pub fn expect_status(&self, status: i32) -> &Self {
        assert_eq!(
            self.status,
            Some(status),
            "exit status of {} (0 success, 1 a service faulted or failed to load, 3 kernel failure or no report, 124 timeout); serial log:\n{}",
            self.system.display(),
            self.log
        );
        self
    }
}

/// Builds the system's image for `firmware`, panicking with image-builder's
/// output if that fails.
pub fn build(system_path: &PathBuf, firmware: Firmware) {
    let output = image_builder()
        .arg("build")
        .arg(system_path)
        .args(["--firmware", firmware_name(firmware), "--quiet"])
        .output()
        .expect("image-builder runs");
    assert!(
        output.status.success(),
        "building {} failed:\n{}",
        system_path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn firmware_name(firmware: Firmware) -> &'static str {
    match firmware {
        Firmware::Bios => "bios",
        Firmware::Uefi => "uefi",
    }
}

/// Builds and boots test system `name`; stops at `until` if given (for systems
/// that idle), else when QEMU exits; QEMU gets `timeout`.
pub fn boot(name: &str, firmware: Firmware, until: Option<&str>, timeout: Duration) -> Boot {
    boot_path(system(name), firmware, until, timeout)
}

/// [`boot`] for a description anywhere.
pub fn boot_path(
    system: PathBuf,
    firmware: Firmware,
    until: Option<&str>,
    timeout: Duration,
) -> Boot {
    boot_with(system, firmware, &[], until, timeout)
}

/// [`boot_path`] with extra arguments for `image-builder run` (e.g. `--disk`).
pub fn boot_with(
    system: PathBuf,
    firmware: Firmware,
    run_args: &[&str],
    until: Option<&str>,
    timeout: Duration,
) -> Boot {
    build(&system, firmware);
    let started = Instant::now();
    let instance = instance();
    let mut command = image_builder();
    command
        .arg("run")
        .arg(&system)
        .args(["--quiet", "--timeout", &timeout.as_secs().to_string()])
        .args(["--instance", &instance])
        .args(run_args);
    if firmware == Firmware::Uefi {
        command.arg("--uefi");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("image-builder runs");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (lines_in, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    // A backstop beyond image-builder's own QEMU timeout.
    let deadline = started + timeout + Duration::from_secs(30);
    let mut stopped_at_marker = false;
    loop {
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                log.push_str(line.trim_end_matches('\r'));
                log.push('\n');
                if until.is_some_and(|marker| line.contains(marker)) {
                    stopped_at_marker = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    if stopped_at_marker || Instant::now() >= deadline {
        kill_tree(&mut child);
    }
    let status = child.wait().expect("image-builder is waited for");
    let _ = reader.join();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    if !stderr.is_empty() {
        log.push_str("--- image-builder stderr ---\n");
        log.push_str(&stderr);
    }
    forget_instance(&system, &instance);
    Boot {
        system,
        log,
        status: if stopped_at_marker {
            None
        } else {
            status.code()
        },
        elapsed: started.elapsed(),
    }
}

/// Stops image-builder and the QEMU it started.
fn kill_tree(child: &mut std::process::Child) {
    // QEMU is image-builder's child; end it first so that it does not linger.
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &child.id().to_string()])
        .status();
    let _ = child.kill();
}

/// A VM left running while a test talks to it (`image-builder run` in the
/// background, as a copy of its own: [`Vm::instance`]). Stopped when dropped.
pub struct Vm {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    /// image-builder's error output, for the panic when it ends early.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    system: PathBuf,
    /// The `--instance` this VM runs as (for `image-builder push`).
    pub instance: String,
    pub log: String,
}

impl Vm {
    /// Builds and starts test system `name` under BIOS.
    pub fn start(name: &str, timeout: Duration) -> Vm {
        Vm::start_path(system(name), timeout)
    }

    /// Builds and starts a description anywhere under BIOS; its serial input
    /// is [`Vm::type_line`].
    pub fn start_path(path: PathBuf, timeout: Duration) -> Vm {
        Vm::start_with(path, &[], timeout)
    }

    /// [`Vm::start_path`] with extra arguments for `image-builder run`.
    pub fn start_with(path: PathBuf, run_args: &[&str], timeout: Duration) -> Vm {
        build(&path, Firmware::Bios);
        let instance = instance();
        let mut child = image_builder()
            .arg("run")
            .arg(&path)
            .args(["--quiet", "--timeout", &timeout.as_secs().to_string()])
            .args(["--instance", &instance])
            .args(run_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("image-builder runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines_in, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_in.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr is piped");
        let collected = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut text) = collected.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        Vm {
            child,
            lines,
            stderr,
            system: path,
            instance,
            log: String::new(),
        }
    }

    /// Types `line` and Enter on the guest's serial console.
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin
            .write_all(format!("{line}\r").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("the VM reads its serial input");
    }

    /// Like [`Vm::wait_for`], but also satisfied by a line already seen.
    #[track_caller]
    pub fn wait_for_seen(&mut self, marker: &str, timeout: Duration) {
        if !self.log.contains(marker) {
            self.wait_for(marker, timeout);
        }
    }

    /// Waits until a line containing `marker` appears; panics with the log if
    /// it does not within `timeout`.
    #[track_caller]
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) {
        self.wait_for_line(marker, |line| line.contains(marker), timeout);
    }

    /// Waits until a line satisfies `test` (described by `what` in the panic).
    /// Panics at once, with image-builder's exit status and error output, if
    /// the VM ends first.
    #[track_caller]
    pub fn wait_for_line(&mut self, what: &str, test: impl Fn(&str) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let line = line.trim_end_matches('\r').to_string();
                    self.log.push_str(&line);
                    self.log.push('\n');
                    if test(&line) {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait();
                    // The error-output reader ends with the process.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "the VM ended ({status:?}) before `{what}`; serial log:\n{}\n--- image-builder stderr ---\n{}",
                        self.log,
                        self.stderr
                            .lock()
                            .map(|text| text.clone())
                            .unwrap_or_default()
                    );
                }
            }
        }
        panic!(
            "`{what}` did not appear within {timeout:?}; serial log:\n{}\n--- image-builder stderr ---\n{}",
            self.log,
            self.stderr
                .lock()
                .map(|text| text.clone())
                .unwrap_or_default()
        );
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        kill_tree(&mut self.child);
        let _ = self.child.wait();
        forget_instance(&self.system, &self.instance);
    }
}
