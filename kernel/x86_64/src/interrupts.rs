//! The IDT: one handler per CPU exception, and the timer interrupt.
//!
//! Every CPU exception in the kernel is fatal: the handler prints its name,
//! vector, error code and instruction pointer (for a page fault also the faulting
//! address, naming a kernel stack overflow when it hits the guard page) and exits
//! QEMU with the failure status. Services cannot raise CPU exceptions: their traps
//! are caught by the interpreter.
//!
//! The timer handler only counts ticks; no interrupt handler ever enters the
//! interpreter (its engine takes spin locks).

use crate::gdt::DOUBLE_FAULT_IST_INDEX;
use crate::qemu;
use crate::serial::emergency_print;
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use spin::Lazy;
use x86_64::instructions::port::Port;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

/// First vector of the remapped 8259 PICs; IRQ n arrives as vector 32 + n.
const PIC_VECTOR_BASE: u8 = 32;
const TIMER_VECTOR: u8 = PIC_VECTOR_BASE;
/// Timer interrupts per second.
pub const TIMER_HZ: u32 = 1000;

/// Timer interrupts since [`enable_timer`].
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Reports a fatal exception and leaves QEMU with the failure status.
fn fatal(name: &str, vector: u8, error_code: Option<u64>, frame: &InterruptStackFrame) -> ! {
    let rip = frame.instruction_pointer.as_u64();
    match error_code {
        Some(code) => emergency_print(format_args!(
            "atoll: CPU EXCEPTION {name} (vector {vector}, error code {code:#x}) at rip {rip:#x}\n"
        )),
        None => emergency_print(format_args!(
            "atoll: CPU EXCEPTION {name} (vector {vector}) at rip {rip:#x}\n"
        )),
    }
    emergency_print(format_args!("atoll: {frame:?}\n"));
    qemu::exit(qemu::ExitCode::Failure)
}

macro_rules! exception {
    ($handler:ident, $name:literal, $vector:literal) => {
        extern "x86-interrupt" fn $handler(frame: InterruptStackFrame) {
            fatal($name, $vector, None, &frame)
        }
    };
    ($handler:ident, $name:literal, $vector:literal, error_code) => {
        extern "x86-interrupt" fn $handler(frame: InterruptStackFrame, code: u64) {
            fatal($name, $vector, Some(code), &frame)
        }
    };
    ($handler:ident, $name:literal, $vector:literal, diverging) => {
        extern "x86-interrupt" fn $handler(frame: InterruptStackFrame) -> ! {
            fatal($name, $vector, None, &frame)
        }
    };
}

/// The exceptions that end the kernel with a report, in one list: each one's
/// IDT entry (which names its handler too), name, vector, and whether it
/// pushes an error code or never returns. Each gets a handler, and
/// `set_exception_handlers` installs them all. (Double fault and page fault
/// are written out below: their own stack, their own report.)
macro_rules! exceptions {
    ($($entry:ident: $name:literal, $vector:literal $(, $kind:ident)?;)*) => {
        $(exception!($entry, $name, $vector $(, $kind)?);)*
        fn set_exception_handlers(idt: &mut InterruptDescriptorTable) {
            $(idt.$entry.set_handler_fn($entry);)*
        }
    };
}

exceptions! {
    divide_error: "divide error", 0;
    debug: "debug", 1;
    non_maskable_interrupt: "non-maskable interrupt", 2;
    breakpoint: "breakpoint", 3;
    overflow: "overflow", 4;
    bound_range_exceeded: "bound range exceeded", 5;
    invalid_opcode: "invalid opcode", 6;
    device_not_available: "device not available", 7;
    invalid_tss: "invalid TSS", 10, error_code;
    segment_not_present: "segment not present", 11, error_code;
    stack_segment_fault: "stack-segment fault", 12, error_code;
    general_protection_fault: "general protection fault", 13, error_code;
    x87_floating_point: "x87 floating-point exception", 16;
    alignment_check: "alignment check", 17, error_code;
    machine_check: "machine check", 18, diverging;
    simd_floating_point: "SIMD floating-point exception", 19;
    virtualization: "virtualization exception", 20;
    cp_protection_exception: "control protection exception", 21, error_code;
    hv_injection_exception: "hypervisor injection exception", 28;
    vmm_communication_exception: "VMM communication exception", 29, error_code;
    security_exception: "security exception", 30, error_code;
}

