//! The hosted platforms' monotonic clock (image-builder's and
//! `tests/trace-bench`'s).
//!
//! It reads the TSC, as the kernel's own clock does, through `quanta`, which
//! calibrates it against the OS's clock: 13 ns a reading on the build
//! machine, against 37 ns for `std::time::Instant::elapsed` (a
//! `clock_gettime` each), and the kernel reads the clock once per kernel
//! entry. With the feature `std-clock`, `std::time::Instant` (the
//! configuration before, for before/after figures).

#[cfg(feature = "std-clock")]
use quanta as _;
#[cfg(feature = "std-clock")]
use std::time::Instant;

/// A monotonic clock in nanoseconds from its creation.
#[cfg(not(feature = "std-clock"))]
pub struct HostClock {
    clock: quanta::Clock,
    started: u64,
    /// The latest reading: the TSCs of two cores may disagree by a little
    /// (on a virtual machine), and the kernel's times must never go back.
    last: std::sync::atomic::AtomicU64,
}

#[cfg(not(feature = "std-clock"))]
impl HostClock {
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let started = clock.raw();
        HostClock {
            clock,
            started,
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn now_ns(&self) -> u64 {
        let now = self.clock.delta_as_nanos(self.started, self.clock.raw());
        let last = self
            .last
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        last.max(now)
    }
}

/// A monotonic clock in nanoseconds from its creation.
#[cfg(feature = "std-clock")]
pub struct HostClock(Instant);

#[cfg(feature = "std-clock")]
impl HostClock {
    pub fn new() -> Self {
        HostClock(Instant::now())
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
