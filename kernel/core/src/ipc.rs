//! Message queues and outstanding calls: the kernel-owned state of IPC.
//!
//! An [`Endpoint`] belongs to the service that provides it and holds a bounded
//! FIFO of messages copied out of their senders' memory. A [`CallTable`] holds
//! the calls waiting for a reply; each is named by a token that carries a
//! generation, so a token that has been answered (or forged) names nothing.
//! Both are plain data structures; the kernel decides who runs.

use crate::guest::GuestSlice;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use atoll_abi::Error;

/// Index of a service in the kernel's table.
pub type ServiceId = usize;

/// A message in a queue.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub sender: ServiceId,
    pub data: Vec<u8>,
    /// The reply token of a `call`; 0 for a `send`.
    pub token: u32,
}

/// An endpoint and its queue.
#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    /// The providing service; `None` if it failed to load.
    pub owner: Option<ServiceId>,
    queue: VecDeque<Message>,
    depth: usize,
    open: bool,
    /// The oldest message has been refused once for a receive buffer too
    /// small for it.
    head_refused: bool,
    /// Counted here and nowhere else: every push and refusal passes through
    /// this type.
    stats: EndpointStats,
}

/// An endpoint's counters since boot (`info`'s [`atoll_abi::info::EndpointInfo`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Messages queued (sends, calls and kernel reports).
    pub queued: u64,
    /// Sends and calls refused with `QueueFull`.
    pub queue_full: u64,
    /// Sends and calls refused with `PeerGone`, and queued calls answered
    /// `PeerGone` when the endpoint closed.
    pub peer_gone: u64,
    /// The most messages the queue has held at once.
    pub deepest: u32,
}

impl Endpoint {
    /// A new endpoint, open if it has an owner.
    #[must_use]
    pub fn new(name: String, owner: Option<ServiceId>, depth: usize) -> Endpoint {
        Endpoint {
            name,
            owner,
            queue: VecDeque::with_capacity(depth.min(64)),
            depth,
            open: owner.is_some(),
            head_refused: false,
            stats: EndpointStats::default(),
        }
    }

    /// The endpoint's counters.
    #[must_use]
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Counts a send or call to this endpoint refused before it reached the
    /// queue (the message budget or the call table full: `QueueFull`; no
    /// provider: `PeerGone`). Other errors are not the endpoint's.
    pub fn count_refusal(&mut self, error: Error) {
        match error {
            Error::QueueFull => self.stats.queue_full += 1,
            Error::PeerGone => self.stats.peer_gone += 1,
            _ => {}
        }
    }

    fn count_queued(&mut self) {
        self.stats.queued += 1;
        let depth = u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
        self.stats.deepest = self.stats.deepest.max(depth);
    }

    /// Queues a message. Backpressure rule: a full queue refuses the message
    /// ([`Error::QueueFull`]); the sender keeps it and decides.
    pub fn push(&mut self, message: Message) -> Result<(), (Error, Message)> {
        if !self.open {
            self.count_refusal(Error::PeerGone);
            return Err((Error::PeerGone, message));
        }
        if self.queue.len() >= self.depth {
            self.count_refusal(Error::QueueFull);
            return Err((Error::QueueFull, message));
        }
        self.queue.push_back(message);
        self.count_queued();
        Ok(())
    }

    /// Whether it accepts messages.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Counts a message handed straight to the waiting owner of this open
    /// endpoint, which passes the empty queue without stopping in it.
    pub fn pass(&mut self) {
        self.stats.queued += 1;
        self.stats.deepest = self.stats.deepest.max(1);
    }

    /// Queues a message from the kernel itself, which a full queue does not
    /// refuse: kernel reports are never lost. Refused only when closed.
    pub fn push_from_kernel(&mut self, message: Message) -> Result<(), Error> {
        if !self.open {
            return Err(Error::PeerGone);
        }
        self.queue.push_back(message);
        self.count_queued();
        Ok(())
    }

    /// Accepts messages again (after its provider restarted).
    pub fn reopen(&mut self) {
        self.open = self.owner.is_some();
    }

    /// The oldest message.
    #[must_use]
    pub fn front(&self) -> Option<&Message> {
        self.queue.front()
    }

    /// Removes the oldest message.
    pub fn pop(&mut self) -> Option<Message> {
        self.head_refused = false;
        self.queue.pop_front()
    }

    /// Records that the oldest message did not fit a receive buffer; returns
    /// whether it had already been refused once before.
    pub fn refuse_head(&mut self) -> bool {
        core::mem::replace(&mut self.head_refused, true)
    }

