//! Booting an image in QEMU, headless, with the serial console on the terminal.
//!
//! The kernel reports its end through QEMU's `isa-debug-exit` device, which
//! makes QEMU exit with `(code << 1) | 1`. A plain exit status of 0 therefore
//! never means success: it is what a triple fault gives under `-no-reboot`.
//! [`Outcome`] is also how `host-run` ends: one exit-status rule for both.

use crate::error::{Context, Error};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use atoll_abi::control::ExitCode;

/// QEMU's status when the kernel exits with success (33).
pub const QEMU_SUCCESS: i32 = ExitCode::Success.qemu_status();
/// QEMU's status when the kernel itself fails (35).
pub const QEMU_FAILURE: i32 = ExitCode::Failure.qemu_status();
/// QEMU's status when the kernel ran to its end but a service faulted or
/// failed to load (37).
pub const QEMU_SERVICES_FAILED: i32 = ExitCode::ServicesFailed.qemu_status();

/// How a run ended (in QEMU or hosted), as this tool's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No service faulted or failed to load: status 0.
    Success,
    /// A service faulted or failed to load: status 1.
    ServicesFailed,
    /// The kernel reported its own failure (exception, panic, boot error):
    /// status 3.
    KernelFailure,
    /// QEMU ended without the kernel reporting (triple fault, reset): status 3.
    NoReport,
    /// The timeout expired and QEMU was stopped: status 124.
    TimedOut,
}

impl Outcome {
    /// From QEMU's exit status (`None`: stopped at the timeout).
    pub fn of_qemu(status: Option<i32>) -> Outcome {
        match status {
            None => Outcome::TimedOut,
            Some(QEMU_SUCCESS) => Outcome::Success,
            Some(QEMU_SERVICES_FAILED) => Outcome::ServicesFailed,
            Some(QEMU_FAILURE) => Outcome::KernelFailure,
            Some(_) => Outcome::NoReport,
        }
    }

    /// From the kernel's summary of a run that ended.
    pub fn of_summary(summary: &atoll_core::RunSummary) -> Outcome {
        if summary.succeeded() {
            Outcome::Success
        } else {
            Outcome::ServicesFailed
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::ServicesFailed => 1,
            Outcome::KernelFailure | Outcome::NoReport => 3,
            Outcome::TimedOut => 124,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Outcome::Success => "no service faulted or failed to load",
            Outcome::ServicesFailed => "a service faulted or failed to load",
            Outcome::KernelFailure => "the kernel failed (panic, CPU exception or boot error)",
            Outcome::NoReport => "QEMU ended without the kernel's report (e.g. a triple fault)",
            Outcome::TimedOut => "timed out; QEMU was stopped",
        };
        write!(formatter, "{text} (exit status {})", self.exit_code())
    }
}

/// How to run QEMU.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub uefi: bool,
    pub timeout: Option<Duration>,
    /// Wait for GDB on tcp::1234 before the first instruction.
    pub gdb: bool,
    pub memory_mib: u32,
    /// A Unix socket QEMU listens on as the guest's second serial port: the
    /// host control channel (`image-builder push`).
    pub control_socket: Option<PathBuf>,
    /// A raw image attached as a legacy virtio-blk PCI device (the data disk).
    pub disk: Option<PathBuf>,
    /// A legacy virtio-net card on QEMU's user networking.
    pub network: Option<Network>,
}

/// The guest's network card: QEMU user networking with `restrict=on` (the
/// guest reaches nothing outside QEMU's own 10.0.2.0/24), one host port on
/// 127.0.0.1 forwarded to the guest's port 80, and optionally a capture of
/// every frame.
#[derive(Debug, Clone)]
pub struct Network {
    pub host_port: u16,
    /// More forwards, `(host port, guest port)`: 127.0.0.1 to the guest
    /// (e.g. to a WASI program's listening socket).
    pub forwards: Vec<(u16, u16)>,
    /// A pcap file of the card's traffic (QEMU's filter-dump).
    pub capture: Option<PathBuf>,
    /// QEMU's monitor on this Unix socket (e.g. `set_link n0 off` takes the
    /// card's link down, `set_link n0 on` brings it back).
    pub monitor: Option<PathBuf>,
}

/// The PCI slot of the network card. SeaBIOS routes INTx by slot over lines
/// 10, 10, 11, 11: slot 6 gives line 10, the data disk (first free slot, 3 or
/// 4) gets 11, so neither driver shares its line.
pub const NETWORK_SLOT: u8 = 6;

