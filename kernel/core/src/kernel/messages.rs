//! Messages: `send`, `call`, `receive` and `reply`, the queues' budget, and
//! handing a message or a reply to a parked service.

use super::*;
use atoll_abi::MAX_MESSAGE_LEN;
use atoll_abi::trace::Kind;

impl crate::host::Messages for Core {
    fn fast_send(&mut self, id: ServiceId, handle: i32, message: &[u8]) -> i32 {
        self.count_syscall(id);
        self.send(id, handle, Bytes::Guest(message))
            .map_or_else(Error::code, |_| 0)
    }

    fn fast_receive(
        &mut self,
        id: ServiceId,
        handle: i32,
        memory: &mut [u8],
        (buffer, info): (GuestSlice, GuestSlice),
        timeout_ns: i64,
    ) -> Option<i32> {
        let result = self.receive_now(id, handle, memory, (buffer, info), timeout_ns)?;
        self.count_syscall(id);
        Some(result)
    }

    fn fast_reply(&mut self, id: ServiceId, token: u32, message: &[u8]) -> i32 {
        self.count_syscall(id);
        self.reply(id, token, message)
            .map_or_else(Error::code, |_| 0)
    }

    fn enter(&mut self) {
        self.sched.enter();
    }
}

/// What one direct switch counts against its turn's budget besides the
/// server's fuel: the kernel's own work for the round trip (about 6,000
/// instructions hosted, docs/benchmarks.md), which no fuel meters. Without
/// it a caller in a loop of cheap calls could make thousands of round trips
/// in one slice of its fuel, a turn a hundred times longer than a slice.
const SWITCH_FUEL: u64 = 1_000;

/// Buffers of taken messages kept for the next ones (each at most
/// [`MAX_MESSAGE_LEN`]: 128 KiB at most, out of the kernel's reserve): a
/// message in a spare buffer costs no allocation and no free.
pub(super) const SPARE_BUFFERS: usize = 32;

/// A spare buffer serves a message of `len` bytes if its capacity is at
/// least `len` and at most twice `len` or twice this.
const SPARE_SLACK: usize = 32;

/// A message's bytes as a kernel call brings them: still in the sender's
/// memory (a host function's fast path), or already copied out of it (the
/// slow path's [`crate::host::Syscall`]).
pub(super) enum Bytes<'a> {
    Guest(&'a [u8]),
    Kernel(Vec<u8>),
}

impl Bytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Guest(bytes) => bytes,
            Bytes::Kernel(bytes) => bytes,
        }
    }
}

/// A direct switch in progress: `caller`'s `call` (`token`) runs the server
/// it woke, in place, and the reply, if it comes before the server stops,
/// is kept in the core's [`Core::switch_reply`] until the switch ends and
/// writes it into the caller's memory (the caller is out of the table,
/// running: its host function holds its memory).
pub(super) struct Switching {
    caller: ServiceId,
    token: u32,
    /// What the caller's `call` returns once answered in place (the reply's
    /// length, in [`Core::switch_reply`]), and when the answer came. The
    /// caller stays parked until the switch ends, then takes the CPU
    /// straight back ([`Scheduler::resume_now`]); its wait for the reply is
    /// counted until the answer.
    replied: Option<(i32, u64)>,
}

/// The receive-info record of a message from `sender` (`token`: its call's,
/// or 0).
fn receive_info(token: u32, sender: ServiceId) -> [u8; atoll_abi::RECEIVE_INFO_LEN] {
    let sender = sender as u32;
    atoll_abi::ReceiveInfo { token, sender }.encode()
}

/// The reply buffer of the direct switch keeps its memory between switches
/// up to this capacity (the common short reply costs no allocation); a
/// longer reply's buffer is freed once written.
const SWITCH_REPLY_KEPT: usize = 256;

