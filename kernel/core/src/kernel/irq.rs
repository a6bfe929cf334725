//! Interrupt notifications: a line that fired becomes a one-byte message from
//! the kernel on its owner's first endpoint.

use super::*;

impl Core {
    /// Queues a notification for each interrupt line that fired, on its
    /// owner's first provided endpoint. The line stays masked until the owner
    /// acknowledges it, and a line whose notification still waits in the
    /// queue is not notified again, so at most one notification per line is
    /// queued; one that cannot be queued now is retried on the next turn.
    pub(super) fn deliver_interrupts(&mut self) {
        let fired = self.platform.take_interrupts() | self.irq_pending;
        self.irq_pending = 0;
        if fired == 0 {
            return;
        }
        for irq in 0..16u8 {
            if fired & (1 << irq) == 0 {
                continue;
            }
            let Some(owner) = self.irq_owner.get(usize::from(irq)).copied().flatten() else {
                continue;
            };
            let (true, Some(endpoint)) = (self.sched.is_live(owner), self.inbox(owner)) else {
                // Nobody to tell: the line stays masked until a restarted
                // driver acknowledges it.
                continue;
            };
            let notification = |message: &Message| {
                message.sender == KERNEL_SENDER as ServiceId && message.data == [irq]
            };
            if self
                .endpoints
                .get(endpoint)
                .is_some_and(|queue| queue.holds(notification))
            {
                // Already told and not yet received (a driver that acknowledges
                // without receiving): one notification per line is enough.
                continue;
            }
            if self.queue_from_kernel(endpoint, alloc::vec![irq]) {
                self.interrupts += 1;
                self.sched.record(
                    atoll_abi::trace::Kind::Interrupt,
                    owner,
                    endpoint,
                    0,
                    u32::from(irq),
                );
                self.deliver_if_waiting(owner, endpoint);
            } else {
                self.irq_pending |= 1 << irq;
            }
        }
    }

    /// Whether a live service owns an interrupt line (so an idle system
    /// waits for interrupts instead of ending).
    pub(super) fn interrupts_awaited(&self) -> bool {
        self.irq_owner
            .iter()
            .flatten()
            .any(|&owner| self.sched.is_live(owner))
    }
}