/// The OVMF firmware for UEFI boots, from Debian's `ovmf` package.
fn ovmf() -> Result<PathBuf, Error> {
    let candidates = [
        "/usr/share/ovmf/OVMF.fd",
        "/usr/share/OVMF/OVMF.fd",
        "/usr/share/qemu/OVMF.fd",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| {
            Error::Other(
                "UEFI firmware (OVMF.fd) not found: install it with `apt-get install ovmf`".into(),
            )
        })
}

/// The QEMU command line for an image.
pub fn command(image: &Path, options: &RunOptions) -> Result<Command, Error> {
    let mut command = Command::new("qemu-system-x86_64");
    // Every path QEMU gets is absolute but the control socket's: QEMU runs in
    // the socket's folder and names it `control.sock`, since a Unix socket's
    // path may not be longer than 107 bytes and a run's state folder can be
    // deep (docs/design.md, "Running copies of a system").
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let image = absolute(image);
    // The boot image is a build product, shared by every run of the system:
    // QEMU reads it with a shared lock and keeps the guest's writes (there are
    // none) in a throwaway overlay, so that parallel runs and a rebuild in the
    // middle of a run never meet its write lock.
    command
        .arg("-drive")
        .arg(format!("format=raw,snapshot=on,file={}", image.display()))
        .args(["-m", &format!("{}M", options.memory_mib)])
        .args(["-serial", "stdio", "-display", "none", "-no-reboot"])
        // No default network card: QEMU's e1000 would share its interrupt
        // line with the disk and has no driver to quiet it (a system with a
        // virtio-net driver gets its card from `network`).
        .args(["-nic", "none"])
        .arg("-device")
        .arg(format!(
            "isa-debug-exit,iobase={:#x},iosize=0x04",
            atoll_abi::control::DEBUG_EXIT_PORT
        ));
    if options.uefi {
        command.arg("-bios").arg(ovmf()?);
    }
    if let Some(socket) = &options.control_socket {
        let _ = std::fs::remove_file(socket);
        let socket = absolute(socket);
        if let (Some(folder), Some(name)) = (socket.parent(), socket.file_name()) {
            command
                .current_dir(folder)
                .arg("-serial")
                .arg(format!("unix:{},server,nowait", Path::new(name).display()));
        }
    }
    if let Some(disk) = &options.disk {
        let disk = absolute(disk);
        // Legacy virtio (device 1af4:1001, I/O BAR): what the driver speaks.
        command
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=data,format=raw",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=data,disable-modern=on"]);
    }
    if let Some(network) = &options.network {
        let mut netdev = format!(
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:80",
            network.host_port
        );
        for (host, guest) in &network.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        command
            .arg("-netdev")
            .arg(netdev)
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n0,disable-modern=on,addr={NETWORK_SLOT:#x}"
            ));
        if let Some(capture) = &network.capture {
            let capture = absolute(capture);
            command.arg("-object").arg(format!(
                "filter-dump,id=f0,netdev=n0,file={}",
                capture.display()
            ));
        }
        if let Some(monitor) = &network.monitor {
            let _ = std::fs::remove_file(monitor);
            let monitor = absolute(monitor);
            command
                .arg("-monitor")
                .arg(format!("unix:{},server,nowait", monitor.display()));
        }
    }
    if options.gdb {
        command.args(["-s", "-S"]);
    }
    Ok(command)
}

/// Starts QEMU with `command` (from [`command`] with `options`): with
/// networking, its forwarded ports get a longer listen backlog
/// ([`crate::backlog`]), unless the environment variable
/// `ATOLL_QEMU_BACKLOG_OF_ONE` is set (for before/after figures).
pub fn spawn(command: &mut Command, options: &RunOptions) -> std::io::Result<Child> {
    let child = command.spawn()?;
    if let Some(network) = &options.network
        && std::env::var_os("ATOLL_QEMU_BACKLOG_OF_ONE").is_none()
    {
        let mut ports = vec![network.host_port];
        ports.extend(network.forwards.iter().map(|&(host, _)| host));
        crate::backlog::widen(child.id(), ports);
    }
    Ok(child)
}

