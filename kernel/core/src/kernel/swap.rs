//! Hot swap and rollback: `swap` from the supervisor or a push from the host
//! control channel. The new module is compiled, checked and instantiated when
//! the swap is asked for; at the service's next quiescent point (waiting in
//! `receive`) the old version saves its state, the new one restores it and
//! takes over.

use super::*;

/// A new version waiting for its service's quiescent point: its program,
/// and its instance made when the swap was asked for (`None` with the
/// feature `late-swap-start`, which instantiates it in the pause, as before).
pub(super) struct PendingSwap {
    program: Arc<Program>,
    pub(super) started: Option<Box<Service>>,
    /// When it was asked for (once compiled and started).
    asked_at: u64,
}

/// A swap's pause in progress: when the swap was asked for, and when the
/// old version reached its quiescent point and stopped serving. The pause
/// lasts from then until the new version first asks for a message.
#[derive(Clone, Copy)]
pub(super) struct OpenPause {
    pub(super) asked_at: u64,
    pub(super) paused_at: u64,
}

impl Core {
    /// Reads the host control channel and acts on complete requests. Returns
    /// whether any service became runnable (callers idling should run again).
    pub(super) fn poll_control(&mut self) -> bool {
        let mut buffer = [0u8; 512];
        let mut any = false;
        loop {
            let read = self.platform.control_read(&mut buffer);
            let Some(bytes) = buffer.get(..read).filter(|bytes| !bytes.is_empty()) else {
                break;
            };
            let dropped = self.control.arriving(self.platform.now_ns());
            if dropped > 0 {
                // Not answered: its sender is gone, and the line would be
                // taken for the answer to the request now arriving.
                self.log(&format!(
                    "control: dropped {dropped} bytes of a request left unfinished"
                ));
            }
            for request in self.control.feed(bytes) {
                match request {
                    Ok(Request::Swap { service, module }) => {
                        self.log(&format!(
                            "host asks to swap {service} ({} bytes)",
                            module.len()
                        ));
                        match self.schedule_swap(&service, module, true) {
                            Ok(()) => any = true,
                            Err(error) => self
                                .platform
                                .control_write(&format!("error: swap of {service}: {error}\n")),
                        }
                    }
                    Ok(Request::Tracing(on)) => {
                        let line = match self.set_tracing(on) {
                            Ok(()) if on => String::from("ok: tracing on\n"),
                            Ok(()) => String::from("ok: tracing off\n"),
                            Err(error) => format!("error: tracing: {error}\n"),
                        };
                        self.platform.control_write(&line);
                    }
                    Ok(Request::TraceDump) => {
                        for line in self.trace_dump() {
                            self.platform.control_write(&line);
                        }
                    }
                    Err(reason) => self.platform.control_write(&format!("{reason}\n")),
                }
            }
        }
        any || self.sched.has_ready()
    }

    /// `swap` from the supervisor: the module is copied out of its memory
    /// only once its right to swap is checked, and the copy is paid for.
    pub(super) fn swap_request(
        &mut self,
        id: ServiceId,
        name: &str,
        module: GuestSlice,
    ) -> Result<Then, Error> {
        if self.supervisor != Some(id) {
            return Err(Error::NotPermitted);
        }
        let slot = self.services.get_mut(id).ok_or(Error::BadHandle)?;
        if slot.image.name == name {
            return Err(Error::NotPermitted);
        }
        let service = slot.service.as_mut().ok_or(Error::BadHandle)?;
        let bytes = service.read_memory(module, atoll_abi::MAX_MODULE_LEN)?;
        let module = self.heap.copy(bytes)?;
        service.charge_copy(module.len());
        self.schedule_swap(name, module, false)?;
        Ok(Then::Continue(0))
    }