    /// Takes the queued call named `token` out of the queue.
    pub fn remove_call(&mut self, token: u32) -> Option<Message> {
        let index = self
            .queue
            .iter()
            .position(|message| message.token == token)?;
        if index == 0 {
            self.head_refused = false;
        }
        self.queue.remove(index)
    }

    /// Whether a waiting message satisfies `predicate`.
    #[must_use]
    pub fn holds(&self, predicate: impl Fn(&Message) -> bool) -> bool {
        self.queue.iter().any(predicate)
    }

    /// Messages waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Stops accepting messages and hands back those still queued; the
    /// calls among them are answered `PeerGone` by the kernel, and counted so.
    pub fn close(&mut self) -> VecDeque<Message> {
        self.open = false;
        self.head_refused = false;
        let queue = core::mem::take(&mut self.queue);
        let calls = queue.iter().filter(|message| message.token != 0).count();
        self.stats.peer_gone += calls as u64;
        queue
    }

    /// The most messages it may queue.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.depth
    }
}

/// A call waiting for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCall {
    pub caller: ServiceId,
    /// The service that must reply: the endpoint's provider.
    pub server: ServiceId,
    /// The caller's reply buffer: the reply's bytes go there, and the
    /// caller resumes with their length or an error code.
    pub reply: GuestSlice,
    /// Whether the server has received the request (only then may it reply).
    pub received: bool,
}

/// Outstanding calls, named by tokens.
///
/// A token is `generation << 12 | (slot + 1)`: never 0, and a slot's 20-bit
/// generation moves on each time a call leaves it. Free slots are reused
/// oldest first, so a token comes back only after about a million calls have
/// passed through its slot, and then only for a call whose provider received it.
#[derive(Debug, Default)]
pub struct CallTable {
    slots: Vec<(u32, Option<PendingCall>)>,
    free: VecDeque<usize>,
    /// Per slot, the token and server of the last call withdrawn from it
    /// (its caller went away, or the kernel answered it for its server),
    /// until the slot is reused: that server's late reply gets `PeerGone`
    /// rather than `BadHandle`.
    withdrawn: Vec<Option<(u32, ServiceId)>>,
}

/// At most this many calls can be outstanding (one per blocked caller).
pub const MAX_CALLS: usize = 0xfff;

const SLOT_BITS: u32 = 12;
const GENERATION_MASK: u32 = (1 << (32 - SLOT_BITS)) - 1;

fn token(slot: usize, generation: u32) -> u32 {
    (generation << SLOT_BITS) | (slot as u32 + 1)
}

