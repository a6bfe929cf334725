//! Leaving QEMU with a status, through its `isa-debug-exit` device.
//!
//! QEMU exits with `(value << 1) | 1`: [`ExitCode::Success`] gives status 33,
//! [`ExitCode::ServicesFailed`] 37 and [`ExitCode::Failure`] 35; image-builder
//! maps them to its exit statuses 0, 1 and 3 (docs/design.md). On a machine
//! without the device the write does nothing and the CPU halts for good.

use x86_64::instructions::port::Port;

/// The I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4`).
const DEBUG_EXIT_PORT: u16 = 0xf4;

#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum ExitCode {
    /// Every service ended or waits for ever; none faulted or failed to load.
    Success = 0x10,
    /// The kernel itself failed: a panic, a CPU exception, no bootable bundle.
    Failure = 0x11,
    /// The kernel ran to its end, but a service faulted or failed to load.
    ServicesFailed = 0x12,
}

/// Stops the machine with `code`.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is QEMU's exit device; writing it ends the VM. Where the
    // device is absent the write is ignored.
    unsafe { Port::new(DEBUG_EXIT_PORT).write(code as u32) };
    halt_forever()
}

/// Halts with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