impl Core {
    /// Makes `call` of `message` on `handle` by running service `id` for a
    /// direct switch: only if the endpoint's server waits in `receive` on it
    /// (and is not the supervisor, which may act on the caller), no switch
    /// runs already, no other service is ready (the switch is for the
    /// uncontended case: with others waiting, the caller waits its turn as
    /// before and the run queue's order stands), and the servers run in
    /// place in this turn have used less than the caller's slice, counting
    /// [`SWITCH_FUEL`] for each switch (a caller and its server must not
    /// hold the CPU for longer than about two slices, one each). The call
    /// is made as on the slow path (the caller parked waiting for the
    /// reply, the message delivered into the server); then the server,
    /// woken, is taken to run at once, ahead of the run queue: its service
    /// and what it resumes with. `Err`: what the caller's host function
    /// does instead.
    pub(super) fn begin_switch(
        &mut self,
        id: ServiceId,
        handle: i32,
        memory: &[u8],
        message: GuestSlice,
        reply: GuestSlice,
    ) -> Result<(ServiceId, Box<Service>, i32), InPlace> {
        let endpoint = self.endpoint_of(id, handle, false);
        let server = endpoint
            .ok()
            .and_then(|endpoint| Some((endpoint, self.endpoints.get(endpoint)?.owner?)))
            .filter(|&(_, server)| {
                server != id
                    && self.supervisor != Some(server)
                    && self.switching.is_none()
                    && !self.sched.has_ready()
            });
        // The server's receive on that endpoint, to wait in again after an
        // upcall (only one without a timeout: the handler's return cannot
        // restart a deadline).
        let waiting = server.and_then(|(endpoint, server)| match self.sched.state(server) {
            Some(ServiceState::Blocked(Wait::Receive {
                endpoint: waited,
                buffer,
                info,
                deadline,
            })) if *waited == endpoint => {
                let rearm = deadline.is_none().then_some((*buffer, *info));
                Some((endpoint, server, rearm))
            }
            _ => None,
        });
        let within_turn = self
            .services
            .get(id)
            .is_some_and(|slot| self.switched_fuel < slot.image.limits.fuel_slice);
        let Some((endpoint, server, rearm)) = waiting.filter(|_| within_turn) else {
            return Err(InPlace::NotTaken);
        };
        self.count_syscall(id);
        let message = message
            .read(memory, MAX_MESSAGE_LEN)
            .map_err(|error| InPlace::Answered(error.code()))?;
        let (token, switched) = self
            .place_call(id, endpoint, Bytes::Guest(message), reply, true)
            .map_err(|error| InPlace::Answered(error.code()))?;
        let resume = match switched {
            Some(resume) => resume,
            // Queued (too big for the server's buffer: it is woken with the
            // error): taken to run if it was woken and the caller still
            // waits; if not, the caller waits as usual.
            None if self.sched.awaits_reply(id, token) => {
                self.sched.run_now(server).ok_or(InPlace::Waiting)?
            }
            None => return Err(InPlace::Waiting),
        };
        let now = self.sched.now();
        let Some(mut service) = self.begin_slice(server, now) else {
            // Not in the table (it cannot be, while ready): back in the run
            // queue, so that it is not left marked running.
            self.sched.preempted(server);
            return Err(InPlace::Waiting);
        };
        // Only for the message it took: woken with an error (the message
        // too big for its buffer stays queued), its `receive` returns that.
        if let Some((buffer, info)) = rearm.filter(|_| resume >= 0) {
            service.begin_upcall(Upcall {
                token,
                endpoint,
                buffer,
                info,
                received: resume,
                reply_cap: i32::try_from(reply.len()).unwrap_or(i32::MAX),
            });
        }
        self.switching = Some(Switching {
            caller: id,
            token,
            replied: None,
        });
        Ok((server, service, resume))
    }

