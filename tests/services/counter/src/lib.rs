//! test-counter (version 1): answers ping `n` with `version * 1,000,000 +
//! requests served so far`, and hands its count to the next version on a hot
//! swap. Version 2 is the same source with another `VERSION`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// This build's version, visible in every answer.
const VERSION: u64 = 1;

include!("counter.rs");
