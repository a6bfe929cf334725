//! Untrusted pointers from services, checked in one place.
//!
//! A service passes buffers to host functions as `(ptr, len)` pairs of Wasm `i32`s.
//! Such a pair is an allegation, not a buffer: [`GuestSlice`] holds it, and only
//! [`GuestSlice::read`] / [`GuestSlice::write`] turn it into bytes, after checking
//! it against the caller's linear memory. No other code in the kernel indexes a
//! service's memory.

use atoll_abi::Error;

/// A `(ptr, len)` pair claimed by a service, not yet checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSlice {
    ptr: u32,
    len: u32,
}

impl GuestSlice {
    /// Takes the raw Wasm arguments. Both are reinterpreted as unsigned, as Wasm
    /// addresses are; a "negative" length is thus a huge one and fails the bounds
    /// check or the size limit.
    #[must_use]
    pub const fn new(ptr: i32, len: i32) -> GuestSlice {
        GuestSlice {
            ptr: ptr.cast_unsigned(),
            len: len.cast_unsigned(),
        }
    }

    /// The claimed length in bytes.
    #[must_use]
    pub fn len(self) -> usize {
        self.len as usize
    }

    /// Whether the claimed length is zero.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The claimed range as `start..end` in `memory`, if it fits and is at most
    /// `max_len` long.
    fn range(self, memory_len: usize, max_len: usize) -> Result<core::ops::Range<usize>, Error> {
        let len = self.len();
        if len > max_len {
            return Err(Error::TooLarge);
        }
        let start = self.ptr as usize;
        let end = start.checked_add(len).ok_or(Error::OutOfBounds)?;
        if end > memory_len {
            return Err(Error::OutOfBounds);
        }
        Ok(start..end)
    }

    /// The `len` bytes from `start` within this slice (clamped to its end).
    #[must_use]
    pub fn part(self, start: usize, len: usize) -> GuestSlice {
        let start = (start as u32).min(self.len);
        let len = (len as u32).min(self.len - start);
        GuestSlice {
            ptr: self.ptr.wrapping_add(start),
            len,
        }
    }

    /// The bytes of this slice in `memory`, if it lies inside it and is at most
    /// `max_len` long.
    pub fn read(self, memory: &[u8], max_len: usize) -> Result<&[u8], Error> {
        let range = self.range(memory.len(), max_len)?;
        memory.get(range).ok_or(Error::OutOfBounds)
    }

    /// The bytes of this slice in `memory`, writable, under the same checks as
    /// [`GuestSlice::read`].
    pub fn write(self, memory: &mut [u8], max_len: usize) -> Result<&mut [u8], Error> {
        let range = self.range(memory.len(), max_len)?;
        memory.get_mut(range).ok_or(Error::OutOfBounds)
    }

    /// Copies `bytes` to the start of this slice in `memory`, under the
    /// checks of [`GuestSlice::write`]; `OutOfBounds` if they are longer
    /// than the slice.
    pub fn put(self, memory: &mut [u8], bytes: &[u8]) -> Result<(), Error> {
        self.write(memory, usize::MAX)?
            .get_mut(..bytes.len())
            .ok_or(Error::OutOfBounds)?
            .copy_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_copies_to_the_start_of_the_slice_and_refuses_more_than_it_holds() {
        let mut memory = [0u8; 6];
        assert_eq!(GuestSlice::new(1, 4).put(&mut memory, &[7, 8]), Ok(()));
        assert_eq!(memory, [0, 7, 8, 0, 0, 0]);
        assert_eq!(
            GuestSlice::new(1, 2).put(&mut memory, &[1, 2, 3]),
            Err(Error::OutOfBounds)
        );
        assert_eq!(
            GuestSlice::new(4, 4).put(&mut memory, &[1]),
            Err(Error::OutOfBounds)
        );
        assert_eq!(memory, [0, 7, 8, 0, 0, 0]);
    }

    #[test]
    fn inside_memory_is_readable() {
        let memory = [1u8, 2, 3, 4, 5];
        assert_eq!(GuestSlice::new(1, 3).read(&memory, 10), Ok(&[2, 3, 4][..]));
        assert_eq!(GuestSlice::new(5, 0).read(&memory, 10), Ok(&[][..]));
        assert_eq!(GuestSlice::new(0, 5).read(&memory, 5), Ok(&memory[..]));
    }

    #[test]
    fn outside_memory_is_rejected() {
        let memory = [0u8; 16];
        assert_eq!(
            GuestSlice::new(12, 5).read(&memory, 100),
            Err(Error::OutOfBounds)
        );
        assert_eq!(
            GuestSlice::new(17, 0).read(&memory, 100),
            Err(Error::OutOfBounds)
        );
        assert_eq!(
            GuestSlice::new(-1, 2).read(&memory, 100),
            Err(Error::OutOfBounds)
        );
        assert_eq!(
            GuestSlice::new(i32::MAX, i32::MAX).read(&memory, usize::MAX),
            Err(Error::OutOfBounds)
        );
    }

    #[test]
    fn negative_or_long_lengths_are_too_large() {
        let memory = [0u8; 16];
        assert_eq!(
            GuestSlice::new(0, -1).read(&memory, 1024),
            Err(Error::TooLarge)
        );
        assert_eq!(GuestSlice::new(0, 9).read(&memory, 8), Err(Error::TooLarge));
    }

    #[test]
    fn write_checks_the_same_way() {
        let mut memory = [0u8; 4];
        GuestSlice::new(2, 2).write(&mut memory, 4).unwrap().fill(7);
        assert_eq!(memory, [0, 0, 7, 7]);
        assert_eq!(
            GuestSlice::new(3, 2).write(&mut memory, 4),
            Err(Error::OutOfBounds)
        );
    }
}
