//! The kernel core's view of this machine.

use atoll_core::Platform;

/// x86_64 under the serial console and the TSC clock.
pub struct X86Platform;

impl Platform for X86Platform {
    fn now_ns(&self) -> u64 {
        crate::clock::now_ns()
    }

    fn boot_wall_clock_ns(&self) -> u64 {
        crate::rtc::boot_wall_clock_ns()
    }

    fn random_seed(&self) -> u64 {
        crate::rtc::random_seed()
    }

    fn console_write(&self, text: &str) {
        crate::serial::write_str(text);
    }

    fn control_read(&self, buffer: &mut [u8]) -> usize {
        crate::serial::control_read(buffer)
    }

    fn control_write(&self, text: &str) {
        crate::serial::control_write(text);
    }

    fn heap_in_use(&self) -> Option<usize> {
        Some(crate::memory::heap_in_use())
    }

    fn heap_available(&self) -> usize {
        crate::memory::heap_available()
    }

    fn wait_until(&self, deadline_ns: u64) {
        // The 1 kHz timer interrupt ends the halt at the latest 1 ms later.
        if crate::clock::now_ns() < deadline_ns {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}
