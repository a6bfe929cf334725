//! test-counter-v2: version 2 of test-counter (same source).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// This build's version, visible in every answer.
const VERSION: u64 = 2;

include!("../../counter/src/counter.rs");
