//! The legacy virtio-net registers and split-ring layout: pure byte layout,
//! no I/O (host-tested).

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
    /// Device configuration without MSI-X: the MAC address (6 bytes), then
    /// the link status (u16).
    pub const MAC: u16 = 0x14;
    pub const LINK_STATUS: u16 = 0x1a;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FAILED: u8 = 0x80;
}

/// Network device feature bits.
pub mod feature {
    /// The device has a MAC address in its configuration.
    pub const MAC: u32 = 1 << 5;
    /// The configuration has a link status field.
    pub const STATUS: u32 = 1 << 16;
}

/// ISR bits: a queue was used; the configuration (link state) changed.
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

/// Link status bit in [`register::LINK_STATUS`].
pub const LINK_UP: u16 = 1;

/// Queue numbers.
pub const RECEIVE_QUEUE: u16 = 0;
pub const TRANSMIT_QUEUE: u16 = 1;

/// Descriptor flags.
pub const DESC_NEXT: u16 = 1;
pub const DESC_WRITE: u16 = 2;

/// The per-packet header without MRG_RXBUF (all zero on transmit: no
/// checksum or segmentation offload).
pub const HEADER_LEN: usize = 10;

/// The longest Ethernet frame without FCS (1500 bytes of payload).
pub const MAX_FRAME: usize = 1514;

/// Each receive or transmit buffer is one slot of this size: the header at
/// 0, the frame at [`FRAME_AT`].
pub const SLOT: usize = 2048;
pub const FRAME_AT: usize = 16;

/// Alignment between the available and used rings; the queue address
/// register takes a page frame number.
pub const ALIGN: usize = 4096;

const DESCRIPTOR_LEN: usize = 16;

/// Where the parts of a legacy split virtqueue of `size` entries lie in one
/// page-aligned buffer.
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
    /// `None` for 0 or a size that is not a power of two.
    #[must_use]
    pub fn new(size: u16) -> Option<Layout> {
        if size == 0 || !size.is_power_of_two() {
            return None;
        }
        let entries = usize::from(size);
        let avail = DESCRIPTOR_LEN * entries;
        let used = align_up(avail + 6 + 2 * entries);
        let len = align_up(used + 6 + 8 * entries);
        Some(Layout {
            size,
            avail,
            used,
            len,
        })
    }

    #[must_use]
    pub fn descriptor(&self, index: u16) -> usize {
        DESCRIPTOR_LEN * usize::from(index)
    }

    #[must_use]
    pub fn avail_idx(&self) -> usize {
        self.avail + 2
    }

    #[must_use]
    pub fn avail_slot(&self, idx: u16) -> usize {
        self.avail + 4 + 2 * usize::from(idx % self.size)
    }

    #[must_use]
    pub fn used_idx(&self) -> usize {
        self.used + 2
    }

    /// Offset of the used ring's element for running index `idx`: the chain's
    /// head (u32) and the bytes the device wrote (u32).
    #[must_use]
    pub fn used_element(&self, idx: u16) -> usize {
        self.used + 4 + 8 * usize::from(idx % self.size)
    }

    /// How many buffers (two descriptors each: header, frame) the queue holds,
    /// at most `limit`.
    #[must_use]
    pub fn buffers(&self, limit: u16) -> u16 {
        (self.size / 2).min(limit)
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

/// A used ring element: the chain's head descriptor and the length written.
#[must_use]
pub fn used_element(bytes: [u8; 8]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = bytes;
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// The frame's length from a receive buffer's used length (which counts the
/// header); `None` if the device wrote less than a header or more than a
/// buffer holds.
#[must_use]
pub fn received_frame_len(used_len: u32) -> Option<usize> {
    let len = usize::try_from(used_len).ok()?;
    let frame = len.checked_sub(HEADER_LEN)?;
    (frame <= SLOT - FRAME_AT).then_some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_legacy_spec() {
        let layout = Layout::new(256).unwrap();
        assert_eq!((layout.avail, layout.used, layout.len), (4096, 8192, 12288));
        assert_eq!(layout.used_element(257), 8192 + 4 + 8);
        assert_eq!(layout.buffers(64), 64);
        assert_eq!(Layout::new(8).unwrap().buffers(64), 4);
        assert_eq!(Layout::new(0), None);
        assert_eq!(Layout::new(6), None);
    }

    #[test]
    fn used_elements_and_frame_lengths() {
        assert_eq!(used_element([3, 0, 0, 0, 0x4a, 0, 0, 0]), (3, 0x4a));
        assert_eq!(received_frame_len(10 + 60), Some(60));
        assert_eq!(received_frame_len(4), None);
        assert_eq!(received_frame_len(5000), None);
        let bytes = descriptor(0x1000, 10, DESC_NEXT | DESC_WRITE, 5);
        assert_eq!(bytes[8..], [10, 0, 0, 0, 3, 0, 5, 0]);
    }
}
