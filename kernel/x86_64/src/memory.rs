//! Physical memory: the kernel heap, carved from the bootloader's memory map,
//! and access to the boot ramdisk.
//!
//! The bootloader maps all physical memory at a fixed offset, so the kernel
//! reaches any frame without mapping pages of its own. The heap is the largest
//! usable region (wasmi allocates everything a service owns from it, and DMA
//! buffers come from it too: it is physically contiguous); the other usable
//! regions, small under QEMU, stay unused.

use bootloader_api::BootInfo;
use bootloader_api::info::MemoryRegionKind;
use core::sync::atomic::{AtomicU64, Ordering};
use talc::TalcLock;
use talc::source::Manual;

const FRAME_SIZE: u64 = 4096;

#[global_allocator]
static HEAP: TalcLock<spinning_top::RawSpinlock, Manual> = TalcLock::new(Manual);

/// Sets up the heap from the boot memory map, and logs where it is.
pub fn init(boot_info: &BootInfo) {
    let Some(offset) = boot_info.physical_memory_offset.into_option() else {
        panic!("the bootloader did not map physical memory");
    };
    let Some(largest) = boot_info
        .memory_regions
        .iter()
        .filter(|region| region.kind == MemoryRegionKind::Usable)
        .max_by_key(|region| region.end - region.start)
    else {
        panic!("the memory map has no usable region");
    };
    let heap_start = largest.start.next_multiple_of(FRAME_SIZE);
    let heap_size = largest.end.saturating_sub(heap_start) & !(FRAME_SIZE - 1);
    let heap_virtual = offset + heap_start;
    // SAFETY: [heap_start, heap_start + heap_size) lies inside a region the
    // bootloader reports as usable, mapped writable at `offset`, and nothing
    // else in the kernel uses that region.
    let claimed = unsafe {
        HEAP.lock()
            .claim(heap_virtual as *mut u8, heap_size as usize)
    };
    if claimed.is_none() {
        panic!("the heap region is too small to claim");
    }
    HEAP_VIRTUAL.store(heap_virtual, Ordering::Relaxed);
    HEAP_PHYSICAL.store(heap_start, Ordering::Relaxed);
    HEAP_SIZE.store(heap_size, Ordering::Relaxed);
    crate::kprintln!("atoll: heap {} MiB at {heap_start:#x}", heap_size >> 20);
}

static HEAP_VIRTUAL: AtomicU64 = AtomicU64::new(0);
static HEAP_PHYSICAL: AtomicU64 = AtomicU64::new(0);
static HEAP_SIZE: AtomicU64 = AtomicU64::new(0);

/// The physical address of a heap byte. The heap is one physically contiguous
/// region mapped at a fixed offset, so any heap allocation is physically
/// contiguous too (what DMA buffers need).
pub fn heap_physical_address(virtual_address: u64) -> Option<u64> {
    let start = HEAP_VIRTUAL.load(Ordering::Relaxed);
    let size = HEAP_SIZE.load(Ordering::Relaxed);
    let offset = virtual_address.checked_sub(start)?;
    (offset < size).then(|| HEAP_PHYSICAL.load(Ordering::Relaxed) + offset)
}

/// Bytes of heap currently allocated.
pub fn heap_in_use() -> usize {
    HEAP.lock().counters().allocated_bytes
}

/// Bytes of heap not allocated (some of it may be fragmented).
pub fn heap_available() -> usize {
    let heap = HEAP.lock();
    let counters = heap.counters();
    counters
        .claimed_bytes
        .saturating_sub(counters.allocated_bytes)
}

/// The boot ramdisk (image-builder's bundle), if the image has one.
pub fn ramdisk(boot_info: &BootInfo) -> Option<&'static [u8]> {
    let address = boot_info.ramdisk_addr.into_option()?;
    let len = usize::try_from(boot_info.ramdisk_len).ok()?;
    // SAFETY: the bootloader maps the ramdisk at `address` for `len` bytes and
    // marks its frames as bootloader-owned in the memory map, so the heap never
    // hands them out; the kernel never writes them.
    Some(unsafe { core::slice::from_raw_parts(address as *const u8, len) })
}
