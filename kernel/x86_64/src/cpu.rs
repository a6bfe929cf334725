//! The kernel's first instructions: SSE set-up and the stack paint, before any
//! compiled Rust code runs; and the kernel stack's high-water mark.
//!
//! The kernel is built for `kernel/x86_64/x86_64-atoll-kernel.json`, a copy of
//! `x86_64-unknown-none` with SSE2 and the hard-float ABI (so that wasmi's
//! tail-call dispatch passes its float registers in XMM registers and its
//! handlers become jumps; docs/design.md). The compiler may then use XMM
//! registers in any function, even in a prologue, so SSE has to be enabled
//! before the first Rust function runs: [`atoll_entry`] is the ELF entry point
//! (the linker's `--entry`, set by build.rs), written in assembly, and jumps to
//! `bootloader_api`'s `_start` when the CPU is ready.
//!
//! What is not here: the GDT, IDT and interrupt controllers (`gdt`,
//! `interrupts`), which are Rust code that runs after this.

use core::arch::naked_asm;

/// CR0 bits: MP (monitor coprocessor, 1), EM (x87 emulation, 2), TS (task
/// switched, 3), NE (native x87 error reporting, 5).
const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR0_NE: u64 = 1 << 5;
/// CR4 bits: OSFXSR (SSE instructions and FXSAVE, 9) and OSXMMEXCPT (unmasked
/// SSE exceptions raise #XM, vector 19, instead of #UD, 10).
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// MXCSR at reset: every SSE exception masked, round to nearest, no
/// flush-to-zero. Wasm float semantics need exactly this.
pub const MXCSR_DEFAULT: u32 = 0x1f80;

/// The lowest byte of the kernel stack (one page above its guard page).
pub const STACK_BOTTOM: u64 = crate::KERNEL_STACK_GUARD + 4096;
/// What the unused part of the kernel stack is painted with at boot.
const STACK_PAINT: u64 = 0x5354_4143_4b50_4e54;
/// Bytes below the entry stack pointer left unpainted (the entry code's own
/// pushes land there).
const PAINT_GAP: u64 = 64;

/// The ELF entry point. The bootloader jumps here with the boot information in
/// `rdi` and `rsp` near the top of the kernel stack, interrupts off.
///
/// 1. CR0: EM and TS clear (SSE and x87 instructions execute instead of raising
///    #UD or #NM), MP and NE set (native x87 error reporting).
/// 2. CR4: OSFXSR and OSXMMEXCPT set.
/// 3. `fninit`, and MXCSR at its default.
/// 4. The stack from its bottom to just below `rsp` is painted with
///    [`STACK_PAINT`], so that [`stack_high_water`] can tell how deep it was used.
/// 5. Jump to `_start` (from `bootloader_api::entry_point!`), `rdi` and `rsp`
///    as the bootloader left them.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn atoll_entry() -> ! {
    naked_asm!(
        "mov rax, cr0",
        "and rax, {cr0_clear}",
        "or rax, {cr0_set}",
        "mov cr0, rax",
        "mov rax, cr4",
        "or rax, {cr4_set}",
        "mov cr4, rax",
        "fninit",
        "push {mxcsr}",
        "ldmxcsr [rsp]",
        "add rsp, 8",
        // Paint [STACK_BOTTOM, rsp - PAINT_GAP) with `rep stosq`; rdi (the boot
        // information) is kept in rdx meanwhile.
        "mov rdx, rdi",
        "movabs rdi, {bottom}",
        "lea rcx, [rsp - {gap}]",
        "sub rcx, rdi",
        "shr rcx, 3",
        "movabs rax, {paint}",
        "cld",
        "rep stosq",
        "mov rdi, rdx",
        "jmp _start",
        cr0_clear = const !(CR0_EM | CR0_TS) as i32,
        cr0_set = const CR0_MP | CR0_NE,
        cr4_set = const CR4_OSFXSR | CR4_OSXMMEXCPT,
        mxcsr = const MXCSR_DEFAULT,
        bottom = const STACK_BOTTOM,
        gap = const PAINT_GAP,
        paint = const STACK_PAINT,
    )
}

/// The deepest the kernel stack has been used since boot, in bytes: the
/// distance from its top to the lowest word no longer holding the paint.
pub fn stack_high_water() -> u64 {
    let words = crate::KERNEL_STACK_SIZE / 8;
    let mut untouched = 0;
    while untouched < words {
        let address = (STACK_BOTTOM + untouched * 8) as *const u64;
        // SAFETY: the address lies in the kernel stack, which the bootloader
        // mapped readable for the kernel's whole life; reading a word below the
        // stack pointer is harmless (volatile, so the compiler keeps the read).
        let word = unsafe { core::ptr::read_volatile(address) };
        if word != STACK_PAINT {
            break;
        }
        untouched += 1;
    }
    crate::KERNEL_STACK_SIZE - untouched * 8
}

/// Reads MXCSR (for the boot log and tests).
pub fn mxcsr() -> u32 {
    let mut value: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR into the local; SSE is enabled
    // by `atoll_entry` before any Rust code runs.
    unsafe {
        core::arch::asm!("stmxcsr [{}]", in(reg) &raw mut value, options(nostack, preserves_flags));
    }
    value
}
