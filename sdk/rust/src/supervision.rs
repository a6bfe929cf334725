//! For the supervisor service: the kernel's reports and the `control` calls.
//! Every other service gets `NotPermitted` from these.

use atoll_abi::Error;
pub use atoll_abi::supervision::{
    CONTROL_RESTART, CONTROL_START, CONTROL_STOP, CONTROL_TRACE_OFF, CONTROL_TRACE_ON, Event,
    KERNEL_SENDER, Outcome, RestartPolicy, Strategy,
};

/// Turns the kernel's trace ring on or off.
#[cfg(target_family = "wasm")]
pub fn trace(on: bool) -> Result<(), Error> {
    control(
        if on {
            CONTROL_TRACE_ON
        } else {
            CONTROL_TRACE_OFF
        },
        "",
    )
}

#[cfg(target_family = "wasm")]
fn control(op: i32, service: &str) -> Result<(), Error> {
    // SAFETY: `service` is a live buffer the kernel only reads.
    crate::check(unsafe { crate::raw::control(op, service.as_ptr(), service.len()) })
}

/// Restarts `service`: a fresh instance, same endpoints, queued messages kept.
#[cfg(target_family = "wasm")]
pub fn restart(service: &str) -> Result<(), Error> {
    control(CONTROL_RESTART, service)
}

/// Stops `service`: its endpoints close; everyone waiting on it gets `PeerGone`.
#[cfg(target_family = "wasm")]
pub fn stop(service: &str) -> Result<(), Error> {
    control(CONTROL_STOP, service)
}

/// Starts a stopped, exited or faulted `service` afresh.
#[cfg(target_family = "wasm")]
pub fn start(service: &str) -> Result<(), Error> {
    control(CONTROL_START, service)
}

/// Replaces the running `service` with `module` at its next quiescent point
/// (waiting in `receive`): same endpoints, queues and handles; its state moves
/// over if both versions export the state functions (docs/abi.md); if the new
/// version faults or exits during its probation the old one is put back.
/// [`Error::InvalidModule`] if `module` would not load.
#[cfg(target_family = "wasm")]
pub fn swap(service: &str, module: &[u8]) -> Result<(), Error> {
    // SAFETY: both buffers are live and only read by the kernel.
    crate::check(unsafe {
        crate::raw::swap(
            service.as_ptr(),
            service.len(),
            module.as_ptr(),
            module.len(),
        )
    })
}
