//! The kernel's own console: a 16550 UART on COM1, polled, output only.
//!
//! The kernel keeps this for its log and its fault reports. Everything goes through
//! one spin lock; the fault path bypasses it (see [`emergency_print`]) because a
//! fault may strike while the lock is held. The lock orders the kernel's own
//! writers only: COM1 is shared with a console driver granted its ports, which
//! the lock does not cover. COM2 (the host control channel) is the kernel's
//! alone: no grant may include it.

use core::fmt::{self, Write};
use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
/// The host control channel (`image-builder run` connects it to a socket).
const COM2: u16 = 0x2f8;

struct Uart {
    base: u16,
}

impl Uart {
    fn port(&self, offset: u16) -> Port<u8> {
        Port::new(self.base + offset)
    }

    fn init(&self) {
        let settings: [(u16, u8); 6] = [
            (1, 0x00), // no UART interrupts
            (3, 0x80), // DLAB on: set the divisor
            (0, 0x01), // divisor 1: 115200 baud
            (1, 0x00),
            (3, 0x03), // 8 bits, no parity, one stop bit; DLAB off
            (2, 0xc7), // FIFOs on and cleared
        ];
        for (offset, value) in settings {
            // SAFETY: writing a 16550's registers only configures that UART
            // (no memory effect). Not exclusive: COM1 may be granted to a
            // console driver (io-ports 0x3f8-0x3ff), which can reprogram it
            // at any time; the kernel then writes through whatever settings
            // the driver left (its output may be garbled, never unsafe).
            // COM2 is reserved from every grant (RESERVED_PORTS), so the
            // control channel's settings are the kernel's alone.
            unsafe { self.port(offset).write(value) };
        }
    }

    /// Whether a UART answers at this port (its scratch register keeps a
    /// value; where there is none, reads float to 0xff).
    fn present(&self) -> bool {
        // SAFETY: the scratch register (offset 7) has no function; writing and
        // reading it only probes for the chip. Called once at boot, before any
        // service runs.
        unsafe {
            self.port(7).write(0x5a);
            self.port(7).read() == 0x5a
        }
    }

    /// A received byte, if one is waiting.
    fn read_byte(&self) -> Option<u8> {
        // SAFETY: reading the line status register has no memory effect (on
        // a real 16550 it clears latched error bits; only the control
        // channel, COM2, which no driver can be granted, is read here).
        if unsafe { self.port(5).read() } & 0x01 == 0 {
            return None;
        }
        // SAFETY: data is ready (checked above); reading takes it. No memory
        // effect.
        Some(unsafe { self.port(0).read() })
    }

    fn write_byte(&self, byte: u8) {
        // Bounded: a console driver granted COM1 may leave the UART unable to
        // transmit, and this runs with interrupts off. After the bound the
        // byte is dropped (the kernel's log loses a byte; nothing waits).
        let mut spins = 0u32;
        // SAFETY: reading the line status register has no memory effect (on
        // a real 16550 it clears latched error bits that a console driver
        // sharing COM1 might have wanted: its input may miss an error report).
        while unsafe { self.port(5).read() } & 0x20 == 0 {
            spins += 1;
            if spins >= TRANSMIT_SPINS {
                return;
            }
            core::hint::spin_loop();
        }
        // A console driver may have been preempted between setting and
        // clearing DLAB (line control bit 7): then offset 0 is the divisor
        // latch. Write with DLAB clear, and put the driver's setting back.
        // SAFETY: reading the line control register has no effect at all.
        let line_control = unsafe { self.port(3).read() };
        if line_control & 0x80 != 0 {
            // SAFETY: clearing DLAB only changes what offsets 0-1 address;
            // restored below, before any service runs again (interrupts are
            // off and the kernel does not switch services here).
            unsafe { self.port(3).write(line_control & 0x7f) };
        }
        // SAFETY: writing the transmit register sends a byte; no memory
        // effect.
        unsafe { self.port(0).write(byte) };
        if line_control & 0x80 != 0 {
            // SAFETY: puts back the driver's line control setting.
            unsafe { self.port(3).write(line_control) };
        }
    }
}

/// Line-status polls before a byte is given up (far longer than a byte takes
/// at any baud rate a driver can set, under emulation or not).
const TRANSMIT_SPINS: u32 = 1_000_000;

impl Write for Uart {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Uart> = Mutex::new(Uart { base: COM1 });
static CONTROL: Mutex<Uart> = Mutex::new(Uart { base: COM2 });
static CONTROL_PRESENT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Sets the UARTs up. Call once, first thing.
pub fn init() {
    CONSOLE.lock().init();
    let control = CONTROL.lock();
    if control.present() {
        control.init();
        CONTROL_PRESENT.store(true, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether the machine has the control channel's UART.
pub fn control_present() -> bool {
    CONTROL_PRESENT.load(core::sync::atomic::Ordering::Relaxed)
}

/// Reads what the control channel has received into `buffer`, without
/// waiting; returns the number of bytes.
pub fn control_read(buffer: &mut [u8]) -> usize {
    if !control_present() {
        return 0;
    }
    let control = CONTROL.lock();
    let mut count = 0;
    for slot in buffer.iter_mut() {
        match control.read_byte() {
            Some(byte) => {
                *slot = byte;
                count += 1;
            }
            None => break,
        }
    }
    count
}

/// Writes text to the control channel.
pub fn control_write(text: &str) {
    if !control_present() {
        return;
    }
    let control = CONTROL.lock();
    for byte in text.bytes() {
        control.write_byte(byte);
    }
}

/// Writes text to the console.
pub fn write_str(text: &str) {
    // In pieces, with interrupts on between them: a long write from a
    // service must not hold interrupts off for its whole length.
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(WRITE_PIECE);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        x86_64::instructions::interrupts::without_interrupts(|| {
            let _ = CONSOLE.lock().write_str(piece);
        });
        rest = tail;
    }
}

/// Bytes written with interrupts off at a time (about 5 ms at 115,200 baud).
const WRITE_PIECE: usize = 64;

/// Writes formatted text to the console.
pub fn print(args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// Writes formatted text without taking the console lock, for fault reports: the
/// fault may have struck while the lock was held. Only for paths that end the
/// kernel.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    let _ = Uart { base: COM1 }.write_fmt(args);
}

/// Prints a line to the kernel console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {
        $crate::serial::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
