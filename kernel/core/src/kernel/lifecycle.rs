//! A service's life after its start: its end (exit or fault) and what the
//! supervisor is told, `control` (stop, start, restart), and the cleanup that
//! keeps no caller waiting for a service that is gone.

use super::*;

impl Core {
    /// Service `id` has ended. With a live supervisor, the calls it had taken
    /// are answered with `PeerGone`, its endpoints keep their queues, and the
    /// supervisor is told; it decides. Without one, the service is stopped.
    pub(super) fn ended(&mut self, id: ServiceId, outcome: Outcome) {
        if self.roll_back(id, &outcome) {
            // The old version takes its device back, DMA buffers and all.
            return;
        }
        // Not kept until a restart that may never come: the new version's
        // instance holds memory, and the host waits for the outcome.
        self.abandon_swap(id, "the service ended");
        if let Some(slot) = self.services.get(id) {
            // A dead driver's devices must not write to memory any more.
            crate::grants::quiesce(&slot.image.grants, self.platform.as_ref());
        }
        let supervisor = self
            .supervisor
            .filter(|&supervisor| supervisor != id && self.sched.is_live(supervisor));
        let Some(supervisor) = supervisor else {
            if self.supervisor == Some(id) {
                self.log("the supervisor has ended: services are no longer supervised");
                // Services that ended before it and were waiting for its
                // decision are stopped now: nobody else would restart them,
                // and their callers must not wait for ever.
                let waiting: Vec<ServiceId> = (0..self.services.len())
                    .filter(|&other| {
                        other != id
                            && matches!(
                                self.sched.state(other),
                                Some(ServiceState::Exited | ServiceState::Faulted(_))
                            )
                    })
                    .collect();
                for other in waiting {
                    self.stopped(other);
                }
            }
            self.stopped(id);
            return;
        };
        self.answer_taken_calls(id);
        let Some(slot) = self.services.get(id) else {
            return;
        };
        let event = Event {
            service: slot.image.name.clone(),
            outcome,
            restarts: slot.restarts,
            policy: slot.policy,
            at_ns: self.platform.now_ns(),
        };
        let Some(endpoint) = self.inbox(supervisor) else {
            self.stopped(id);
            return;
        };
        let Ok(data) = postcard::to_allocvec(&event) else {
            self.stopped(id);
            return;
        };
        // Counted against the budget but never refused by it: reports are
        // small and one per ended service. Only a heap at its reserve (a
        // supervisor that restarts without reading its reports) drops one,
        // and then the service stays stopped.
        if self.heap.admit(kernel_message_cost(&data)).is_err() {
            self.log(&format!(
                "report of {} to the supervisor dropped: kernel heap low; it stays stopped",
                event.service
            ));
            self.stopped(id);
            return;
        }
        if !self.queue_from_kernel(endpoint, data) {
            self.stopped(id);
            return;
        }
        self.deliver_if_waiting(supervisor, endpoint);
    }

    /// `control` from the supervisor.
    pub(super) fn control(&mut self, id: ServiceId, op: i32, name: &str) -> Result<Then, Error> {
        if self.supervisor != Some(id) {
            return Err(Error::NotPermitted);
        }
        if let on @ (CONTROL_TRACE_ON | CONTROL_TRACE_OFF) = op {
            self.set_tracing(on == CONTROL_TRACE_ON)?;
            return Ok(Then::Continue(0));
        }
        let target = self.service_named(name).ok_or(Error::NotFound)?;
        if target == id {
            return Err(Error::NotPermitted);
        }
        let running = self.sched.is_live(target);
        match op {
            CONTROL_STOP => {
                self.halt(target);
                if let Some(slot) = self.services.get(target) {
                    crate::grants::quiesce(&slot.image.grants, self.platform.as_ref());
                }
                self.stopped(target);
                self.log(&format!("service {name} stopped by the supervisor"));
            }
            CONTROL_START if running => return Err(Error::InvalidArgument),
            CONTROL_START => self.reload(target)?,
            CONTROL_RESTART => {
                self.halt(target);
                self.answer_taken_calls(target);
                self.reload(target)?;
            }
            _ => return Err(Error::InvalidArgument),
        }
        Ok(Then::Continue(0))
    }

    /// Turns the trace ring on or off (the supervisor's `control`, the host
    /// control channel), with a line in the log.
    pub(super) fn set_tracing(&mut self, on: bool) -> Result<(), Error> {
        // The ring's memory is taken at the first `on`: admitted like any
        // memory a service's request makes the kernel hold.
        if on {
            self.heap.admit(self.sched.trace_ref().bytes_to_turn_on())?;
        }
        self.sched
            .trace()
            .set(on)
            .map_err(|crate::trace::NoMemory| Error::OutOfMemory)?;
        self.log(if on { "tracing on" } else { "tracing off" });
        Ok(())
    }