/// Prints the faulting address (CR2), naming the guard page below the kernel
/// stack. `double` tells that the fault escalated to a double fault: on the
/// guard page that means the CPU could not push the page fault's frame, i.e. the
/// kernel stack is exhausted.
fn report_fault_address(double: bool) {
    let address = Cr2::read_raw();
    let guard = crate::KERNEL_STACK_GUARD;
    let in_guard = (guard..guard + 4096).contains(&address);
    match (in_guard, double) {
        (true, true) => emergency_print(format_args!(
            "atoll: kernel stack overflow (access to the guard page at {address:#x})\n"
        )),
        (true, false) => emergency_print(format_args!(
            "atoll: fault address {address:#x} (the guard page below the kernel stack)\n"
        )),
        (false, _) => emergency_print(format_args!("atoll: fault address {address:#x}\n")),
    }
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    report_fault_address(false);
    fatal("page fault", 14, Some(code.bits()), &frame)
}

/// Runs on its own stack (IST), so it works when the kernel stack is exhausted:
/// a page fault on the guard page cannot push its frame and becomes this.
extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    report_fault_address(true);
    fatal("double fault", 8, Some(code), &frame)
}

extern "x86-interrupt" fn timer(_frame: InterruptStackFrame) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    end_of_interrupt(TIMER_VECTOR);
}

/// Device interrupt lines that fired and await delivery (bit n: IRQ n).
static FIRED: AtomicU16 = AtomicU16::new(0);
/// The PICs' mask registers (bit n: IRQ n masked), as last written.
static MASK: AtomicU16 = AtomicU16::new(0xffff);

/// A device interrupt: mask its line (the driver unmasks it with `irq_ack`
/// once it has served the device), note it for the scheduler, acknowledge the
/// PIC. Never enters the interpreter.
fn device_interrupt(irq: u8) {
    set_masked(irq, true);
    FIRED.fetch_or(1 << irq, Ordering::AcqRel);
    end_of_interrupt(PIC_VECTOR_BASE + irq);
}

macro_rules! device_irq {
    ($($handler:ident = $irq:literal),*) => {
        $(extern "x86-interrupt" fn $handler(_frame: InterruptStackFrame) {
            device_interrupt($irq);
        })*
        /// The device lines' handlers, by IRQ number.
        const DEVICE_HANDLERS: &[(u8, extern "x86-interrupt" fn(InterruptStackFrame))] =
            &[$(($irq, $handler)),*];
    };
}

device_irq!(
    irq1 = 1,
    irq3 = 3,
    irq4 = 4,
    irq5 = 5,
    irq6 = 6,
    irq8 = 8,
    irq9 = 9,
    irq10 = 10,
    irq11 = 11,
    irq12 = 12,
    irq13 = 13,
    irq14 = 14
);

/// Takes the lines that fired since the last call.
pub fn take_fired() -> u16 {
    FIRED.swap(0, Ordering::AcqRel)
}

/// Masks or unmasks one line (and keeps the cascade line 2 open for the
/// slave's lines).
pub fn set_masked(irq: u8, masked: bool) {
    if irq > 15 {
        return;
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let bit = 1u16 << irq;
        let mask = if masked {
            MASK.fetch_or(bit, Ordering::AcqRel) | bit
        } else {
            MASK.fetch_and(!bit, Ordering::AcqRel) & !bit
        };
        // The cascade (IRQ 2) is open whenever any slave line is.
        let cascade_open = mask & 0xff00 != 0xff00;
        let master = (mask as u8) & if cascade_open { !0b100 } else { 0xff };
        let [_, slave] = mask.to_le_bytes();
        // SAFETY: writing the PICs' mask registers (OCW1) only masks or
        // unmasks lines; the PICs belong to the kernel.
        unsafe {
            Port::<u8>::new(PIC1_DATA).write(master);
            Port::<u8>::new(PIC2_DATA).write(slave);
        }
    });
}