/// Boots an image and waits for QEMU to end, or for the timeout.
pub fn run(image: &Path, options: &RunOptions) -> Result<Outcome, Error> {
    let mut child = spawn(&mut command(image, options)?, options).context(|| {
        "starting qemu-system-x86_64 (install it with `apt-get install qemu-system-x86`)"
            .to_string()
    })?;
    let status = wait(&mut child, options.timeout)?;
    Ok(Outcome::of_qemu(
        status.map(|status| status.code().unwrap_or(-1)),
    ))
}

/// Waits for `child`; `None` if the timeout expired first (the child is killed).
fn wait(child: &mut Child, timeout: Option<Duration>) -> Result<Option<ExitStatus>, Error> {
    let Some(timeout) = timeout else {
        return child
            .wait()
            .map(Some)
            .context(|| "waiting for QEMU".to_string());
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .context(|| "waiting for QEMU".to_string())?
        {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Boots an image with the serial console captured instead of shown; returns
/// how the boot ended and everything the guest printed.
pub fn run_captured(image: &Path, options: &RunOptions) -> Result<(Outcome, String), Error> {
    let mut child = spawn(
        command(image, options)?
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped()),
        options,
    )
    .context(|| "starting qemu-system-x86_64".to_string())?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Other("QEMU's output is not captured".into()))?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let status = wait(&mut child, options.timeout)?;
    let text = reader.join().unwrap_or_default();
    let outcome = Outcome::of_qemu(status.map(|status| status.code().unwrap_or(-1)));
    Ok((outcome, text.replace('\r', "")))
}

/// Boots an image with the console captured, and stops QEMU as soon as the
/// console shows `marker` (or at the timeout, or when QEMU ends by itself).
/// Returns whether the marker was seen, and the console.
pub fn run_until(
    image: &Path,
    options: &RunOptions,
    marker: &str,
) -> Result<(bool, String), Error> {
    let mut child = spawn(
        command(image, options)?
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped()),
        options,
    )
    .context(|| "starting qemu-system-x86_64".to_string())?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Other("QEMU's output is not captured".into()))?;
    let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = std::io::Read::read(&mut stdout, &mut buffer) {
            if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = options.timeout.map(|timeout| Instant::now() + timeout);
    let mut text = Vec::new();
    let mut seen = false;
    loop {
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(bytes) => text.extend_from_slice(&bytes),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if String::from_utf8_lossy(&text).contains(marker) {
            seen = true;
            break;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok((seen, String::from_utf8_lossy(&text).replace('\r', "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(options: &RunOptions) -> Vec<String> {
        command(Path::new("atoll.img"), options)
            .map(|command| {
                command
                    .get_args()
                    .map(|argument| argument.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_network_card_gets_restricted_user_networking_and_one_forward() {
        let mut options = RunOptions {
            uefi: false,
            timeout: None,
            gdb: false,
            memory_mib: 512,
            control_socket: None,
            disk: None,
            network: None,
        };
        assert!(!arguments(&options).iter().any(|a| a.contains("virtio-net")));
        // The shared boot image is never opened for writing.
        assert!(
            arguments(&options).iter().any(
                |a| a.starts_with("format=raw,snapshot=on,file=/") && a.ends_with("/atoll.img")
            )
        );
        options.network = Some(Network {
            host_port: 9090,
            forwards: vec![(9091, 8081)],
            capture: Some(PathBuf::from("out.pcap")),
            monitor: Some(PathBuf::from("monitor.sock")),
        });
        // The control socket by its name, from its folder (any depth).
        let deep = PathBuf::from("/")
            .join("d".repeat(120))
            .join("control.sock");
        let with_socket = RunOptions {
            control_socket: Some(deep.clone()),
            ..options.clone()
        };
        let command = command(Path::new("atoll.img"), &with_socket).unwrap();
        assert_eq!(command.get_current_dir(), deep.parent());
        assert!(
            command
                .get_args()
                .any(|a| a == "unix:control.sock,server,nowait")
        );
        let args = arguments(&options);
        assert!(
            args.contains(
                &"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:9090-:80,hostfwd=tcp:127.0.0.1:9091-:8081"
                    .to_string()
            )
        );
        assert!(args.contains(&"virtio-net-pci,netdev=n0,disable-modern=on,addr=0x6".to_string()));
        let here = std::env::current_dir().unwrap();
        assert!(args.contains(&format!(
            "filter-dump,id=f0,netdev=n0,file={}",
            here.join("out.pcap").display()
        )));
        assert!(args.contains(&format!(
            "unix:{},server,nowait",
            here.join("monitor.sock").display()
        )));
    }
}
