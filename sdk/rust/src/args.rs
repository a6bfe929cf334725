//! A service's arguments (`args = [...]` in system.toml), from its start-up
//! record ([`crate::startup`]).

use alloc::string::String;
use alloc::vec::Vec;

/// argv: the service's name, then its `args`; empty if the kernel's record
/// does not decode.
#[must_use]
pub fn arguments() -> Vec<String> {
    crate::startup().args
}