    /// Ends the direct switch of running service `id` once its server has
    /// stopped, having used `fuel`: answered (the caller woke: it goes on
    /// running, the reply written into `reply` of its `memory` if the
    /// server replied) or still waiting.
    pub(super) fn end_switch(
        &mut self,
        id: ServiceId,
        fuel: u64,
        memory: &mut [u8],
        reply: GuestSlice,
    ) -> InPlace {
        self.switched_fuel = self
            .switched_fuel
            .saturating_add(fuel.saturating_add(SWITCH_FUEL));
        let replied = self.switching.take().and_then(|switching| {
            switching
                .replied
                .filter(|_| self.sched.awaits_reply(id, switching.token))
        });
        let value = match replied {
            Some((result, at)) => self.sched.resume_now(id, result, at),
            None => self.sched.run_now(id),
        };
        let replied = replied.is_some();
        // Checked writable by the host function; memory never shrinks.
        let written = (value.is_some() && replied).then(|| reply.put(memory, &self.switch_reply));
        if self.switch_reply.capacity() > SWITCH_REPLY_KEPT {
            self.switch_reply = Vec::new();
        }
        let Some(value) = value else {
            return InPlace::Waiting;
        };
        match written {
            Some(Err(error)) => InPlace::Answered(error.code()),
            Some(Ok(())) | None => InPlace::Answered(value),
        }
    }

    pub(super) fn count_syscall(&mut self, id: ServiceId) {
        if let Some(slot) = self.services.get_mut(id) {
            slot.stats.syscalls += 1;
        }
    }

    /// Takes the call `token`, not yet received, out of the table and its
    /// message out of its queue.
    pub(super) fn withdraw_queued_call(&mut self, token: u32) {
        self.calls.remove(token);
        for endpoint in self.endpoints.iter_mut() {
            if let Some(message) = endpoint.remove_call(token) {
                self.queued_bytes = self.queued_bytes.saturating_sub(message_cost(&message));
            }
        }
    }

    #[inline(always)]
    pub(super) fn send(
        &mut self,
        id: ServiceId,
        handle: i32,
        message: Bytes<'_>,
    ) -> Result<Then, Error> {
        let endpoint = self.endpoint_of(id, handle, false)?;
        if let Some((owner, length)) = self.hand_over(endpoint, id, 0, message.as_slice()) {
            self.sched.wake(owner, length);
            return Ok(Then::Continue(0));
        }
        let data = self.kernel_copy(message)?;
        self.enqueue(
            endpoint,
            Message {
                sender: id,
                data,
                token: 0,
            },
        )?;
        Ok(Then::Continue(0))
    }

    pub(super) fn call(
        &mut self,
        id: ServiceId,
        handle: i32,
        message: Bytes<'_>,
        reply: GuestSlice,
    ) -> Result<Then, Error> {
        let endpoint = self.endpoint_of(id, handle, false)?;
        self.place_call(id, endpoint, message, reply, false)?;
        Ok(Then::Block)
    }

    /// Makes service `id`'s call of `message` on `endpoint` (its handle's,
    /// looked up), its reply to go into `reply`: the message handed to the
    /// server or queued, the caller parked. With `switch`, a server that
    /// takes the message from its `receive` is made the running service at
    /// once in the caller's place ([`Scheduler::switch`]). The call's token,
    /// and what the server resumes with if it switched.
    #[inline(always)]
    fn place_call(
        &mut self,
        id: ServiceId,
        endpoint: usize,
        message: Bytes<'_>,
        reply: GuestSlice,
        switch: bool,
    ) -> Result<(u32, Option<i32>), Error> {
        let server = self
            .endpoints
            .get(endpoint)
            .and_then(|endpoint| endpoint.owner);
        let Some(server) = server else {
            return Err(self.refused(endpoint, Error::PeerGone));
        };
        if server == id {
            // Calling yourself could only wait for ever.
            return Err(Error::NotPermitted);
        }
        let token = match self.calls.insert(PendingCall {
            caller: id,
            server,
            reply,
            received: false,
        }) {
            Ok(token) => token,
            Err(error) => return Err(self.refused(endpoint, error)),
        };
        if let Some((server, length)) = self.hand_over(endpoint, id, token, message.as_slice()) {
            if switch && self.sched.switch(id, Wait::Reply { token }, server, length) {
                // The server took the message, so it is live: the caller
                // waits on no ended service, and the supervisor has no
                // chain to break.
                return Ok((token, Some(length)));
            }
            self.sched.wake(server, length);
        } else {
            let queued = self.kernel_copy(message).and_then(|data| {
                self.enqueue(
                    endpoint,
                    Message {
                        sender: id,
                        data,
                        token,
                    },
                )
            });
            if let Err(error) = queued {
                self.calls.remove(token);
                return Err(error);
            }
        }
        self.block(id, Wait::Reply { token });
        self.free_the_supervisor();
        Ok((token, None))
    }

