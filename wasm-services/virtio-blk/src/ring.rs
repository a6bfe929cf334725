//! The legacy virtio ring and request formats: pure byte layout, no I/O.

/// Legacy virtio-pci I/O registers (offsets from BAR0).
pub mod register {
    pub const DEVICE_FEATURES: u16 = 0x00;
    pub const GUEST_FEATURES: u16 = 0x04;
    pub const QUEUE_ADDRESS: u16 = 0x08;
    pub const QUEUE_SIZE: u16 = 0x0c;
    pub const QUEUE_SELECT: u16 = 0x0e;
    pub const QUEUE_NOTIFY: u16 = 0x10;
    pub const STATUS: u16 = 0x12;
    pub const ISR: u16 = 0x13;
    /// Device configuration without MSI-X: the block device's capacity (u64,
    /// in 512-byte sectors) comes first.
    pub const CAPACITY: u16 = 0x14;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FAILED: u8 = 0x80;
}

/// Block device feature bits.
pub mod feature {
    /// The disk is read-only.
    pub const RO: u32 = 1 << 5;
    /// The device has a write cache and understands `T_FLUSH`.
    pub const FLUSH: u32 = 1 << 9;
}

/// Request types.
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;

/// Descriptor flags.
pub const DESC_NEXT: u16 = 1;
pub const DESC_WRITE: u16 = 2;

/// Legacy rings are laid out with this alignment between the available and
/// used rings, and the queue address register takes a page frame number.
pub const ALIGN: usize = 4096;

const DESCRIPTOR_LEN: usize = 16;

/// Where the parts of a legacy split virtqueue of `size` entries lie in one
/// page-aligned buffer: descriptors at 0, then the available ring, then
/// (aligned to [`ALIGN`]) the used ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub size: u16,
    pub avail: usize,
    pub used: usize,
    pub len: usize,
}

const fn align_up(value: usize) -> usize {
    value.div_ceil(ALIGN) * ALIGN
}

impl Layout {
    /// The layout for a queue of `size` entries; `None` for 0 or a size that is
    /// not a power of two (the legacy interface requires one).
    #[must_use]
    pub fn new(size: u16) -> Option<Layout> {
        if size == 0 || !size.is_power_of_two() {
            return None;
        }
        let entries = usize::from(size);
        let avail = DESCRIPTOR_LEN * entries;
        // flags, idx, ring[size], used_event
        let used = align_up(avail + 6 + 2 * entries);
        // flags, idx, ring[size] of (id u32, len u32), avail_event
        let len = align_up(used + 6 + 8 * entries);
        Some(Layout {
            size,
            avail,
            used,
            len,
        })
    }

    /// Offset of descriptor `index`.
    #[must_use]
    pub fn descriptor(&self, index: u16) -> usize {
        DESCRIPTOR_LEN * usize::from(index)
    }

    /// Offset of the available ring's `idx` field.
    #[must_use]
    pub fn avail_idx(&self) -> usize {
        self.avail + 2
    }

    /// Offset of the available ring's slot for running index `idx`.
    #[must_use]
    pub fn avail_slot(&self, idx: u16) -> usize {
        self.avail + 4 + 2 * usize::from(idx % self.size)
    }

    /// Offset of the used ring's `idx` field.
    #[must_use]
    pub fn used_idx(&self) -> usize {
        self.used + 2
    }
}

/// One descriptor as the device reads it.
#[must_use]
pub fn descriptor(address: u64, len: u32, flags: u16, next: u16) -> [u8; DESCRIPTOR_LEN] {
    let mut bytes = [0u8; DESCRIPTOR_LEN];
    let (head, tail) = bytes.split_at_mut(8);
    head.copy_from_slice(&address.to_le_bytes());
    let (length, rest) = tail.split_at_mut(4);
    length.copy_from_slice(&len.to_le_bytes());
    let (flag_bytes, next_bytes) = rest.split_at_mut(2);
    flag_bytes.copy_from_slice(&flags.to_le_bytes());
    next_bytes.copy_from_slice(&next.to_le_bytes());
    bytes
}

/// A block request header: type, reserved, sector.
#[must_use]
pub fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let (head, tail) = bytes.split_at_mut(8);
    if let Some(kind_bytes) = head.get_mut(..4) {
        kind_bytes.copy_from_slice(&kind.to_le_bytes());
    }
    tail.copy_from_slice(&sector.to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_layout_matches_the_spec() {
        // QEMU's default queue of 256: 4 KiB of descriptors, the available
        // ring right after, the used ring on the next page boundary.
        let layout = Layout::new(256).unwrap();
        assert_eq!(layout.avail, 4096);
        assert_eq!(layout.used, 8192);
        assert_eq!(layout.len, 12288);
        assert_eq!(layout.avail_slot(257), 4096 + 4 + 2);
        assert_eq!(layout.used_idx(), 8194);
        let small = Layout::new(8).unwrap();
        assert_eq!((small.avail, small.used, small.len), (128, 4096, 8192));
        assert_eq!(Layout::new(0), None);
        assert_eq!(Layout::new(100), None);
        assert!(Layout::new(32768).is_some());
    }

    #[test]
    fn descriptors_and_headers_are_little_endian() {
        let bytes = descriptor(0x1234_5678_9abc, 512, DESC_NEXT | DESC_WRITE, 2);
        assert_eq!(bytes[..8], 0x1234_5678_9abcu64.to_le_bytes());
        assert_eq!(bytes[8..12], [0, 2, 0, 0]);
        assert_eq!(bytes[12..], [3, 0, 2, 0]);
        let header = header(T_OUT, 7);
        assert_eq!(header[..4], [1, 0, 0, 0]);
        assert_eq!(header[8..], 7u64.to_le_bytes());
    }
}
