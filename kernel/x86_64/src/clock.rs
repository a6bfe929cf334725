//! The monotonic clock: the TSC, calibrated once at boot against the PIT.
//!
//! The PIT ticks at a known 1.193182 MHz. Calibration counts TSC cycles over a
//! one-shot PIT countdown of about 10 ms on channel 2 (polled, no interrupt).
//! After that, time is `rdtsc` scaled to nanoseconds: no interrupt is needed to
//! read it and it never goes backwards on one CPU.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// The PIT's input clock in Hz.
pub const PIT_HZ: u32 = 1_193_182;

/// The TSC frequency assumed if calibration fails (it should not).
const FALLBACK_TSC_HZ: u64 = 1_000_000_000;

static TSC_HZ: AtomicU64 = AtomicU64::new(FALLBACK_TSC_HZ);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Calibrates the TSC and starts the clock at zero. Returns the TSC frequency.
pub fn init() -> u64 {
    let hz = calibrate().unwrap_or(FALLBACK_TSC_HZ);
    TSC_HZ.store(hz, Ordering::Relaxed);
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    hz
}

/// Counts TSC cycles during a 10 ms countdown of PIT channel 2.
fn calibrate() -> Option<u64> {
    const COUNT: u16 = (PIT_HZ / 100) as u16; // 10 ms
    let mut control = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    let [low, high] = COUNT.to_le_bytes();
    // SAFETY: port 0x61 bit 0 gates PIT channel 2 and bit 1 enables the PC
    // speaker (kept off); ports 0x42/0x43 program channel 2, which nothing else
    // uses. Interrupts are off during boot.
    let (start, end) = unsafe {
        let gate = (control.read() & !0x02) & !0x01;
        control.write(gate);
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        channel2.write(low);
        channel2.write(high);
        control.write(gate | 0x01); // gate on: the countdown starts
        let start = rdtsc();
        let mut spins: u64 = 0;
        // Bit 5 is channel 2's output, set when the count reaches zero.
        while control.read() & 0x20 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                return None;
            }
        }
        (start, rdtsc())
    };
    let cycles = end.checked_sub(start)?;
    let hz = cycles.checked_mul(u64::from(PIT_HZ))? / u64::from(COUNT);
    (hz > 0).then_some(hz)
}

/// Nanoseconds since [`init`].
pub fn now_ns() -> u64 {
    let cycles = rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    let hz = TSC_HZ.load(Ordering::Relaxed).max(1);
    let ns = u128::from(cycles) * 1_000_000_000 / u128::from(hz);
    u64::try_from(ns).unwrap_or(u64::MAX)
}
