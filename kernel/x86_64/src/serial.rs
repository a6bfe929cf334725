//! The kernel's own console: a 16550 UART on COM1, polled, output only.
//!
//! The kernel keeps this for its log and its fault reports. Everything goes through
//! one spin lock; the fault path bypasses it (see [`emergency_print`]) because a
//! fault may strike while the lock is held. The lock orders the kernel's own
//! writers only: COM1 is shared with a console driver granted its ports, which
//! the lock does not cover. COM2 (the host control channel) is the kernel's
//! alone: no grant may include it.
//!
//! Log lines (the core's and the services' `log` calls) are held in a ring
//! and written out when the kernel idles, or at the latest [`HOLD_NS`] after
//! the first of them, at the start of a service's turn: under QEMU every byte
//! costs a few microseconds of emulation, which a swap's pause or a restart
//! must not pay (docs/design.md, "The console"). The kernel's own prints
//! (`kprintln!`) and fault reports write the ring out first, and so does a
//! console driver's write to COM1 ([`before_driver_write`]), so the console
//! keeps the order in which things were written. The control channel's
//! answers to the host are held the same way, in a ring of their own.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
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

    /// Waits, boundedly, until the transmitter can take a byte (with the
    /// FIFOs on: until the whole transmit FIFO is empty). `false` if it
    /// never could.
    fn wait_transmitter_empty(&self) -> bool {
        for _ in 0..TRANSMIT_SPINS {
            // SAFETY: reading the line status register has no memory effect
            // (on a real 16550 it clears latched error bits that a console
            // driver sharing COM1 might have wanted: its input may miss an
            // error report).
            if unsafe { self.port(5).read() } & 0x20 != 0 {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    /// How many bytes the transmitter takes once it is empty: 16 with the
    /// FIFOs on (interrupt identification bits 6-7 set), else one.
    fn transmit_depth(&self) -> usize {
        // SAFETY: reading the interrupt identification register has no
        // memory effect; it acknowledges a pending "transmitter empty"
        // interrupt, which neither the kernel nor the console driver
        // enables (the driver enables received-data interrupts only, and
        // those stay pending until the data is read).
        if unsafe { self.port(2).read() } & 0xc0 == 0xc0 {
            16
        } else {
            1
        }
    }

    /// Sends `text` (each `\n` as `\r\n` if `crlf`): one line-status poll per
    /// FIFO's worth of bytes, not per byte (each port access is an exit to
    /// the emulator under QEMU). Bounded: a console driver granted COM1 may
    /// leave the UART unable to transmit, and the console is written with
    /// interrupts off; then the rest of the text is dropped (the kernel's
    /// log loses it; nothing waits).
    fn transmit(&self, text: &[u8], crlf: bool) {
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
        let depth = self.transmit_depth();
        let mut room = 0;
        let bytes = text.iter().flat_map(|&byte| {
            let carriage_return = (crlf && byte == b'\n').then_some(b'\r');
            carriage_return.into_iter().chain(core::iter::once(byte))
        });
        for byte in bytes {
            if cfg!(feature = "console-at-once") {
                // As before: one line-status poll per byte.
                room = 0;
            }
            if room == 0 {
                if !self.wait_transmitter_empty() {
                    break;
                }
                room = depth;
            }
            // SAFETY: writing the transmit register sends a byte; no memory
            // effect. The transmitter has room for it (counted above).
            unsafe { self.port(0).write(byte) };
            room -= 1;
        }
        if line_control & 0x80 != 0 {
            // SAFETY: puts back the driver's line control setting.
            unsafe { self.port(3).write(line_control) };
        }
    }
}

/// Line-status polls before the transmitter is given up (far longer than a
/// FIFO's worth of bytes takes at any baud rate a driver can set, under
/// emulation or not).
const TRANSMIT_SPINS: u32 = 1_000_000;

impl Write for Uart {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.transmit(text.as_bytes(), true);
        Ok(())
    }
}

/// Output not yet written to a UART, oldest first.
struct Held {
    bytes: [u8; HELD_LEN],
    /// Where the oldest byte is, and how many are held.
    start: usize,
    len: usize,
}

/// The most bytes held back on a line (about 60 ms of output under QEMU):
/// a write that finds no room writes out the oldest held bytes until it
/// fits.
const HELD_LEN: usize = 16 * 1024;

/// The longest held output waits while services keep the CPU busy.
pub const HOLD_NS: u64 = 10_000_000;

impl Held {
    /// Appends `text`; `false` (nothing appended) if it does not fit.
    fn push(&mut self, text: &[u8]) -> bool {
        if text.len() > HELD_LEN - self.len {
            return false;
        }
        for &byte in text {
            let at = (self.start + self.len) % HELD_LEN;
            if let Some(slot) = self.bytes.get_mut(at) {
                *slot = byte;
            }
            self.len += 1;
        }
        true
    }

    /// Moves the oldest held bytes into `out`, as many as it holds; returns
    /// how many.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let count = out.len().min(self.len);
        for slot in out.iter_mut().take(count) {
            *slot = self.bytes.get(self.start).copied().unwrap_or(b'?');
            self.start = (self.start + 1) % HELD_LEN;
        }
        self.len -= count;
        count
    }
}

