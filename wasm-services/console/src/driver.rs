//! The driver proper: UART set-up, the interrupt path and the protocol.

use crate::input::{Input, Output};
use atoll_protocols::console::{Request, Response};
use atoll_sdk::driver::{inb, irq_ack, notification, outb};
use atoll_sdk::supervision::KERNEL_SENDER;
use atoll_sdk::{Endpoint, Error, MAX_MESSAGE_LEN, Responder, Timeout, println};

/// COM1's registers.
const BASE: u16 = 0x3f8;
/// Receive buffer (read) and transmit holding register (write).
const DATA: u16 = BASE;
/// Interrupt enable.
const IER: u16 = BASE + 1;
/// Interrupt identification (read) and FIFO control (write).
const IIR_FCR: u16 = BASE + 2;
/// Modem control.
const MCR: u16 = BASE + 4;
/// Line status.
const LSR: u16 = BASE + 5;
/// Modem status.
const MSR: u16 = BASE + 6;
const IRQ: u8 = 4;

/// IER: received data available.
const IER_RECEIVED: u8 = 0x01;
/// FCR: FIFOs on, interrupt at the first byte (the kernel's set-up uses 14,
/// which would leave a single keystroke to the FIFO timeout).
const FCR_TRIGGER_1: u8 = 0x01;
/// MCR: DTR, RTS, and OUT2, which connects the UART's interrupt to the IRQ line.
const MCR_DTR_RTS_OUT2: u8 = 0x0b;
/// LSR: a received byte is waiting.
const LSR_DATA_READY: u8 = 0x01;
/// LSR: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 0x20;

/// How many times to poll LSR for an empty transmitter before writing anyway
/// (a real 16550 empties it in ~87 us at 115200 baud; this bounds a stuck one).
const TRANSMIT_POLLS: u32 = 100_000;
/// The most bytes one interrupt drains (bounds a UART that reads as always
/// ready, e.g. an absent one floating at 0xff).
const DRAIN_LIMIT: usize = 4096;
/// The most input bytes one `Input` answer carries: a message, less the
/// response's variant and length prefix.
const MAX_INPUT_REPLY: usize = MAX_MESSAGE_LEN - 8;

/// The one reader waiting for input.
struct Waiting {
    responder: Responder,
    max: usize,
}

struct Console {
    input: Input,
    output: Output,
    waiting: Option<Waiting>,
}

pub fn main() {
    // Interrupt notifications arrive on the first provided endpoint.
    let endpoint = Endpoint::from_handle(1);
    let mut console = Console {
        input: Input::default(),
        output: Output::default(),
        waiting: None,
    };
    if let Err(error) = console.set_up() {
        println!("cannot drive COM1: {error}");
        return;
    }
    println!("serving COM1 (IRQ {IRQ})");
    let mut buffer = alloc::vec![0u8; MAX_MESSAGE_LEN];
    loop {
        let received = match endpoint.receive(&mut buffer, Timeout::Forever) {
            Ok(received) => received,
            Err(error) => {
                println!("receive failed: {error}");
                return;
            }
        };
        if received.sender == KERNEL_SENDER {
            match notification(received.message) {
                Some(IRQ) => console.interrupt(),
                _ => println!("unexpected message from the kernel"),
            }
            continue;
        }
        let Ok(request) = received.decode::<Request>() else {
            continue;
        };
        let (request, responder) = request.into_parts();
        match request {
            Request::Write(text) => {
                console.write(text.as_bytes());
                responder.reply(&Response::Done).report();
            }
            // A read sent without waiting for the answer has nowhere to go.
            Request::Read { .. } | Request::Poll { .. } if !responder.is_call() => {
                println!("read from service {} without a call", responder.sender());
            }
            Request::Read { max } => console.read(responder, max as usize),
            Request::Poll { max } => console.deliver(responder, max as usize),
        }
    }
}

impl Console {
    /// Turns on the received-data interrupt and unmasks IRQ 4. The kernel has
    /// set the line up (115200 8N1, FIFOs) for its own output.
    fn set_up(&mut self) -> Result<(), Error> {
        outb(IIR_FCR, FCR_TRIGGER_1)?;
        outb(MCR, MCR_DTR_RTS_OUT2)?;
        // Drop whatever the UART holds from before: typed before anyone could
        // read it, and its pending interrupt conditions.
        self.drain()?;
        self.input.consume(usize::MAX);
        inb(IIR_FCR)?;
        inb(MSR)?;
        outb(IER, IER_RECEIVED)?;
        irq_ack(IRQ)
    }

    /// Moves the received bytes from the UART into the input buffer.
    fn drain(&mut self) -> Result<(), Error> {
        for _ in 0..DRAIN_LIMIT {
            if inb(LSR)? & LSR_DATA_READY == 0 {
                break;
            }
            self.input.push(inb(DATA)?);
        }
        Ok(())
    }

    /// IRQ 4 fired (the kernel masked it): take the input, answer the waiting
    /// reader, and unmask.
    fn interrupt(&mut self) {
        let dropped = self.input.dropped();
        if let Err(error) = self.drain() {
            println!("reading COM1 failed: {error}");
        }
        if self.input.dropped() > dropped {
            println!("input buffer full: dropped the oldest bytes");
        }
        if !self.input.is_empty()
            && let Some(waiting) = self.waiting.take()
        {
            self.deliver(waiting.responder, waiting.max);
        }
        if let Err(error) = irq_ack(IRQ) {
            println!("cannot unmask IRQ {IRQ}: {error}");
        }
    }

    fn read(&mut self, responder: Responder, max: usize) {
        let max = max.min(MAX_INPUT_REPLY);
        if max == 0 {
            responder
                .reply(&Response::Input(alloc::vec::Vec::new()))
                .report();
            return;
        }
        if !self.input.is_empty() {
            self.deliver(responder, max);
            return;
        }
        match self.waiting.take() {
            // The same service cannot be waiting twice: its earlier call died
            // with an earlier instance of it. Release that token (the kernel
            // says its caller is gone) and wait anew.
            Some(earlier) if earlier.responder.sender() == responder.sender() => {
                earlier
                    .responder
                    .reply(&Response::Input(alloc::vec::Vec::new()))
                    .report();
            }
            Some(other) => {
                self.waiting = Some(other);
                responder.reply(&Response::Busy).report();
                return;
            }
            None => {}
        }
        self.waiting = Some(Waiting { responder, max });
    }

    /// Answers `token` with up to `max` buffered bytes; they leave the buffer
    /// only if the reader got them.
    fn deliver(&mut self, responder: Responder, max: usize) {
        let bytes = self.input.peek(max);
        let count = bytes.len();
        // A gone caller or one whose buffer is too small (answered empty)
        // did not get them.
        if responder.reply(&Response::Input(bytes)).report() {
            self.input.consume(count);
        }
    }

    fn write(&mut self, text: &[u8]) {
        self.output.translate(text, |byte| {
            for _ in 0..TRANSMIT_POLLS {
                match inb(LSR) {
                    Ok(status) if status & LSR_THR_EMPTY == 0 => {}
                    _ => break,
                }
            }
            let _ = outb(DATA, byte);
        });
    }
}