/// IRQ 7 with no line raised (a glitch on the master PIC): no EOI is due.
extern "x86-interrupt" fn spurious_master(_frame: InterruptStackFrame) {}

/// IRQ 15 with no line raised on the slave PIC: only the master, which saw
/// the cascade, gets an EOI.
extern "x86-interrupt" fn spurious_slave(_frame: InterruptStackFrame) {
    end_of_interrupt(PIC_VECTOR_BASE);
}

static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(|| {
    let mut idt = InterruptDescriptorTable::new();
    set_exception_handlers(&mut idt);
    // SAFETY: the IST index names the double-fault stack set up in the TSS by
    // `gdt::init`, which runs before interrupts are possible, and nothing else
    // uses that stack.
    unsafe {
        idt.double_fault
            .set_handler_fn(double_fault)
            .set_stack_index(DOUBLE_FAULT_IST_INDEX);
    }
    idt.page_fault.set_handler_fn(page_fault);
    idt[TIMER_VECTOR].set_handler_fn(timer);
    idt[PIC_VECTOR_BASE + 7].set_handler_fn(spurious_master);
    for &(irq, handler) in DEVICE_HANDLERS {
        idt[PIC_VECTOR_BASE + irq].set_handler_fn(handler);
    }
    idt[PIC_VECTOR_BASE + 15].set_handler_fn(spurious_slave);
    idt
});

/// Loads the IDT and remaps the PICs (all lines masked).
pub fn init() {
    IDT.load();
    pic_init();
}

/// Starts the PIT at [`TIMER_HZ`], unmasks its line and enables interrupts.
pub fn enable_timer() {
    let divisor = (crate::clock::PIT_HZ / TIMER_HZ) as u16;
    let [low, high] = divisor.to_le_bytes();
    // SAFETY: PIT channel 0 in mode 2 (rate generator), lobyte/hibyte access;
    // the PIT belongs to the kernel alone.
    unsafe {
        Port::<u8>::new(0x43).write(0b0011_0100);
        Port::<u8>::new(0x40).write(low);
        Port::<u8>::new(0x40).write(high);
    }
    // Unmask IRQ 0 only; device lines open when their drivers acknowledge them.
    set_masked(0, false);
    x86_64::instructions::interrupts::enable();
}

/// Timer ticks since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

const PIC1_COMMAND: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_COMMAND: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;

/// Remaps the two 8259 PICs to vectors 32..48, clear of the CPU exceptions,
/// with every line masked.
fn pic_init() {
    let writes: [(u16, u8); 10] = [
        (PIC1_COMMAND, 0x11), // ICW1: edge triggered, cascade, ICW4 follows
        (PIC2_COMMAND, 0x11),
        (PIC1_DATA, PIC_VECTOR_BASE), // ICW2: vector offsets
        (PIC2_DATA, PIC_VECTOR_BASE + 8),
        (PIC1_DATA, 4), // ICW3: slave on IRQ 2
        (PIC2_DATA, 2),
        (PIC1_DATA, 0x01), // ICW4: 8086 mode
        (PIC2_DATA, 0x01),
        (PIC1_DATA, 0xff), // mask everything
        (PIC2_DATA, 0xff),
    ];
    for (port, value) in writes {
        // SAFETY: the standard 8259 initialisation sequence, with interrupts
        // still disabled; the PICs belong to the kernel alone.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}

fn end_of_interrupt(vector: u8) {
    // SAFETY: writing the non-specific EOI command to the PIC(s) that raised
    // `vector` acknowledges it and has no other effect.
    unsafe {
        if vector >= PIC_VECTOR_BASE + 8 {
            Port::<u8>::new(PIC2_COMMAND).write(0x20);
        }
        Port::<u8>::new(PIC1_COMMAND).write(0x20);
    }
}
