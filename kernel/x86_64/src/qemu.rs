//! Leaving QEMU with a status, through its `isa-debug-exit` device.
//!
//! QEMU exits with `(value << 1) | 1` ([`ExitCode::qemu_status`]: the codes
//! and the port are the ABI's, shared with image-builder, which maps them to
//! its exit statuses 0, 1 and 3, docs/design.md). On a machine without the
//! device the write does nothing and the CPU halts for good.

use atoll_abi::control::DEBUG_EXIT_PORT;
pub use atoll_abi::control::ExitCode;
use x86_64::instructions::port::Port;

/// Stops the machine with `code`.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is QEMU's exit device; writing it ends the VM. Where the
    // device is absent the write is ignored.
    unsafe { Port::new(DEBUG_EXIT_PORT).write(code as u32) };
    // No device: halt with interrupts off.
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