    /// Breaks the one wait the kernel can see will never end: the supervisor
    /// waiting, through a chain of calls, on a service that has ended. Such a
    /// service is restarted only by the supervisor, which cannot act while it
    /// waits, so the call into the ended service is answered with `PeerGone`
    /// (and leaves its queue) and the chain unwinds. Other callers of an
    /// ended service keep waiting for its restart, as designed.
    pub(super) fn free_the_supervisor(&mut self) {
        let Some(mut waiter) = self.supervisor.filter(|&id| self.sched.is_live(id)) else {
            return;
        };
        // A chain visits each service at most once unless it loops; a loop
        // of live services is their own deadlock, not one the kernel breaks.
        for _ in 0..self.services.len() {
            let Some(ServiceState::Blocked(Wait::Reply { token })) = self.sched.state(waiter)
            else {
                return;
            };
            let token = *token;
            let Some(server) = self.calls.get(token).map(|call| call.server) else {
                return;
            };
            if self.sched.is_live(server) {
                waiter = server;
                continue;
            }
            if let Some(call) = self.calls.get(token).copied() {
                self.withdraw_queued_call(token);
                self.log(&format!(
                    "call from {} to ended service {} answered PeerGone: the supervisor waits on it",
                    self.name_of(call.caller),
                    self.name_of(server)
                ));
                self.wake_caller(call.caller, token, Error::PeerGone.code());
            }
            return;
        }
    }

    /// Counts on `endpoint` a send or call refused before its queue; returns
    /// the error.
    fn refused(&mut self, endpoint: usize, error: Error) -> Error {
        if let Some(queue) = self.endpoints.get_mut(endpoint) {
            queue.count_refusal(error);
        }
        error
    }

    /// Hands the message `bytes` from `sender` (`token`: its call's, or 0)
    /// straight to the provider of `endpoint` if it waits in `receive` there
    /// with nothing queued ahead and a buffer that holds it: one copy, from
    /// the sender's memory into the receiver's, with no kernel buffer
    /// between them (so none of the message budget either: the message is
    /// never held). Counted, traced and woken as a message queued and
    /// delivered at once. The provider, still parked, and what its `receive`
    /// returns, for the caller to wake it; `None`: the message is queued as
    /// usual (and a message too big for the buffer meets the queue's rule).
    #[inline]
    fn hand_over(
        &mut self,
        endpoint: usize,
        sender: ServiceId,
        token: u32,
        bytes: &[u8],
    ) -> Option<(ServiceId, i32)> {
        // Checked here, inline: a busy queue (the common case of a stream
        // of sends) costs the sender no more than this.
        let owner = self
            .endpoints
            .get(endpoint)
            .filter(|queue| queue.is_empty() && queue.is_open())
            .and_then(|queue| queue.owner);
        self.hand_to(owner?, endpoint, sender, token, bytes)
    }

    /// [`Core::hand_over`] to `owner`, the provider of `endpoint`, which is
    /// open and whose queue is empty.
    #[inline(never)]
    fn hand_to(
        &mut self,
        owner: ServiceId,
        endpoint: usize,
        sender: ServiceId,
        token: u32,
        bytes: &[u8],
    ) -> Option<(ServiceId, i32)> {
        let Some(ServiceState::Blocked(Wait::Receive {
            endpoint: waited,
            buffer,
            info,
            ..
        })) = self.sched.state(owner)
        else {
            return None;
        };
        let (buffer, info) = (*buffer, *info);
        if *waited != endpoint || bytes.len() > buffer.len() {
            return None;
        }
        // The buffers were checked when it blocked, and memory never
        // shrinks; were a write refused, the queue's path would meet the
        // same refusal and answer it.
        let record = receive_info(token, sender);
        let written = self
            .services
            .get_mut(owner)
            .and_then(|slot| slot.service.as_mut())
            .is_some_and(|service| {
                service
                    .write_received((buffer, info), bytes, &record)
                    .is_ok()
            });
        if !written {
            return None;
        }
        // Open: `hand_over` looked.
        if let Some(queue) = self.endpoints.get_mut(endpoint) {
            queue.pass();
        }
        self.count_sent(sender, endpoint, token, bytes.len());
        self.count_received(owner, sender, token);
        Some((owner, i32::try_from(bytes.len()).unwrap_or(i32::MAX)))
    }

