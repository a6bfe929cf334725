//! Messages: `send`, `call`, `receive` and `reply`, the queues' budget, and
//! handing a message or a reply to a parked service.

use super::*;

impl Kernel {
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

    pub(super) fn send(
        &mut self,
        id: ServiceId,
        handle: i32,
        data: Vec<u8>,
    ) -> Result<Then, Error> {
        let endpoint = self.endpoint_of(id, handle, false)?;
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
        data: Vec<u8>,
        answer: Answer,
    ) -> Result<Then, Error> {
        let endpoint = self.endpoint_of(id, handle, false)?;
        let server = self
            .endpoints
            .get(endpoint)
            .and_then(|endpoint| endpoint.owner)
            .ok_or(Error::PeerGone)?;
        if server == id {
            // Calling yourself could only wait for ever.
            return Err(Error::NotPermitted);
        }
        let token = self.calls.insert(PendingCall {
            caller: id,
            server,
            answer,
            received: false,
        })?;
        if let Err(error) = self.enqueue(
            endpoint,
            Message {
                sender: id,
                data,
                token,
            },
        ) {
            self.calls.remove(token);
            return Err(error);
        }
        self.block(id, Wait::Reply { token });
        self.free_the_supervisor();
        Ok(Then::Block)
    }

    /// Breaks the one wait the kernel can see will never end: the supervisor
    /// waiting, through a chain of calls, on a service that has ended. Such a
    /// service is restarted only by the supervisor, which cannot act while it
    /// waits, so the call into the ended service is answered with `PeerGone`
    /// (and leaves its queue) and the chain unwinds. Other callers of an
    /// ended service keep waiting for its restart, as designed.
    pub(super) fn free_the_supervisor(&mut self) {
        let Some(mut waiter) = self.supervisor.filter(|&id| self.is_live(id)) else {
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
            if self.is_live(server) {
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
                self.wake_caller(call.caller, token, call.answer.failed(Error::PeerGone));
            }
            return;
        }
    }

    /// Changes the bound on bytes held by all queues together (at boot: a
    /// quarter of the free heap, at most 64 MiB). Sends past it get `QueueFull`.
    pub fn set_message_budget(&mut self, bytes: usize) {
        self.message_budget = bytes;
    }

    /// Queues a message and, if the provider is waiting for one, delivers it.
    pub(super) fn enqueue(&mut self, endpoint: usize, message: Message) -> Result<(), Error> {
        let sender = message.sender;
        let cost = message_cost(&message);
        if self.queued_bytes.saturating_add(cost) > self.message_budget {
            return Err(Error::QueueFull);
        }
        // The message's bytes were admitted when they were copied out of the
        // sender (`Heap::copy` in the host function): no second check here.
        let queue = self.endpoints.get_mut(endpoint).ok_or(Error::BadHandle)?;
        let owner = queue.owner;
        queue.push(message).map_err(|(error, _)| error)?;
        self.queued_bytes += cost;
        self.messages += 1;
        if let Some(slot) = self.services.get_mut(sender) {
            slot.stats.sent += 1;
        }
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
            .map(|ns| self.platform.now_ns().saturating_add(ns));
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

    /// Moves the oldest message of `endpoint` into service `id`'s memory.
    /// Returns its length. A message too big for the buffer stays queued.
    pub(super) fn deliver(
        &mut self,
        id: ServiceId,
        endpoint: usize,
        buffer: GuestSlice,
        info: GuestSlice,
    ) -> Result<i32, Error> {
        // A message the buffer cannot hold stays queued, once: a receiver
        // that offers too small a buffer again cannot take it, and it must
        // not wedge the queue, so it goes back to its sender.
        loop {
            let queue = self.endpoints.get_mut(endpoint).ok_or(Error::BadHandle)?;
            let head = queue.front().ok_or(Error::WouldBlock)?;
            if head.data.len() <= buffer.len() {
                break;
            }
            if !queue.refuse_head() {
                return Err(Error::BufferTooSmall);
            }
            let Some(refused) = queue.pop() else {
                return Err(Error::WouldBlock);
            };
            self.queued_bytes = self.queued_bytes.saturating_sub(message_cost(&refused));
            self.refuse_to_sender(&refused, id, buffer.len());
        }
        let queue = self.endpoints.get_mut(endpoint).ok_or(Error::BadHandle)?;
        let message = queue.front().ok_or(Error::WouldBlock)?;
        let slot = self.services.get_mut(id).ok_or(Error::BadHandle)?;
        let record = atoll_abi::ReceiveInfo {
            token: message.token,
            sender: message.sender as u32,
        }
        .encode();
        slot.service.write_memory(buffer, &message.data)?;
        slot.service.write_memory(info, &record)?;
        slot.stats.received += 1;
        let length = i32::try_from(message.data.len()).map_err(|_| Error::TooLarge)?;
        let token = message.token;
        if let Some(message) = queue.pop() {
            self.queued_bytes = self.queued_bytes.saturating_sub(message_cost(&message));
        }
        if let Some(call) = self.calls.get_mut(token) {
            call.received = true;
        }
        Ok(length)
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
                let result = call.answer.failed(Error::TooLarge);
                self.wake_caller(call.caller, message.token, result);
            }
            None => {
                self.log(&format!("message dropped: {what}"));
                // A report the supervisor cannot take: the service it
                // describes will not be restarted, so it is stopped.
                if message.sender == KERNEL_SENDER as ServiceId
                    && let Ok(event) = postcard::from_bytes::<Event>(&message.data)
                    && let Some(ended) = self
                        .services
                        .iter()
                        .position(|slot| slot.image.name == event.service)
                    && !self.is_live(ended)
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
        let caller = self.services.get_mut(call.caller).ok_or(Error::PeerGone)?;
        let result = match call.answer {
            Answer::Reply(buffer) if data.len() > buffer.len() => {
                // The token stays valid: the server may answer with something shorter.
                return Err(Error::BufferTooSmall);
            }
            Answer::Reply(buffer) => caller
                .service
                .write_memory(buffer, data)
                .map_or_else(Error::code, |()| {
                    i32::try_from(data.len()).unwrap_or(i32::MAX)
                }),
            Answer::Stdin { buffer, count } => {
                crate::host::wasi::deliver_stdin(&mut caller.service, buffer, count, data)
            }
        };
        self.calls.remove(token);
        self.sched.wake(call.caller, result);
        Ok(Then::Continue(0))
    }

    /// Parks service `id` until `wait` ends. Waiting in `receive` is the
    /// quiescent point where a pending swap happens.
    pub(super) fn block(&mut self, id: ServiceId, wait: Wait) {
        let quiescent = matches!(wait, Wait::Receive { .. });
        self.sched.block(id, wait);
        let now = self.platform.now_ns();
        let Some(slot) = self.services.get_mut(id).filter(|_| quiescent) else {
            return;
        };
        if slot.pending_swap.is_some() {
            self.perform_swap(id);
        } else if slot.previous.is_some()
            && let Some(asked) = slot.swap_asked_at.take()
        {
            // The new version is ready to serve: the swap's pause is over.
            let message = format!(
                "swap pause of {}: {} us",
                slot.image.name,
                now.saturating_sub(asked) / 1000
            );
            self.log(&message);
        }
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