/// A UART and the output held for it.
struct Output {
    uart: Uart,
    held: Held,
    /// Whether each `\n` goes out as `\r\n` (the console's, not the
    /// control channel's).
    crlf: bool,
}

/// A serial line whose output is held: the console (COM1) or the host
/// control channel (COM2).
struct Line {
    output: Mutex<Output>,
    /// When the oldest held byte was written; `u64::MAX` while none is held.
    /// Kept beside the lock (and changed only with it held) so that the
    /// check at every turn's start takes no lock.
    oldest_ns: AtomicU64,
}

impl Line {
    const fn new(base: u16, crlf: bool) -> Self {
        Self {
            output: Mutex::new(Output {
                uart: Uart { base },
                held: Held {
                    bytes: [0; HELD_LEN],
                    start: 0,
                    len: 0,
                },
                crlf,
            }),
            oldest_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Holds `text`, writing out the oldest held bytes until it fits; text
    /// longer than the ring is written at once, after all the held bytes.
    fn hold(&self, text: &[u8]) {
        let now = crate::clock::now_ns();
        loop {
            // A piece at a time, with interrupts on between pieces.
            let (held, wrote) = x86_64::instructions::interrupts::without_interrupts(|| {
                let mut output = self.output.lock();
                let was_empty = output.held.len == 0;
                if output.held.push(text) {
                    if was_empty {
                        self.oldest_ns.store(now, Ordering::Relaxed);
                    }
                    (true, false)
                } else {
                    (false, self.write_out_piece(&mut output))
                }
            });
            if held {
                return;
            }
            if !wrote {
                // Nothing is held and it still does not fit.
                break;
            }
        }
        self.transmit_in_pieces(text);
    }

    /// Writes up to [`WRITE_PIECE`] held bytes of `output` (this line's,
    /// locked); returns whether any were.
    fn write_out_piece(&self, output: &mut Output) -> bool {
        let mut piece = [0u8; WRITE_PIECE];
        let count = output.held.take(&mut piece);
        if output.held.len == 0 {
            self.oldest_ns.store(u64::MAX, Ordering::Relaxed);
        }
        if let Some(piece) = piece.get(..count) {
            output.uart.transmit(piece, output.crlf);
        }
        count > 0
    }

    /// Writes out everything held.
    fn write_out(&self) {
        // In pieces, with interrupts on between them: a long write must not
        // hold interrupts off for its whole length.
        while x86_64::instructions::interrupts::without_interrupts(|| {
            self.write_out_piece(&mut self.output.lock())
        }) {}
    }

    fn holds_any(&self) -> bool {
        self.oldest_ns.load(Ordering::Relaxed) != u64::MAX
    }

    /// Writes out what is held if the oldest of it has waited [`HOLD_NS`].
    fn write_out_if_due(&self, now_ns: u64) {
        if self.holds_any()
            && now_ns.saturating_sub(self.oldest_ns.load(Ordering::Relaxed)) >= HOLD_NS
        {
            self.write_out();
        }
    }

    /// Writes `bytes` straight to the UART, in pieces with interrupts on
    /// between them.
    fn transmit_in_pieces(&self, bytes: &[u8]) {
        for piece in bytes.chunks(WRITE_PIECE) {
            x86_64::instructions::interrupts::without_interrupts(|| {
                let output = self.output.lock();
                output.uart.transmit(piece, output.crlf);
            });
        }
    }
}

static CONSOLE: Line = Line::new(COM1, true);
static CONTROL: Line = Line::new(COM2, false);
static CONTROL_PRESENT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Sets the UARTs up. Call once, first thing.
pub fn init() {
    CONSOLE.output.lock().uart.init();
    let control = CONTROL.output.lock();
    if control.uart.present() {
        control.uart.init();
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
    let control = CONTROL.output.lock();
    buffer
        .iter_mut()
        .map_while(|slot| control.uart.read_byte().map(|byte| *slot = byte))
        .count()
}

/// Holds text for the control channel: it is written out with the console's
/// held lines (when the kernel idles, or [`HOLD_NS`] after the oldest), so
/// an answer to the host costs no service its turn (a swap's "ok" was
/// written inside the swap's pause).
pub fn control_write(text: &str) {
    if !control_present() {
        return;
    }
    if cfg!(feature = "control-at-once") {
        // As before: written at once.
        CONTROL.transmit_in_pieces(text.as_bytes());
        return;
    }
    CONTROL.hold(text.as_bytes());
}

/// Holds a log line for the console; it is written out when the kernel
/// idles ([`write_out`]) or when it has waited [`HOLD_NS`]
/// ([`write_out_if_due`]). A line that finds no room writes out the oldest
/// held lines until it fits (so its writer pays about what the line itself
/// costs, as when every line was written at once); one longer than the ring
/// is written at once, after all the held lines.
pub fn write_str(text: &str) {
    if cfg!(feature = "console-at-once") {
        CONSOLE.transmit_in_pieces(text.as_bytes());
        return;
    }
    CONSOLE.hold(text.as_bytes());
}

/// Writes out every held line, the console's and the control channel's.
pub fn write_out() {
    CONSOLE.write_out();
    CONTROL.write_out();
}

/// Writes out the held lines before a console driver's `width`-byte write
/// at `port`, if it touches one of COM1's registers: the console then shows
/// the kernel's lines and the driver's output in the order they were
/// written (a line held while a driver printed came out after its output).
pub fn before_driver_write(port: u16, width: u8) {
    let last = port.saturating_add(u16::from(width.max(1)) - 1);
    if port > COM1 + 7 || last < COM1 || !CONSOLE.holds_any() {
        return;
    }
    CONSOLE.write_out();
    // The driver polled the line status before this write and found room:
    // leave the transmitter empty again, or its byte lands in a full FIFO
    // (and is lost on a real 16550).
    x86_64::instructions::interrupts::without_interrupts(|| {
        CONSOLE.output.lock().uart.wait_transmitter_empty();
    });
}

/// Writes out the held lines (console and control channel) whose oldest has
/// waited [`HOLD_NS`].
pub fn write_out_if_due(now_ns: u64) {
    CONSOLE.write_out_if_due(now_ns);
    CONTROL.write_out_if_due(now_ns);
}

/// Bytes written with interrupts off at a time (about 5 ms at 115,200 baud).
const WRITE_PIECE: usize = 64;

/// Writes formatted text to the console at once, after the held lines.
pub fn print(args: fmt::Arguments<'_>) {
    write_out();
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = CONSOLE.output.lock().uart.write_fmt(args);
    });
}

/// Writes formatted text without waiting for the console lock, for fault
/// reports: the fault may have struck while the lock was held. The held lines
/// go first if the lock is free, and the control channel's held answers too.
/// Only for paths that end the kernel.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    for line in [&CONSOLE, &CONTROL] {
        if let Some(mut output) = line.output.try_lock() {
            while line.write_out_piece(&mut output) {}
        }
    }
    let _ = Uart { base: COM1 }.write_fmt(args);
}

/// Prints a line to the kernel console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {
        $crate::serial::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
