//! Test-only views of the kernel's internal state, for the host tests in
//! `crate::tests` where nothing in the kernel's API shows it. Each hook is a
//! line or two and returns plain values; nothing here changes the kernel.

use super::Kernel;

impl Kernel {
    /// Calls in the call table: queued or taken, not yet answered.
    pub(crate) fn pending_calls(&self) -> usize {
        self.calls.tokens_where(|_| true).len()
    }

    /// Fuel service `name` has burnt (`None`: no such service).
    pub(crate) fn fuel_used(&self, name: &str) -> Option<u64> {
        let slot = self.services.iter().find(|slot| slot.image.name == name);
        slot.map(|slot| slot.service.fuel_used())
    }

    /// Bytes of DMA buffers service `name` holds, live and retired.
    pub(crate) fn dma_bytes(&self, name: &str) -> Option<usize> {
        let slot = self.services.iter().find(|slot| slot.image.name == name);
        slot.map(|slot| slot.service.dma_bytes())
    }

    /// How often service `name` has been started afresh.
    pub(crate) fn restarts(&self, name: &str) -> Option<u32> {
        let slot = self.services.iter().find(|slot| slot.image.name == name);
        slot.map(|slot| slot.restarts)
    }

    /// How many new versions of service `name` have been swapped in.
    pub(crate) fn swaps(&self, name: &str) -> Option<u32> {
        let slot = self.services.iter().find(|slot| slot.image.name == name);
        slot.map(|slot| slot.swaps)
    }
}