impl CallTable {
    /// Records a call; its token, or [`Error::QueueFull`] if the table is full.
    pub fn insert(&mut self, call: PendingCall) -> Result<u32, Error> {
        // A slot that remembers a withdrawn call is reused only once the
        // table cannot grow: its server's late reply should still be told
        // PeerGone.
        let remembers = |slot: &usize| {
            self.withdrawn
                .get(*slot)
                .is_some_and(|withdrawn| withdrawn.is_some())
        };
        let reusable = self
            .free
            .front()
            .is_some_and(|slot| !remembers(slot) || self.slots.len() >= MAX_CALLS);
        let slot = match self.free.pop_front() {
            Some(slot) if reusable => slot,
            other => {
                if let Some(slot) = other {
                    self.free.push_front(slot);
                }
                if self.slots.len() >= MAX_CALLS {
                    return Err(Error::QueueFull);
                }
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        if let Some(withdrawn) = self.withdrawn.get_mut(slot) {
            *withdrawn = None;
        }
        let entry = self.slots.get_mut(slot).ok_or(Error::QueueFull)?;
        entry.1 = Some(call);
        Ok(token(slot, entry.0))
    }

    fn slot(token: u32) -> Option<(usize, u32)> {
        let index = (token & ((1 << SLOT_BITS) - 1)) as usize;
        Some((index.checked_sub(1)?, token >> SLOT_BITS))
    }

    /// The call a token names, if it is outstanding.
    #[must_use]
    pub fn get(&self, token: u32) -> Option<&PendingCall> {
        let (slot, generation) = Self::slot(token)?;
        match self.slots.get(slot)? {
            (current, Some(call)) if *current == generation => Some(call),
            _ => None,
        }
    }

    /// The call a token names, mutable.
    pub fn get_mut(&mut self, token: u32) -> Option<&mut PendingCall> {
        let (slot, generation) = Self::slot(token)?;
        match self.slots.get_mut(slot)? {
            (current, Some(call)) if *current == generation => Some(call),
            _ => None,
        }
    }

    /// Ends a call; the token names nothing afterwards.
    pub fn remove(&mut self, token: u32) -> Option<PendingCall> {
        let (slot, generation) = Self::slot(token)?;
        let entry = self.slots.get_mut(slot)?;
        if entry.0 != generation || entry.1.is_none() {
            return None;
        }
        entry.0 = (entry.0 + 1) & GENERATION_MASK;
        self.free.push_back(slot);
        entry.1.take()
    }

    /// Ends a call whose caller went away or that the kernel answered: the
    /// slot is free at once (nothing is kept for a reply that may never
    /// come), and [`CallTable::withdrawn`] still recognises the token for its
    /// server until the slot is reused.
    pub fn withdraw(&mut self, token: u32) -> Option<PendingCall> {
        let call = self.remove(token)?;
        let (slot, _) = Self::slot(token)?;
        if self.withdrawn.len() <= slot {
            self.withdrawn.resize(slot + 1, None);
        }
        if let Some(withdrawn) = self.withdrawn.get_mut(slot) {
            *withdrawn = Some((token, call.server));
        }
        Some(call)
    }

    /// Whether `token` named a call of `server` withdrawn with its caller.
    #[must_use]
    pub fn withdrawn(&self, token: u32, server: ServiceId) -> bool {
        Self::slot(token)
            .and_then(|(slot, _)| self.withdrawn.get(slot))
            .is_some_and(|withdrawn| *withdrawn == Some((token, server)))
    }

    /// Tokens of the calls matching `predicate`.
    pub fn tokens_where(&self, predicate: impl Fn(&PendingCall) -> bool) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, (generation, call))| match call {
                Some(call) if predicate(call) => Some(token(slot, *generation)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn message(sender: ServiceId, byte: u8) -> Message {
        Message {
            sender,
            data: vec![byte],
            token: 0,
        }
    }

    #[test]
    fn queues_are_fifo_and_bounded() {
        let mut endpoint = Endpoint::new("e".into(), Some(0), 2);
        endpoint.push(message(1, 1)).unwrap();
        endpoint.push(message(2, 2)).unwrap();
        let (error, refused) = endpoint.push(message(1, 3)).unwrap_err();
        assert_eq!(error, Error::QueueFull);
        assert_eq!(refused.data, vec![3]);
        assert_eq!(endpoint.pop().unwrap().data, vec![1]);
        endpoint.push(message(1, 3)).unwrap();
        assert_eq!(endpoint.pop().unwrap().data, vec![2]);
        assert_eq!(endpoint.pop().unwrap().data, vec![3]);
        assert!(endpoint.pop().is_none());
    }

    #[test]
    fn closed_endpoints_refuse_and_hand_back_their_queue() {
        let mut endpoint = Endpoint::new("e".into(), Some(0), 4);
        endpoint.push(message(1, 1)).unwrap();
        let drained = endpoint.close();
        assert_eq!(drained.len(), 1);
        assert_eq!(endpoint.push(message(1, 2)).unwrap_err().0, Error::PeerGone);
        let orphan = Endpoint::new("o".into(), None, 4);
        assert!(!orphan.open);
    }

    const CALL: PendingCall = PendingCall {
        caller: 1,
        server: 2,
        reply: GuestSlice::new(0, 8),
        received: false,
    };

    #[test]
    fn tokens_are_single_use_and_never_zero() {
        let mut calls = CallTable::default();
        let call = CALL;
        let first = calls.insert(call).unwrap();
        assert_ne!(first, 0);
        assert_eq!(calls.get(first), Some(&call));
        assert_eq!(calls.remove(first), Some(call));
        assert_eq!(calls.get(first), None);
        assert_eq!(calls.remove(first), None);
        // The slot is reused with a new generation: the old token stays dead.
        let second = calls.insert(call).unwrap();
        assert_ne!(second, first);
        assert_eq!(calls.get(first), None);
        assert!(calls.get(second).is_some());
        assert_eq!(calls.get(0), None);
        assert_eq!(calls.get(u32::MAX), None);
        assert_eq!(calls.tokens_where(|c| c.server == 2), vec![second]);
    }

    #[test]
    fn a_busy_slot_does_not_repeat_tokens_for_a_long_time() {
        let mut calls = CallTable::default();
        let call = CALL;
        let first = calls.insert(call).unwrap();
        calls.remove(first);
        for _ in 0..100_000 {
            let token = calls.insert(call).unwrap();
            assert_ne!(token, first);
            calls.remove(token);
        }
    }

    #[test]
    fn the_table_is_bounded() {
        let mut calls = CallTable::default();
        let call = CALL;
        for _ in 0..MAX_CALLS {
            calls.insert(call).unwrap();
        }
        assert_eq!(calls.insert(call), Err(Error::QueueFull));
    }
}
