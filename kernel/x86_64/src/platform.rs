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

    fn console_turn(&self, now_ns: u64) {
        crate::serial::write_out_if_due(now_ns);
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

    fn port_in(&self, port: u16, width: u8) -> u32 {
        crate::pci::port_in(port, width)
    }

    fn port_out(&self, port: u16, width: u8, value: u32) {
        crate::serial::before_driver_write(port, width);
        crate::pci::port_out(port, width, value);
    }

    fn pci_read(&self, address: u16, offset: u8) -> Option<u32> {
        Some(crate::pci::config_read(address, offset))
    }

    fn pci_write(&self, address: u16, offset: u8, value: u32) {
        crate::pci::config_write(address, offset, value);
    }

    fn irq_unmask(&self, irq: u8) {
        crate::interrupts::set_masked(irq, false);
    }

    fn take_interrupts(&self) -> u16 {
        crate::interrupts::take_fired()
    }

    fn physical_address(&self, virtual_address: usize) -> Option<u64> {
        crate::memory::heap_physical_address(virtual_address as u64)
    }

    fn wait_until(&self, deadline_ns: u64) {
        // Idle: the console's held lines and the control channel's held
        // answers go out now.
        crate::serial::write_out();
        // The 1 kHz timer interrupt ends the halt at the latest 1 ms later.
        if crate::clock::now_ns() < deadline_ns {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}