    /// Checks a new module for service `name` now, and swaps it in at the
    /// service's next quiescent point (waiting in `receive`), which may be at
    /// once. `host`: the host control channel asked and waits for the outcome.
    pub(super) fn schedule_swap(
        &mut self,
        name: &str,
        module: Vec<u8>,
        host: bool,
    ) -> Result<(), crate::control::SwapRefusal> {
        let target = self.service_named(name).ok_or(Error::NotFound)?;
        let slot = self.services.get(target).ok_or(Error::NotFound)?;
        if !self.sched.is_live(target) {
            return Err(Error::InvalidArgument.into());
        }
        if slot.image.program.shim.is_some() {
            // A swap happens where the old version waits in `receive`, which
            // a WASI program (it cannot import `atoll`) never does.
            let reason = "a WASI program never waits in receive, where a swap happens";
            return Err(self.swap_refused(name, Error::NotPermitted, reason.into()));
        }
        // Compiled and checked now, outside the swap's pause.
        let program = match Program::compile_with_shim(
            &module,
            &slot.image.limits,
            &self.heap,
            crate::loader::Translation::Eager,
            self.wasi_shim.as_deref(),
        ) {
            Ok(program) => program,
            Err(error) => return Err(self.refuse_swap(name, &error)),
        };
        drop(module);
        let program = Arc::new(program);
        // Instantiated now too (its memory, tables, data and start
        // function), and its allocator warmed (its first allocation grows
        // its memory), outside the pause: at the quiescent point only the
        // state handoff and the switch remain. A version that cannot start
        // is refused here, the old one untouched. Not a driver's: its start
        // function could reach the device (ports, PCI, interrupts, DMA)
        // while the old version still drives it, for a version that may
        // never take over; it starts at the quiescent point, as before.
        let started = if cfg!(feature = "late-swap-start") || slot.image.grants.reaches_devices() {
            None
        } else {
            let image = Image {
                program: Arc::clone(&program),
                ..slot.image.clone()
            };
            let mut service = match Service::start(&image, Arc::clone(&self.platform), &self.heap) {
                Ok(service) => service,
                Err(error) => return Err(self.refuse_swap(name, &error)),
            };
            // Only where a state will be handed over: else the buffer
            // export is never called, and need not work.
            let hands_over = slot.service.as_ref().is_some_and(|old| old.saves_state());
            if !cfg!(feature = "cold-state-buffer")
                && hands_over
                && let Err(reason) = service.warm_state_buffer()
            {
                if service.heap_refused_growth() {
                    return Err(self.refuse_swap(name, &crate::loader::LoadError::OutOfMemory));
                }
                let reason = format!(
                    "its {} failed: {reason}",
                    crate::service::STATE_ALLOC_EXPORT
                );
                return Err(self.swap_refused(name, Error::InvalidModule, reason));
            }
            Some(Box::new(service))
        };
        // Compiling, starting and the warm-up took time (and ran the
        // version's code): what follows is stamped after it.
        self.sched.enter();
        // A swap still pending is superseded: its asker (the host, if it
        // was) hears so, and its instance is dropped. (A pause still open,
        // of a swap already made, stays open.)
        self.drop_pending_swap(target, "a newer version was asked for");
        let quiescent = matches!(
            self.sched.state(target),
            Some(ServiceState::Blocked(Wait::Receive { .. }))
        );
        let Some(slot) = self.services.get_mut(target) else {
            return Err(Error::NotFound.into());
        };
        slot.retired = None;
        slot.pending_swap = Some(PendingSwap {
            program,
            started,
            asked_at: self.platform.now_ns(),
        });
        if host && !self.host_swaps.contains(&target) {
            self.host_swaps.push(target);
        }
        if quiescent {
            self.perform_swap(target);
        }
        Ok(())
    }

    /// Why a swap to a module that cannot be compiled or started is refused
    /// (logged): no room, or the module's own fault, with the reason.
    fn refuse_swap(
        &mut self,
        name: &str,
        error: &crate::loader::LoadError,
    ) -> crate::control::SwapRefusal {
        if matches!(error, crate::loader::LoadError::OutOfMemory) {
            return Error::OutOfMemory.into();
        }
        self.swap_refused(name, Error::InvalidModule, error.to_string())
    }

    /// A swap refused with `error` for `reason`, logged.
    fn swap_refused(
        &mut self,
        name: &str,
        error: Error,
        reason: String,
    ) -> crate::control::SwapRefusal {
        self.log(&format!("swap of {name} refused: {reason}"));
        crate::control::SwapRefusal {
            error,
            reason: Some(reason),
        }
    }

    /// Tells the host, if it asked for this service's swap, how it went.
    pub(super) fn tell_host(&mut self, id: ServiceId, line: &str) {
        if let Some(index) = self.host_swaps.iter().position(|&waiting| waiting == id) {
            self.host_swaps.swap_remove(index);
            self.platform.control_write(line);
        }
    }

