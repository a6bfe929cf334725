//! Atoll's x86_64 layer: everything in the kernel that touches the machine.
//!
//! What is here: the boot entry from `bootloader_api`, the serial console, the GDT
//! and TSS (with a separate double-fault stack), the IDT with a handler for every
//! CPU exception, the 8259 PIC and the PIT timer, the TSC-based monotonic clock,
//! the kernel heap, and the QEMU exit device. It hands the boot bundle to the
//! kernel core (`atoll-core`) and runs it.
//!
//! What is not here: services, scheduling, IPC or any policy. Those are in the
//! core, which knows this layer only through `atoll_core::Platform`.
#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]

extern crate alloc;

mod clock;
mod cpu;
mod gdt;
mod interrupts;
mod memory;
mod pci;
mod platform;
mod qemu;
mod rtc;
mod selftest;
mod serial;

use alloc::sync::Arc;
use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{BootInfo, entry_point};

use atoll_abi::bundle::KERNEL_BASE;
/// The lowest page of the kernel stack region, left unmapped by the bootloader
/// as a guard page; the stack proper starts one page above.
pub const KERNEL_STACK_GUARD: u64 = 0xffff_ff00_0000_0000;
/// Size of the kernel stack. The interpreter's handlers jump to each other
/// (tail-call dispatch) and keep Wasm stacks on the heap; compilation and
/// validation use the heap too. `cpu::stack_high_water` measures the use.
pub const KERNEL_STACK_SIZE: u64 = 1024 * 1024;

const BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.kernel_base = Mapping::FixedAddress(KERNEL_BASE);
    config.mappings.kernel_stack = Mapping::FixedAddress(KERNEL_STACK_GUARD);
    config.kernel_stack_size = KERNEL_STACK_SIZE;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    // `black_box`: the floor kernel keeps all its code, so that the loader
    // reads as many bytes as for the real one.
    if core::hint::black_box(cfg!(feature = "exit-at-entry")) {
        // The boot-time floor of `make bench`: firmware, bootloader and
        // loading this image, nothing of the kernel's own work.
        qemu::exit(qemu::ExitCode::Success);
    }
    serial::init();
    kprintln!("atoll: booting (kernel {})", env!("CARGO_PKG_VERSION"));
    kprintln!("atoll: SSE2 enabled, MXCSR {:#x}", cpu::mxcsr());
    if serial::control_present() {
        kprintln!("atoll: host control channel on COM2");
    }
    gdt::init();
    interrupts::init();
    memory::init(boot_info);
    let tsc_hz = clock::init();
    rtc::init();
    kprintln!(
        "atoll: clock {} MHz (TSC calibrated against the PIT)",
        tsc_hz / 1_000_000
    );
    interrupts::enable_timer();

    let Some(bundle) = memory::ramdisk(boot_info) else {
        kprintln!("atoll: no boot bundle (the image has no ramdisk)");
        qemu::exit(qemu::ExitCode::Failure);
    };
    kprintln!("atoll: boot bundle {} bytes", bundle.len());
    let platform = Arc::new(platform::X86Platform);
    let (mut kernel, settings) = match atoll_core::Kernel::boot(bundle, platform) {
        Ok(booted) => booted,
        Err(error) => {
            kprintln!("atoll: cannot boot: {error}");
            qemu::exit(qemu::ExitCode::Failure);
        }
    };
    if let Some(fault) = settings.inject_fault {
        selftest::inject(fault);
    }
    let summary = kernel.run();
    kprintln!("atoll: no service can run: {summary}");
    report_stack();
    if settings.exit_when_idle {
        qemu::exit(if summary.succeeded() {
            qemu::ExitCode::Success
        } else {
            qemu::ExitCode::ServicesFailed
        });
    }
    kprintln!(
        "atoll: idle after {} ms ({} timer ticks), kernel heap in use {} KiB",
        clock::now_ns() / 1_000_000,
        interrupts::ticks(),
        memory::heap_in_use() / 1024
    );
    // Idle, but keep listening to the host control channel: a pushed module
    // wakes the system up.
    loop {
        x86_64::instructions::interrupts::enable_and_hlt();
        let woken = kernel.poll_control();
        // This loop is the kernel's idle: what it answered the host (and
        // logged) goes out now, as `Platform::wait_until` does it.
        serial::write_out();
        if woken {
            let summary = kernel.run();
            kprintln!("atoll: no service can run: {summary}");
            report_stack();
        }
    }
}

/// Logs the kernel stack's high-water mark and the timer interrupts so far
/// (the bench and the stack and XMM tests read these lines).
fn report_stack() {
    kprintln!(
        "atoll: kernel stack high-water mark {} KiB of {} KiB; {} timer interrupts",
        cpu::stack_high_water().div_ceil(1024),
        KERNEL_STACK_SIZE / 1024,
        interrupts::ticks()
    );
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    serial::emergency_print(format_args!("atoll: KERNEL PANIC: {info}\n"));
    qemu::exit(qemu::ExitCode::Failure);
}