    /// Counts and traces a message from `sender` on `endpoint` (queued, or
    /// handed over).
    fn count_sent(&mut self, sender: ServiceId, endpoint: usize, token: u32, length: usize) {
        let kind = if token == 0 { Kind::Send } else { Kind::Call };
        let length = u32::try_from(length).unwrap_or(u32::MAX);
        self.sched.record(kind, sender, endpoint, token, length);
        self.messages += 1;
        if let Some(slot) = self.services.get_mut(sender) {
            slot.stats.sent += 1;
        }
    }

    /// Counts and traces a message from `sender` taken by `id`; a call's is
    /// now received, and may be answered.
    fn count_received(&mut self, id: ServiceId, sender: ServiceId, token: u32) {
        if let Some(slot) = self.services.get_mut(id) {
            slot.stats.received += 1;
        }
        if let Some(call) = self.calls.get_mut(token) {
            call.received = true;
        }
        self.sched.record(Kind::Receive, id, sender, token, 0);
    }

    /// The kernel's own copy of a message to queue.
    #[inline]
    fn kernel_copy(&mut self, message: Bytes<'_>) -> Result<Vec<u8>, Error> {
        match message {
            Bytes::Guest(bytes) => self.message_buffer(bytes),
            Bytes::Kernel(bytes) => Ok(bytes),
        }
    }

    /// Queues a message and, if the provider is waiting for one, delivers it.
    pub(super) fn enqueue(&mut self, endpoint: usize, message: Message) -> Result<(), Error> {
        let sender = message.sender;
        let cost = message_cost(&message);
        if self.queued_bytes.saturating_add(cost) > self.message_budget {
            return Err(self.refused(endpoint, Error::QueueFull));
        }
        // The message's buffer was admitted when it was made (`Heap::copy`
        // in `message_buffer` or the host function's slow path), or is a
        // spare one admitted with an earlier message: no second check here.
        let queue = self.endpoints.get_mut(endpoint).ok_or(Error::BadHandle)?;
        let owner = queue.owner;
        let (token, length) = (message.token, message.data.len());
        queue.push(message).map_err(|(error, _)| error)?;
        self.queued_bytes += cost;
        // Recorded before the delivery below, whose receive comes after it.
        self.count_sent(sender, endpoint, token, length);
        if let Some(owner) = owner {
            self.deliver_if_waiting(owner, endpoint);
        }
        Ok(())
    }

    /// If `owner` waits in `receive` on `endpoint`, hands it the oldest message.
    pub(super) fn deliver_if_waiting(&mut self, owner: ServiceId, endpoint: usize) {
        if let Some(ServiceState::Blocked(Wait::Receive {
            endpoint: waited,
            buffer,
            info,
            ..
        })) = self.sched.state(owner)
            && *waited == endpoint
        {
            let (buffer, info) = (*buffer, *info);
            match self.deliver(owner, endpoint, buffer, info) {
                // What was queued went back to its sender: keep waiting.
                Err(Error::WouldBlock) => {}
                result => {
                    self.sched.wake(owner, result.unwrap_or_else(Error::code));
                }
            }
        }
    }

    pub(super) fn receive(
        &mut self,
        id: ServiceId,
        handle: i32,
        buffer: GuestSlice,
        info: GuestSlice,
        timeout_ns: i64,
    ) -> Result<Then, Error> {
        self.end_swap_pause(id);
        let endpoint = self.endpoint_of(id, handle, true)?;
        let waiting = self
            .endpoints
            .get(endpoint)
            .is_some_and(|queue| !queue.is_empty());
        if waiting {
            match self.deliver(id, endpoint, buffer, info) {
                // What was queued went back to its sender: wait as if empty.
                Err(Error::WouldBlock) => {}
                result => return result.map(Then::Continue),
            }
        }
        if timeout_ns == 0 {
            return Err(Error::WouldBlock);
        }
        let deadline = u64::try_from(timeout_ns)
            .ok()
            .map(|ns| self.sched.now().saturating_add(ns));
        self.block(
            id,
            Wait::Receive {
                endpoint,
                buffer,
                info,
                deadline,
            },
        );
        Ok(Then::Block)
    }

