//! The TCP/IP service (`netstack`, its `_start` and all) built with its
//! `fault-injection` feature: it traps on an `Interface` request, so that a
//! test can make it fault on demand.
#![no_std]
#![forbid(unsafe_code)]

use netstack as _;
