//! `image-builder push`: sends a new version of one service to a running VM
//! over its control channel (a Unix socket that `image-builder run` opens as
//! the guest's second serial port) and reports how the swap went.

use crate::error::{Context, Error};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The folder of one running copy of a system: its control socket, its
/// made data disk and the lock that keeps a second `run` of the same copy
/// out. `target/atoll/<system>/` for the default copy,
/// `target/atoll/<system>/instances/<name>/` for `--instance name`
/// (docs/design.md, "Running copies of a system").
pub fn state_dir(
    workspace: &Path,
    system_name: &str,
    instance: Option<&str>,
) -> Result<PathBuf, Error> {
    let system = workspace.join("target").join("atoll").join(system_name);
    let Some(name) = instance else {
        return Ok(system);
    };
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !valid {
        return Err(Error::Other(format!(
            "--instance {name:?}: use 1 to 64 letters, digits, `-` or `_`"
        )));
    }
    Ok(system.join("instances").join(name))
}

/// The control socket of the running copy whose state is in `state`.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("control.sock")
}

/// Holds `state`'s run lock for as long as the returned file lives, so that
/// two runs of one copy of a system never share a disk image or a control
/// socket (QEMU would refuse the disk, and a push would reach the wrong VM).
pub fn lock_run(state: &Path, system_name: &str) -> Result<std::fs::File, Error> {
    std::fs::create_dir_all(state).context(|| format!("creating {}", state.display()))?;
    let path = state.join("run.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Other(format!(
            "system `{system_name}` is already running with its state in {}; \
             stop that run, or give this one its own --instance NAME",
            state.display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).context(|| format!("locking {}", path.display()))
        }
    }
}

/// Connects to a control socket. A Unix socket's path may not be longer
/// than 107 bytes; a deeper one (a run's state folder in a deep checkout) is
/// reached from its folder by its name, as QEMU names it (qemu::command):
/// this process's working folder changes then, which `push` never needs.
fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    const SHORT: usize = 100;
    match (socket.parent(), socket.file_name()) {
        (Some(folder), Some(name)) if socket.as_os_str().len() > SHORT => {
            std::env::set_current_dir(folder)?;
            UnixStream::connect(name)
        }
        _ => UnixStream::connect(socket),
    }
}

/// Sends the swap and waits for the kernel's answer; then watches `watch` for
/// a rollback. Returns whether the new version is in service.
pub fn push(socket: &Path, service: &str, module: &[u8], watch: Duration) -> Result<bool, Error> {
    let mut stream = connect(socket).context(|| {
        format!(
            "connecting to {} (is the system running under `image-builder run`?)",
            socket.display()
        )
    })?;
    stream
        .write_all(&atoll_abi::control::encode_swap(service, module))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_of_one_copy_is_refused_and_another_instance_is_not() {
        let workspace = std::env::temp_dir().join(format!("atoll-lock-{}", std::process::id()));
        let default = state_dir(&workspace, "demo", None).unwrap();
        let other = state_dir(&workspace, "demo", Some("b")).unwrap();
        assert_eq!(default, workspace.join("target/atoll/demo"));
        assert_eq!(other, workspace.join("target/atoll/demo/instances/b"));
        let first = lock_run(&default, "demo").unwrap();
        let refused = lock_run(&default, "demo").unwrap_err().to_string();
        assert!(refused.contains("already running"), "{refused}");
        let _second_copy = lock_run(&other, "demo").unwrap();
        drop(first);
        let _again = lock_run(&default, "demo").unwrap();
        assert!(state_dir(&workspace, "demo", Some("../x")).is_err());
        assert!(state_dir(&workspace, "demo", Some("")).is_err());
        let _ = std::fs::remove_dir_all(&workspace);
    }
}