    /// Moves the oldest message of `endpoint` into parked service `id`'s
    /// memory. Returns its length. A message too big for the buffer stays
    /// queued.
    pub(super) fn deliver(
        &mut self,
        id: ServiceId,
        endpoint: usize,
        buffer: GuestSlice,
        info: GuestSlice,
    ) -> Result<i32, Error> {
        // The buffers were checked when it blocked, and memory never shrinks:
        // the writes cannot fail once the message is taken.
        let (message, record) = self.take_message(id, endpoint, buffer.len())?;
        let service = self
            .services
            .get_mut(id)
            .and_then(|slot| slot.service.as_mut())
            .ok_or(Error::BadHandle)?;
        service.write_received((buffer, info), &message.data, &record)?;
        let length = i32::try_from(message.data.len()).map_err(|_| Error::TooLarge);
        self.recycle(message.data);
        length
    }

    /// Takes the oldest message of `endpoint` for service `id`, if it fits
    /// `capacity` bytes, with its receive-info record; counts it received. A
    /// message the buffer cannot hold stays queued, once: a receiver that
    /// offers too small a buffer again cannot take it, and it must not wedge
    /// the queue, so it goes back to its sender.
    fn take_message(
        &mut self,
        id: ServiceId,
        endpoint: usize,
        capacity: usize,
    ) -> Result<(Message, [u8; atoll_abi::RECEIVE_INFO_LEN]), Error> {
        loop {
            let queue = self.endpoints.get_mut(endpoint).ok_or(Error::BadHandle)?;
            let head = queue.front().ok_or(Error::WouldBlock)?;
            if head.data.len() <= capacity {
                break;
            }
            if !queue.refuse_head() {
                return Err(Error::BufferTooSmall);
            }
            let Some(refused) = queue.pop() else {
                return Err(Error::WouldBlock);
            };
            self.queued_bytes = self.queued_bytes.saturating_sub(message_cost(&refused));
            self.refuse_to_sender(&refused, id, capacity);
        }
        let queue = self.endpoints.get_mut(endpoint).ok_or(Error::BadHandle)?;
        let message = queue.pop().ok_or(Error::WouldBlock)?;
        self.queued_bytes = self.queued_bytes.saturating_sub(message_cost(&message));
        self.count_received(id, message.sender, message.token);
        let record = receive_info(message.token, message.sender);
        Ok((message, record))
    }

    /// `receive` by running service `id`, completed inside its host function
    /// if a message waits (written into `memory`, its own) or if it would not
    /// wait (`timeout_ns` 0). `None`: it must wait, and the kernel call goes
    /// the slow way (and blocks).
    pub(super) fn receive_now(
        &mut self,
        id: ServiceId,
        handle: i32,
        memory: &mut [u8],
        (buffer, info): (GuestSlice, GuestSlice),
        timeout_ns: i64,
    ) -> Option<i32> {
        self.end_swap_pause(id);
        let endpoint = match self.endpoint_of(id, handle, true) {
            Ok(endpoint) => endpoint,
            Err(error) => return Some(error.code()),
        };
        let would_block = || (timeout_ns == 0).then_some(Error::WouldBlock.code());
        if self.endpoints.get(endpoint).is_none_or(Endpoint::is_empty) {
            return would_block();
        }
        let (message, record) = match self.take_message(id, endpoint, buffer.len()) {
            Ok(taken) => taken,
            Err(Error::WouldBlock) => return would_block(),
            Err(error) => return Some(error.code()),
        };
        // Both were checked writable by the host function.
        let written = buffer
            .put(memory, &message.data)
            .and_then(|()| info.put(memory, &record));
        let result = match written {
            Ok(()) => i32::try_from(message.data.len()).unwrap_or(i32::MAX),
            Err(error) => error.code(),
        };
        self.recycle(message.data);
        Some(result)
    }