    /// Replaces service `id`, parked in `receive`, by its pending module: the
    /// old version saves its state, the new one is loaded, restores it and
    /// starts; the old one is kept, parked, until the probation ends. If the
    /// new version cannot be loaded or take the state, the old one goes on.
    /// Calls the old version had taken and not answered are answered with
    /// `PeerGone` (a rollback restores the version without them: its replies
    /// to them get `PeerGone` too).
    pub(super) fn perform_swap(&mut self, id: ServiceId) {
        let now = self.platform.now_ns();
        let platform = Arc::clone(&self.platform);
        let heap = Arc::clone(&self.heap);
        let me = self.me.clone();
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        let Some(PendingSwap {
            program,
            started,
            asked_at,
        }) = slot.pending_swap.take()
        else {
            return;
        };
        let Some(ServiceState::Blocked(wait @ Wait::Receive { .. })) =
            self.sched.state(id).cloned()
        else {
            return;
        };
        let name = slot.image.name.clone();
        let image = Image {
            program,
            ..slot.image.clone()
        };
        let outcome = (|| -> Result<(Box<Service>, crate::heap::Claim), String> {
            let second_stack = heap
                .claim(crate::heap::INTERPRETER_STACK_BYTES)
                .map_err(|error| error.to_string())?;
            let old = slot.service.as_mut().ok_or("the service is not parked")?;
            let state = old.save_state()?;
            let mut service = match started {
                Some(service) => service,
                None => Box::new(
                    Service::start(&image, platform, &heap).map_err(|error| error.to_string())?,
                ),
            };
            service.connect(id, me);
            crate::service::restore_with_dma(old, &mut service, state.as_deref())?;
            Ok((service, second_stack))
        })();
        // The handoff ran both versions' code: what follows (the new
        // version's start, callers answered) is stamped after it.
        self.sched.enter();
        let (service, second_stack) = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => {
                let message = format!("swap of {name} failed, old version kept: {reason}");
                self.log(&message);
                self.tell_host(id, &format!("error: {message}\n"));
                return;
            }
        };
        // Calls the old version had taken end here: the new version starts
        // with none, and a caller must not wait for a reply nobody will give.
        self.answer_taken_calls(id);
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        // The new version holds the DMA buffers already (restore_with_dma).
        let Some(old) = slot.service.replace(service) else {
            return;
        };
        let old_program = core::mem::replace(&mut slot.image.program, image.program);
        let probation = slot
            .image
            .limits
            .swap_probation_ms
            .saturating_mul(1_000_000);
        // The version before last is freed after the pause (its Engine and
        // Store take tens of microseconds to drop).
        slot.retired = slot.previous.take();
        slot.previous = Some(Previous {
            service: old,
            _second_stack: second_stack,
            wait,
            program: old_program,
            until_ns: now.saturating_add(probation),
        });
        slot.swaps = slot.swaps.saturating_add(1);
        slot.open_pause = Some(OpenPause {
            asked_at,
            paused_at: now,
        });
        self.sched
            .record(atoll_abi::trace::Kind::Swap, id, usize::MAX, 0, 0);
        let message = format!(
            "service {name} swapped to a new version ({} swaps)",
            slot.swaps
        );
        self.sched.start(id, 0);
        self.log(&message);
        if let Some(bytes) = self.platform.heap_in_use() {
            self.log(&format!("kernel heap in use: {} KiB", bytes / 1024));
        }
        let host_asked = self.host_swaps.contains(&id);
        self.tell_host(id, &format!("ok: {message}\n"));
        self.host_probation.retain(|&waiting| waiting != id);
        if host_asked {
            self.host_probation.push(id);
        }
    }

    /// If service `id` was swapped in and ends within its probation, puts the
    /// previous version back, parked where it was. Returns whether it did.
    pub(super) fn roll_back(&mut self, id: ServiceId, outcome: &Outcome) -> bool {
        let now = self.platform.now_ns();
        let Some(slot) = self.services.get_mut(id) else {
            return false;
        };
        let Some(previous) = slot.previous.take() else {
            return false;
        };
        if now > previous.until_ns {
            return false;
        }
        self.answer_taken_calls(id);
        let Some(slot) = self.services.get_mut(id) else {
            return false;
        };
        let mut restored = previous.service;
        if let Some(failed) = slot.service.as_mut() {
            restored.put_dma(failed.take_dma());
        }
        slot.service = Some(restored);
        // The failed version's pause ends with it: the restored version
        // was never paused (it waits in the `receive` it was parked in).
        slot.open_pause = None;
        slot.image.program = previous.program;
        let message = format!(
            "swap of {} rolled back: the new version {outcome} during its probation",
            slot.image.name
        );
        self.sched.block(id, previous.wait);
        self.log(&message);
        if let Some(index) = self.host_probation.iter().position(|&asked| asked == id) {
            self.host_probation.swap_remove(index);
            self.platform
                .control_write(&format!("rolled back: {message}\n"));
        }
        // A swap asked for while the failed version ran was for that
        // version: its asker hears so (the restored version is parked, not
        // at a `receive` the kernel sees, so it would wait for ever).
        self.drop_pending_swap(id, "the version it was to replace was rolled back");
        // Messages that arrived meanwhile wait in the queue: hand one over.
        for endpoint in 0..self.endpoints.len() {
            if self
                .endpoints
                .get(endpoint)
                .is_some_and(|e| e.owner == Some(id) && !e.is_empty())
            {
                self.deliver_if_waiting(id, endpoint);
            }
        }
        true
    }
}
