//! `image-builder push`: sends a new version of one service to a running VM
//! over its control channel (a Unix socket that `image-builder run` opens as
//! the guest's second serial port) and reports how the swap went.

use crate::error::{Context, Error};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The control socket of a system's running VM.
pub fn socket_path(workspace: &Path, system_name: &str) -> std::path::PathBuf {
    workspace
        .join("target")
        .join("atoll")
        .join(system_name)
        .join("control.sock")
}

/// Sends the swap and waits for the kernel's answer; then watches `watch` for
/// a rollback. Returns whether the new version is in service.
pub fn push(socket: &Path, service: &str, module: &[u8], watch: Duration) -> Result<bool, Error> {
    let mut stream = UnixStream::connect(socket).context(|| {
        format!(
            "connecting to {} (is the system running under `image-builder run`?)",
            socket.display()
        )
    })?;
    stream
        .write_all(&atoll_core::control::encode_swap(service, module))
        .context(|| "sending the module".to_string())?;
    eprintln!(
        "push: sent {} bytes for {service}; waiting for the kernel",
        module.len()
    );
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .context(|| "setting a timeout".to_string())?;
    let mut reader = BufReader::new(stream);
    let started = Instant::now();
    let mut swapped = None::<Instant>;
    let mut line = String::new();
    loop {
        if let Some(at) = swapped
            && at.elapsed() >= watch
        {
            return Ok(true);
        }
        if swapped.is_none() && started.elapsed() > Duration::from_secs(120) {
            return Err(Error::Other("no answer from the kernel in 120 s".into()));
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => {
                return Err(Error::Other("the VM closed the control channel".into()));
            }
            Ok(_) => {
                let text = line.trim_end();
                println!("{text}");
                if text.starts_with("ok:") {
                    swapped = Some(Instant::now());
                } else if text.starts_with("error:") || text.starts_with("rolled back:") {
                    return Ok(false);
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(Error::Other(format!("reading the answer: {error}"))),
        }
    }
}
