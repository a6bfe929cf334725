//! The GDT and TSS. Their one job in a single-address-space kernel: give the
//! double-fault handler a stack of its own, so that a kernel stack overflow is
//! reported instead of ending in a silent triple fault.

use spin::Lazy;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// Interrupt-stack-table slot of the double-fault stack.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;

const DOUBLE_FAULT_STACK_SIZE: usize = 32 * 1024;

/// The double-fault stack. Only the CPU writes it, on a double fault.
#[repr(align(16))]
#[expect(
    dead_code,
    reason = "the CPU uses this memory; Rust code never reads it"
)]
struct FaultStack([u8; DOUBLE_FAULT_STACK_SIZE]);

static mut DOUBLE_FAULT_STACK: FaultStack = FaultStack([0; DOUBLE_FAULT_STACK_SIZE]);

static TSS: Lazy<TaskStateSegment> = Lazy::new(|| {
    let mut tss = TaskStateSegment::new();
    let start = VirtAddr::from_ptr(&raw const DOUBLE_FAULT_STACK);
    // Stacks grow down: the IST entry is the top.
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST_INDEX)] =
        start + DOUBLE_FAULT_STACK_SIZE as u64;
    tss
});

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static GDT: Lazy<(GlobalDescriptorTable, Selectors)> = Lazy::new(|| {
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss = gdt.append(Descriptor::tss_segment(&TSS));
    (gdt, Selectors { code, data, tss })
});

/// Loads the GDT and TSS.
pub fn init() {
    let (gdt, selectors) = &*GDT;
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded, which is 'static;
    // the code segment is a 64-bit kernel code segment, the data segments a
    // kernel data segment, and the TSS descriptor points at a 'static TSS.
    unsafe {
        CS::set_reg(selectors.code);
        DS::set_reg(selectors.data);
        ES::set_reg(selectors.data);
        SS::set_reg(selectors.data);
        load_tss(selectors.tss);
    }
}
