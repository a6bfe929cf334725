//! Physical memory: the kernel heap and a frame allocator, both carved from the
//! bootloader's memory map, and access to the boot ramdisk.
//!
//! The bootloader maps all physical memory at a fixed offset, so the kernel
//! reaches any frame without mapping pages of its own. The heap takes 7/8 of the
//! largest usable region (wasmi allocates everything a service owns from it); the
//! rest of that region and every other usable region feed the frame allocator,
//! which hands out 4 KiB frames for device memory (DMA buffers, later).

use bootloader_api::BootInfo;
use bootloader_api::info::MemoryRegionKind;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use talc::TalcLock;
use talc::source::Manual;

const FRAME_SIZE: u64 = 4096;

#[global_allocator]
static HEAP: TalcLock<spinning_top::RawSpinlock, Manual> = TalcLock::new(Manual);

/// Where the heap is, for the boot log.
#[derive(Clone, Copy, Debug)]
pub struct HeapRegion {
    pub start: u64,
    pub size: u64,
}

/// Usable physical ranges not given to the heap, handed out one frame at a time
/// from the bottom.
struct FrameAllocator {
    ranges: [(u64, u64); 32],
    len: usize,
}

static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator {
    ranges: [(0, 0); 32],
    len: 0,
});

impl FrameAllocator {
    fn add(&mut self, start: u64, end: u64) {
        let start = start.next_multiple_of(FRAME_SIZE);
        let end = end - end % FRAME_SIZE;
        if start >= end {
            return;
        }
        if let Some(slot) = self.ranges.get_mut(self.len) {
            *slot = (start, end);
            self.len += 1;
        }
    }

    fn allocate(&mut self) -> Option<u64> {
        let ranges = self.ranges.get_mut(..self.len)?;
        let range = ranges.iter_mut().find(|(start, end)| start < end)?;
        let frame = range.0;
        range.0 += FRAME_SIZE;
        Some(frame)
    }

    fn free_frames(&self) -> u64 {
        self.ranges
            .iter()
            .take(self.len)
            .map(|(start, end)| (end - start) / FRAME_SIZE)
            .sum()
    }
}

/// Sets up the heap and the frame allocator from the boot memory map.
pub fn init(boot_info: &BootInfo) -> HeapRegion {
    let Some(offset) = boot_info.physical_memory_offset.into_option() else {
        panic!("the bootloader did not map physical memory");
    };
    let usable = || {
        boot_info
            .memory_regions
            .iter()
            .filter(|region| region.kind == MemoryRegionKind::Usable)
    };
    let Some(largest) = usable().max_by_key(|region| region.end - region.start) else {
        panic!("the memory map has no usable region");
    };
    let heap_size = ((largest.end - largest.start) / 8 * 7) & !(FRAME_SIZE - 1);
    let heap_start = largest.start.next_multiple_of(FRAME_SIZE);
    {
        let mut frames = FRAMES.lock();
        frames.add(heap_start + heap_size, largest.end);
        for region in usable().filter(|region| region.start != largest.start) {
            // The first frame of physical memory stays unused, so that physical
            // address 0 never means "a frame".
            frames.add(region.start.max(FRAME_SIZE), region.end);
        }
    }
    let heap_virtual = offset + heap_start;
    // SAFETY: [heap_start, heap_start + heap_size) is part of a region the
    // bootloader reports as usable, mapped writable at `offset`, and given to
    // nothing else: the frame allocator only gets the rest of that region.
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
    HeapRegion {
        start: heap_start,
        size: heap_size,
    }
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

/// One free physical frame, if any is left.
#[allow(dead_code, reason = "used by DMA buffers in the drivers issue")]
pub fn allocate_frame() -> Option<u64> {
    FRAMES.lock().allocate()
}

/// Frames the frame allocator still holds.
pub fn free_frames() -> u64 {
    FRAMES.lock().free_frames()
}

/// The boot ramdisk (image-builder's bundle), if the image has one.
pub fn ramdisk(boot_info: &BootInfo) -> Option<&'static [u8]> {
    let address = boot_info.ramdisk_addr.into_option()?;
    let len = usize::try_from(boot_info.ramdisk_len).ok()?;
    // SAFETY: the bootloader maps the ramdisk at `address` for `len` bytes and
    // marks its frames as bootloader-owned in the memory map, so neither the heap
    // nor the frame allocator ever hands them out; the kernel never writes them.
    Some(unsafe { core::slice::from_raw_parts(address as *const u8, len) })
}
