//! Port I/O for drivers and PCI configuration mechanism #1 (ports 0xcf8/0xcfc).
//!
//! The kernel core has already checked every access against the asking
//! service's grants; these functions only perform it.

use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Reads `width` (1, 2 or 4) bytes from `port`.
pub fn port_in(port: u16, width: u8) -> u32 {
    // SAFETY: the core allows only ports granted to a driver by the system
    // description, never the kernel's own (atoll_abi::driver::RESERVED_PORTS);
    // reading a port cannot break memory safety.
    unsafe {
        match width {
            1 => u32::from(Port::<u8>::new(port).read()),
            2 => u32::from(Port::<u16>::new(port).read()),
            _ => Port::<u32>::new(port).read(),
        }
    }
}

/// Writes the low `width` bytes of `value` to `port`.
pub fn port_out(port: u16, width: u8, value: u32) {
    // SAFETY: as for `port_in`: a granted, non-kernel port.
    unsafe {
        match width {
            1 => Port::<u8>::new(port).write(value as u8),
            2 => Port::<u16>::new(port).write(value as u16),
            _ => Port::<u32>::new(port).write(value),
        }
    }
}

fn select(address: u16, offset: u8) {
    let word = 0x8000_0000 | (u32::from(address) << 8) | u32::from(offset & 0xfc);
    // SAFETY: selecting a configuration register has no effect by itself.
    unsafe { Port::<u32>::new(CONFIG_ADDRESS).write(word) };
}

/// Reads a configuration register. Interrupts are off between selecting and
/// reading so that no other access can intervene (there is one CPU).
pub fn config_read(address: u16, offset: u8) -> u32 {
    x86_64::instructions::interrupts::without_interrupts(|| {
        select(address, offset);
        // SAFETY: reading the selected configuration register.
        unsafe { Port::<u32>::new(CONFIG_DATA).read() }
    })
}

/// Writes a configuration register.
pub fn config_write(address: u16, offset: u8, value: u32) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        select(address, offset);
        // SAFETY: the core refuses writes to identity and BAR registers;
        // others configure only the granted function.
        unsafe { Port::<u32>::new(CONFIG_DATA).write(value) };
    });
}