    /// A kernel-owned copy of `bytes` for a queue: in the last spare buffer
    /// (of a message already taken) if it fits closely, at most twice the
    /// message or [`SPARE_SLACK`] bytes (no allocation, and nothing more
    /// held: the buffer was admitted with its first message; the budget
    /// counts its capacity), else in a new one the heap admits (and the
    /// spare that did not fit is freed).
    fn message_buffer(&mut self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let fits = |buffer: &Vec<u8>| {
            (bytes.len()..=bytes.len().max(SPARE_SLACK).saturating_mul(2))
                .contains(&buffer.capacity())
        };
        if let Some(mut buffer) = self.spare_buffers.pop() {
            if fits(&buffer) {
                buffer.clear();
                buffer.extend_from_slice(bytes);
                return Ok(buffer);
            }
            // Freed, so that the spares turn over: kept, a full pool of
            // buffers of another size would serve no message again.
            drop(buffer);
        }
        self.heap.copy(bytes)
    }

    /// Keeps the buffer of a message taken for a later message, up to
    /// [`SPARE_BUFFERS`] of them (at most a message long each).
    pub(super) fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare_buffers.len() < SPARE_BUFFERS && buffer.capacity() <= MAX_MESSAGE_LEN {
            self.spare_buffers.push(buffer);
        }
    }

    /// Hands back a message its receiver could not take twice: a call's
    /// caller wakes with `TooLarge`; a send, whose sender is not waiting, is
    /// dropped with a log line.
    pub(super) fn refuse_to_sender(
        &mut self,
        message: &Message,
        receiver: ServiceId,
        capacity: usize,
    ) {
        let what = format!(
            "{} bytes from {} are more than {} receives ({capacity} bytes)",
            message.data.len(),
            self.name_of(message.sender),
            self.name_of(receiver)
        );
        match self.calls.remove(message.token) {
            Some(call) => {
                self.log(&format!("call refused: {what}"));
                let result = Error::TooLarge.code();
                self.wake_caller(call.caller, message.token, result);
            }
            None => {
                self.log(&format!("message dropped: {what}"));
                // A report the supervisor cannot take: the service it
                // describes will not be restarted, so it is stopped.
                if message.sender == KERNEL_SENDER as ServiceId
                    && let Ok(event) = postcard::from_bytes::<Event>(&message.data)
                    && let Some(ended) = self.service_named(&event.service)
                    && !self.sched.is_live(ended)
                {
                    self.stopped(ended);
                }
            }
        }
    }

    pub(super) fn reply(&mut self, id: ServiceId, token: u32, data: &[u8]) -> Result<Then, Error> {
        let Some(call) = self.calls.get(token).copied() else {
            return Err(if self.calls.withdrawn(token, id) {
                Error::PeerGone
            } else {
                Error::BadHandle
            });
        };
        if call.server != id || !call.received {
            return Err(Error::BadHandle);
        }
        if !self.sched.awaits_reply(call.caller, token) {
            self.calls.withdraw(token);
            return Err(Error::PeerGone);
        }
        if data.len() > call.reply.len() {
            // The token stays valid: the server may answer with something shorter.
            return Err(Error::BufferTooSmall);
        }
        let in_place = self
            .switching
            .as_ref()
            .is_some_and(|switching| (switching.caller, switching.token) == (call.caller, token));
        let result = if in_place {
            // The caller runs (a direct switch): its host function writes
            // the reply. Held only until the switch ends and writes it,
            // later in the caller's kernel call, and at most a message long:
            // a transient allocation out of the reserve (heap.rs), not
            // admitted (near the reserve, admission refused it, and the
            // caller waited for a reply the server could not give).
            self.switch_reply.clear();
            self.switch_reply
                .try_reserve_exact(data.len())
                .map_err(|_| Error::OutOfMemory)?;
            self.switch_reply.extend_from_slice(data);
            i32::try_from(data.len()).unwrap_or(i32::MAX)
        } else {
            let caller = self
                .services
                .get_mut(call.caller)
                .and_then(|slot| slot.service.as_mut())
                .ok_or(Error::PeerGone)?;
            caller
                .write_memory(call.reply, data)
                .map_or_else(Error::code, |()| {
                    i32::try_from(data.len()).unwrap_or(i32::MAX)
                })
        };
        self.calls.remove(token);
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.sched
            .record(Kind::Reply, id, call.caller, token, length);
        match self.switching.as_mut() {
            // Woken when the switch ends, straight onto the CPU.
            Some(switching) if in_place => switching.replied = Some((result, self.sched.now())),
            _ => {
                self.sched.wake(call.caller, result);
            }
        }
        Ok(Then::Continue(0))
    }

    /// Acts on the return of service `id`'s handler from `upcall`: answers
    /// the call with `reply` (in the service's memory, checked), if any,
    /// then puts the service back in the `receive` the upcall stood in for.
    /// An answer the caller cannot take (longer than its buffer, or no
    /// room for it in the kernel) is answered with that error on the
    /// server's behalf: a handler cannot try again, and the caller must
    /// not wait for ever. What the service goes on with if a message
    /// waits already (its `receive` returns it).
    pub(super) fn handled(
        &mut self,
        id: ServiceId,
        upcall: Upcall,
        reply: Option<GuestSlice>,
    ) -> Option<i32> {
        if let Some(reply) = reply
            && let Some(service) = self.take_service(id)
        {
            // Checked when the handler returned; memory never shrinks.
            let bytes = service
                .read_memory(reply, MAX_MESSAGE_LEN)
                .unwrap_or_default();
            let answered = self.reply(id, upcall.token, bytes);
            self.put_service(id, service);
            if let Err(error @ (Error::BufferTooSmall | Error::OutOfMemory)) = answered
                && let Some(call) = self.calls.get(upcall.token).copied()
            {
                self.calls.remove(upcall.token);
                self.wake_caller(call.caller, upcall.token, error.code());
            }
        }
        let Upcall {
            endpoint,
            buffer,
            info,
            ..
        } = upcall;
        if self
            .endpoints
            .get(endpoint)
            .is_some_and(|queue| !queue.is_empty())
        {
            match self.deliver(id, endpoint, buffer, info) {
                Err(Error::WouldBlock) => {}
                result => return Some(result.unwrap_or_else(Error::code)),
            }
        }
        let wait = Wait::Receive {
            endpoint,
            buffer,
            info,
            deadline: None,
        };
        self.block(id, wait);
        None
    }

    /// Parks service `id` until `wait` ends. Waiting in `receive` is the
    /// quiescent point where a pending swap happens.
    pub(super) fn block(&mut self, id: ServiceId, wait: Wait) {
        let quiescent = matches!(wait, Wait::Receive { .. });
        self.sched.block(id, wait);
        if quiescent
            && self
                .services
                .get(id)
                .is_some_and(|slot| slot.pending_swap.is_some())
        {
            self.perform_swap(id);
        }
    }

    /// Service `id` asks for a message. If it is a version swapped in that
    /// has not asked before, it is ready to serve: the swap's pause, from
    /// the old version's quiescent point to here, is over (between the
    /// request and the quiescent point the old version went on serving).
    #[inline]
    fn end_swap_pause(&mut self, id: ServiceId) {
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        let Some(pause) = slot.open_pause.take() else {
            return;
        };
        self.log_swap_pause(id, pause);
    }

    #[cold]
    fn log_swap_pause(&mut self, id: ServiceId, pause: swap::OpenPause) {
        let Some(slot) = self.services.get(id) else {
            return;
        };
        let now = self.platform.now_ns();
        let message = format!(
            "swap pause of {}: {} us ({} us from the request)",
            slot.image.name,
            now.saturating_sub(pause.paused_at) / 1000,
            now.saturating_sub(pause.asked_at) / 1000
        );
        self.log(&message);
    }

    /// Wakes `caller` with `result` if it still waits for the reply to
    /// `token` (a caller stopped or restarted meanwhile waits for nothing, or
    /// for something else).
    pub(super) fn wake_caller(&mut self, caller: ServiceId, token: u32, result: i32) {
        if self.sched.awaits_reply(caller, token) {
            self.sched.wake(caller, result);
        }
    }
}
