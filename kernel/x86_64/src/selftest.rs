//! Faults the kernel provokes in itself on request of the boot bundle, so that
//! tests can check that every CPU exception is reported and ends the run with
//! a failure status. Test systems only.

use crate::kprintln;
use atoll_abi::bundle::InjectedFault;

/// Provokes `fault`. Does not return if the fault is handled as it must be.
pub fn inject(fault: InjectedFault) {
    kprintln!("atoll: self-test: provoking {fault:?}");
    // Each instruction below is chosen to raise one CPU exception, whose
    // handler reports it and stops the machine; none touches memory or
    // registers that Rust relies on.
    match fault {
        // SAFETY: `int3` raises #BP (see above).
        InjectedFault::Breakpoint => unsafe { core::arch::asm!("int3") },
        InjectedFault::DivideError => {
            let divisor = core::hint::black_box(0u64);
            // SAFETY: see above; `div` by zero raises #DE.
            unsafe {
                core::arch::asm!(
                    "div {divisor}",
                    divisor = in(reg) divisor,
                    inout("rax") 1u64 => _,
                    inout("rdx") 0u64 => _,
                )
            }
        }
        // SAFETY: see above; `ud2` raises #UD.
        InjectedFault::InvalidOpcode => unsafe { core::arch::asm!("ud2") },
        InjectedFault::PageFault => {
            // The guard page below the kernel stack is never mapped.
            let address = crate::KERNEL_STACK_GUARD as *const u64;
            // SAFETY: reading an unmapped address raises #PF; the read never
            // completes.
            let value = unsafe { core::ptr::read_volatile(address) };
            kprintln!("atoll: self-test: read {value} from the guard page");
        }
        InjectedFault::StackOverflow => {
            let depth = recurse(0);
            kprintln!("atoll: self-test: recursion returned at depth {depth}");
        }
        InjectedFault::Panic => panic!("self-test panic"),
        InjectedFault::SimdFloatingPoint => simd_divide_by_zero(),
    }
    kprintln!("atoll: self-test: {fault:?} did not stop the kernel");
}

#[allow(unconditional_recursion, reason = "overflowing the stack is the point")]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    recurse(depth + 1).wrapping_add(frame[0])
}

/// Unmasks the SSE divide-by-zero exception and divides 1.0 by 0.0: #XM on
/// hardware. QEMU's TCG before 8.0 never raises SSE exceptions (it only sets
/// MXCSR's flags), so if the division returns, the handler is entered with
/// `int 19` instead, which still checks the IDT entry and the report.
fn simd_divide_by_zero() {
    simd_divide();
    kprintln!(
        "atoll: self-test: the CPU raised no #XM (MXCSR now {:#x}); raising vector 19 with int",
        crate::cpu::mxcsr()
    );
    // SAFETY: `int 19` enters the #XM handler, which reports and stops the
    // machine.
    unsafe { core::arch::asm!("int 19") };
}

/// The division of [`simd_divide_by_zero`].
fn simd_divide() {
    // MXCSR with the divide-by-zero mask (bit 9) cleared.
    let mxcsr: u32 = crate::cpu::MXCSR_DEFAULT & !(1 << 9);
    let operands = [1.0f64, core::hint::black_box(0.0)];
    // SAFETY: `ldmxcsr` unmasks the exception and `divsd` then raises #XM,
    // whose handler stops the machine; the instructions only read the
    // locals. xmm0 is declared clobbered where the compiler uses XMM
    // registers (the hard-float target); the baseline soft-float kernel's
    // compiler never does (SSE is enabled at entry either way).
    #[cfg(target_feature = "sse2")]
    unsafe {
        core::arch::asm!(
            "ldmxcsr [{mxcsr}]",
            "movsd xmm0, qword ptr [{operands}]",
            "divsd xmm0, qword ptr [{operands} + 8]",
            mxcsr = in(reg) &raw const mxcsr,
            operands = in(reg) operands.as_ptr(),
            out("xmm0") _,
        )
    }
    // SAFETY: as above.
    #[cfg(not(target_feature = "sse2"))]
    unsafe {
        core::arch::asm!(
            "ldmxcsr [{mxcsr}]",
            "movsd xmm0, qword ptr [{operands}]",
            "divsd xmm0, qword ptr [{operands} + 8]",
            mxcsr = in(reg) &raw const mxcsr,
            operands = in(reg) operands.as_ptr(),
        )
    }
}
