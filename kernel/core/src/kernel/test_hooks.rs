//! Test-only views of the kernel's internal state, for the host tests in
//! `crate::tests` where nothing in the kernel's API shows it. Each hook is a
//! line or two and returns plain values; only `set_message_budget` changes
//! anything (the bound a test wants to reach).

use super::{Kernel, Slot};
use alloc::vec::Vec;

impl Kernel {
    /// Calls in the call table: queued or taken, not yet answered.
    pub(crate) fn pending_calls(&self) -> usize {
        self.core.borrow().calls.tokens_where(|_| true).len()
    }

    /// `what` of service `name`'s slot (`None`: no such service).
    fn slot<T>(&self, name: &str, what: impl Fn(&Slot) -> T) -> Option<T> {
        let core = self.core.borrow();
        core.services
            .iter()
            .find(|slot| slot.image.name == name)
            .map(what)
    }

    /// Fuel service `name` has burnt (`None`: no such service).
    pub(crate) fn fuel_used(&self, name: &str) -> Option<u64> {
        self.slot(name, |slot| {
            slot.service.as_ref().map_or(0, |s| s.fuel_used())
        })
    }

    /// Bytes of DMA buffers service `name` holds, live and retired.
    pub(crate) fn dma_bytes(&self, name: &str) -> Option<usize> {
        self.slot(name, |slot| {
            slot.service.as_ref().map_or(0, |s| s.dma_bytes())
        })
    }

    /// `len` bytes at `offset` of the memory service `name`'s kernel calls
    /// work on (its WASI shim's, for a WASI program).
    pub(crate) fn memory_of(&self, name: &str, offset: i32, len: i32) -> Option<Vec<u8>> {
        self.slot(name, |slot| {
            let service = slot.service.as_ref()?;
            let slice = crate::guest::GuestSlice::new(offset, len);
            service
                .read_memory(slice, usize::MAX)
                .ok()
                .map(<[u8]>::to_vec)
        })?
    }

    /// How often service `name` has been started afresh.
    pub(crate) fn restarts(&self, name: &str) -> Option<u32> {
        self.slot(name, |slot| slot.restarts)
    }

    /// How many new versions of service `name` have been swapped in.
    pub(crate) fn swaps(&self, name: &str) -> Option<u32> {
        self.slot(name, |slot| slot.swaps)
    }

    /// Bytes of memory of the version of service `name` started for a swap
    /// that waits for its quiescent point (`None`: no such version).
    pub(crate) fn pending_version_memory(&self, name: &str) -> Option<usize> {
        self.slot(name, |slot| {
            slot.pending_swap
                .as_ref()?
                .started
                .as_ref()
                .map(|service| service.memory_size())
        })?
    }

    /// Changes the bound on bytes held by all queues together (at boot: a
    /// quarter of the free heap, at most 64 MiB). Sends past it get `QueueFull`.
    pub(crate) fn set_message_budget(&mut self, bytes: usize) {
        self.core.borrow_mut().message_budget = bytes;
    }

    /// Whether service `name` holds a swap waiting for its quiescent point.
    pub(crate) fn swap_pending(&self, name: &str) -> Option<bool> {
        self.slot(name, |slot| slot.pending_swap.is_some())
    }
}