    /// Takes service `id` off the CPU and out of whatever it waits for.
    pub(super) fn halt(&mut self, id: ServiceId) {
        if let Some(ServiceState::Blocked(Wait::Reply { token })) = self.sched.state(id) {
            // Its call goes now: one still queued leaves the table (its
            // message, delivered later, has no reply to wait for), one its
            // server has taken is withdrawn, so that the table never keeps
            // calls for callers that are gone (the server's late reply gets
            // PeerGone).
            let token = *token;
            match self.calls.get(token).map(|call| call.received) {
                Some(false) => self.withdraw_queued_call(token),
                Some(true) => {
                    self.calls.withdraw(token);
                }
                None => {}
            }
        }
        if self.sched.is_live(id) {
            self.sched.end(id, ServiceState::Stopped);
        }
        self.abandon_swap(id, "the service was stopped");
        if let Some(slot) = self.services.get_mut(id) {
            slot.previous = None;
            slot.retired = None;
        }
    }

    /// Drops service `id`'s pending swap, if any, with the instance started
    /// for it (its memory, its interpreter's claim): it was asked for the
    /// version that is gone. The host, if it asked, is told why.
    /// A swap's pause still open ends with the version: no pause line.
    pub(super) fn abandon_swap(&mut self, id: ServiceId, why: &str) {
        if let Some(slot) = self.services.get_mut(id) {
            slot.open_pause = None;
        }
        self.drop_pending_swap(id, why);
    }

    /// Drops service `id`'s pending swap, if any, and tells the host, if it
    /// asked, why.
    pub(super) fn drop_pending_swap(&mut self, id: ServiceId, why: &str) {
        let abandoned = self
            .services
            .get_mut(id)
            .and_then(|slot| slot.pending_swap.take().map(|_| slot.image.name.clone()));
        if let Some(name) = abandoned {
            let message = format!("swap of {name} abandoned: {why}");
            self.log(&message);
            self.tell_host(id, &format!("error: {message}\n"));
        }
    }

    /// Loads service `id` afresh from its image: a new Engine and Store (the old
    /// ones are dropped, with all they allocated), the same handles, and its
    /// endpoints open with whatever is queued on them.
    pub(super) fn reload(&mut self, id: ServiceId) -> Result<(), Error> {
        // A swap asked for the version that ended is not for this one.
        self.abandon_swap(id, "the service was started afresh");
        let Some(slot) = self.services.get_mut(id) else {
            return Err(Error::NotFound);
        };
        crate::grants::quiesce(&slot.image.grants, self.platform.as_ref());
        let started = Service::start(&slot.image, Arc::clone(&self.platform), &self.heap);
        // Instantiating ran the module's start function: what follows is
        // stamped with the clock as it is after it.
        self.sched.enter();
        match started {
            Ok(mut service) => {
                service.connect(id, self.me.clone());
                slot.service = Some(Box::new(service));
                slot.restarts = slot.restarts.saturating_add(1);
                self.sched
                    .record(atoll_abi::trace::Kind::Restart, id, usize::MAX, 0, 0);
                let message = format!(
                    "service {} restarted ({} so far)",
                    slot.image.name, slot.restarts
                );
                for endpoint in self.endpoints.iter_mut().filter(|e| e.owner == Some(id)) {
                    endpoint.reopen();
                }
                self.sched.start(id, 0);
                self.log(&message);
                Ok(())
            }
            Err(error) => {
                let message = format!("service {} failed to restart: {error}", slot.image.name);
                self.sched.end(id, ServiceState::Faulted(message.clone()));
                self.log(&message);
                self.stopped(id);
                Err(Error::InvalidArgument)
            }
        }
    }

    /// Answers with `PeerGone` the calls service `id` had taken but not
    /// answered; a late reply to one gets `PeerGone` too.
    pub(super) fn answer_taken_calls(&mut self, id: ServiceId) {
        for token in self
            .calls
            .tokens_where(|call| call.server == id && call.received)
        {
            if let Some(call) = self.calls.withdraw(token) {
                self.wake_caller(call.caller, token, Error::PeerGone.code());
            }
        }
    }

    /// Cleans up after service `id` stopped: its endpoints close, and every
    /// call waiting on it is answered with [`Error::PeerGone`].
    pub(super) fn stopped(&mut self, id: ServiceId) {
        let mut orphaned = Vec::new();
        for endpoint in self.endpoints.iter_mut().filter(|e| e.owner == Some(id)) {
            for message in endpoint.close() {
                self.queued_bytes = self.queued_bytes.saturating_sub(message_cost(&message));
                if message.token != 0 {
                    orphaned.push(message.token);
                }
            }
        }
        orphaned.extend(self.calls.tokens_where(|call| call.server == id));
        for token in orphaned {
            if let Some(call) = self.calls.remove(token) {
                self.wake_caller(call.caller, token, Error::PeerGone.code());
            }
        }
    }
}
