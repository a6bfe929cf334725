//! The program's memory, reached only through [`Memory`], and the checked
//! reading of the arguments WASI calls pass in it: words, `iovec` arrays,
//! the bytes they point at.
//!
//! What is here: the one place where a program's pointer becomes bytes.
//! Every helper answers `EFAULT` for a range outside the program's memory,
//! as the kernel's did (its `GuestSlice`: unsigned addresses, lengths up to
//! `i32::MAX`, nothing past 4 GiB). Sizes are bounded before anything is
//! allocated ([`MAX_VECTORS`], a caller's `max`).
//!
//! What is not here: the meaning of the records (the calls' modules).

use crate::Errno;
use alloc::vec::Vec;
use atoll_abi::wasi::errno;

/// The most `iovec`s or subscriptions one call may pass.
pub(crate) const MAX_VECTORS: usize = 1024;

/// The program's linear memory: on wasm32 the kernel's `program_read` and
/// `program_write`, in the host tests a plain buffer.
pub trait Memory {
    /// Copies `into.len()` bytes of the program's memory at `ptr` into
    /// `into`; `EFAULT` if any of them lies outside it.
    fn read(&self, ptr: u32, into: &mut [u8]) -> Errno<()>;

    /// Copies `bytes` into the program's memory at `ptr`; `EFAULT` (and
    /// nothing written) if any of them lies outside it.
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Errno<()>;

    /// Whether `len` bytes at `ptr` lie in the program's memory (the
    /// kernel's bounds check before a call): reading their last byte tells.
    fn check(&self, ptr: u32, len: usize) -> Errno<()> {
        let len = u32::try_from(len)
            .ok()
            .filter(|&len| i32::try_from(len).is_ok())
            .ok_or(errno::FAULT)?;
        match len.checked_sub(1) {
            None => self.read(ptr, &mut []),
            Some(last) => self.read(ptr.checked_add(last).ok_or(errno::FAULT)?, &mut [0]),
        }
    }
}

/// Address `base + offset`, or `EFAULT` past 4 GiB.
pub(crate) fn at(base: u32, offset: usize) -> Errno<u32> {
    u32::try_from(offset)
        .ok()
        .and_then(|offset| base.checked_add(offset))
        .ok_or(errno::FAULT)
}

/// Writes `bytes` at `ptr`.
pub(crate) fn store(memory: &mut impl Memory, ptr: u32, bytes: &[u8]) -> Errno<()> {
    if i32::try_from(bytes.len()).is_err() {
        return Err(errno::FAULT);
    }
    memory.write(ptr, bytes)
}

pub(crate) fn load_u32(memory: &impl Memory, ptr: u32) -> Errno<u32> {
    let mut word = [0u8; 4];
    memory.read(ptr, &mut word)?;
    Ok(u32::from_le_bytes(word))
}

/// Entry `index` of the `iovec` array at `iovs`: `(buffer, length)`.
pub(crate) fn iovec(memory: &impl Memory, iovs: u32, index: usize) -> Errno<(u32, u32)> {
    let entry = at(iovs, index.saturating_mul(8))?;
    Ok((load_u32(memory, entry)?, load_u32(memory, at(entry, 4)?)?))
}

/// `count` as a number of vectors: `EINVAL` past [`MAX_VECTORS`].
pub(crate) fn vector_count(count: i32) -> Errno<usize> {
    usize::try_from(count.cast_unsigned())
        .ok()
        .filter(|&count| count <= MAX_VECTORS)
        .ok_or(errno::INVAL)
}

/// The `iovec`s of a call, each checked to lie in memory.
pub(crate) fn buffers(memory: &impl Memory, iovs: u32, count: i32) -> Errno<Vec<(u32, u32)>> {
    let count = vector_count(count)?;
    let mut buffers = Vec::with_capacity(count);
    for index in 0..count {
        let (base, len) = iovec(memory, iovs, index)?;
        memory.check(base, len as usize)?;
        buffers.push((base, len));
    }
    Ok(buffers)
}

/// The bytes of the `iovec`s at `iovs`, in order, at most `max` of them (a
/// write takes what fits; the rest is a short count). Every buffer is
/// checked, even those past `max`.
pub(crate) fn gather(memory: &impl Memory, iovs: u32, count: i32, max: usize) -> Errno<Vec<u8>> {
    let mut data = Vec::new();
    for (base, len) in buffers(memory, iovs, count)? {
        append(memory, &mut data, base, len, max)?;
        if data.len() == max {
            break;
        }
    }
    Ok(data)
}

/// Adds to `data` the first bytes of the buffer at `base`, as many as it
/// holds (`len`) and `data` has room for below `max`.
pub(crate) fn append(
    memory: &impl Memory,
    data: &mut Vec<u8>,
    base: u32,
    len: u32,
    max: usize,
) -> Errno<()> {
    let start = data.len();
    let take = (len as usize).min(max.saturating_sub(start));
    data.resize(start + take, 0);
    let read = match data.get_mut(start..) {
        Some(room) => memory.read(base, room),
        None => Err(errno::FAULT),
    };
    if read.is_err() {
        data.truncate(start);
    }
    read
}

/// Puts `data` into the buffers, from byte `done` of them on.
pub(crate) fn scatter(
    memory: &mut impl Memory,
    buffers: &[(u32, u32)],
    done: u64,
    data: &[u8],
) -> Errno<()> {
    let mut skip = done;
    let mut rest = data;
    for &(base, len) in buffers {
        if rest.is_empty() {
            break;
        }
        let len = u64::from(len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let room = usize::try_from(len - skip).unwrap_or(usize::MAX);
        let (now, later) = rest.split_at(room.min(rest.len()));
        let offset = usize::try_from(skip).map_err(|_| errno::FAULT)?;
        store(memory, at(base, offset)?, now)?;
        rest = later;
        skip = 0;
    }
    Ok(())
}

/// Bytes the buffers hold in all.
pub(crate) fn total(buffers: &[(u32, u32)]) -> u64 {
    buffers.iter().map(|&(_, len)| u64::from(len)).sum()
}
