//! Host tests of the kernel core, by topic, with services written in WAT.
//!
//! Every test boots a system through [`system::TestSystem`] on the one
//! [`platform::TestPlatform`] and looks at it only through the kernel's API
//! (`Kernel::boot`, `run`, `poll_control`, `service_states`, ...), the
//! platform's records, what the probe services report, and the few hooks of
//! `kernel/test_hooks.rs`. What is not here: the unit tests kept beside their
//! code (`ipc`, `guest`, `control`, `preflight`, `service`) and the property
//! tests (`proptests`).

mod platform;
mod probes;
mod system;

mod boot;
mod drivers;
mod flat;
mod ipc;
mod memory;
mod observe;
mod scheduling;
mod supervision;
mod swap;
// Handlers run only for a call switched directly to its server (and not
// at all in the build that keeps the loop's path for comparison).
#[cfg(not(any(feature = "no-switch", feature = "trapped-ipc", feature = "no-upcall")))]
mod upcalls;
mod wasi;
