//! The kernel proper: the service table, the scheduler and the kernel calls.
//!
//! Scheduling is round robin over a FIFO run queue of ready services; each turn
//! is at most one fuel slice. A service that makes a kernel call that can be
//! answered at once goes on with the rest of its slice; one that must wait
//! (`call`, `receive` on an empty queue, `sleep`) is parked with what it waits
//! for, and made ready by the event that ends the wait: a message, a reply, a
//! deadline, or its peer stopping. Deadlines sit in an ordered set. When nothing
//! is ready the platform waits for the next interrupt. [`Kernel::run`] returns
//! when nothing can ever run again.

use crate::Platform;
use crate::control::{ControlChannel, Request};
use crate::guest::GuestSlice;
use crate::heap::Heap;
use crate::host::Syscall;
use crate::ipc::{CallTable, Endpoint, Message, PendingCall, ServiceId};
use crate::service::{Service, SliceOutcome};
use alloc::collections::{BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::Error;
use atoll_abi::bundle::{self, DecodeError, KernelSettings, ServiceImage, ServiceLimits};
use atoll_abi::supervision::{
    CONTROL_RESTART, CONTROL_START, CONTROL_STOP, Event, KERNEL_SENDER, Outcome, RestartPolicy,
};

/// Why the kernel cannot boot at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The boot bundle is missing or malformed.
    Bundle(DecodeError),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::Bundle(error) => write!(formatter, "boot bundle: {error}"),
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Services whose entry point returned.
    pub exited: usize,
    /// Services stopped by a trap.
    pub faulted: usize,
    /// Services that could not be loaded at boot.
    pub failed_to_load: usize,
    /// Services still waiting for something that can no longer happen.
    pub blocked: usize,
}

impl core::fmt::Display for RunSummary {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            formatter,
            "{} exited, {} faulted, {} failed to load, {} waiting for ever",
            self.exited, self.faulted, self.failed_to_load, self.blocked
        )
    }
}

impl RunSummary {
    /// Whether no service faulted and none failed to load: the run succeeded
    /// (exit status 0 of `image-builder run` and `host-run`; see
    /// docs/design.md). Nonzero WASI exit statuses and services waiting for
    /// ever do not count against it.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.faulted == 0 && self.failed_to_load == 0
    }
}

/// Where a service is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Runnable, in the run queue.
    Ready,
    /// Parked until an event.
    Blocked(Wait),
    /// Returned from its entry point.
    Exited,
    /// Stopped by a trap, with the reason.
    Faulted(String),
    /// Stopped by the supervisor.
    Stopped,
}

/// What a blocked service waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A message on `endpoint`, until `deadline` if any.
    Receive {
        endpoint: usize,
        buffer: GuestSlice,
        info: GuestSlice,
        deadline: Option<u64>,
    },
    /// The reply to the call named `token`.
    Reply { token: u32 },
    /// The clock to reach `deadline`.
    Sleep { deadline: u64 },
}

/// A service's right to an endpoint.
#[derive(Clone, Copy, Debug)]
struct Handle {
    endpoint: usize,
    /// Providers may receive; users may only send and call.
    provider: bool,
}

/// Counters shown by `ps`-like tools and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    pub sent: u64,
    pub received: u64,
    pub syscalls: u64,
}

/// One entry of the service table.
struct Slot {
    service: Service,
    /// What it takes to load the service again.
    image: Image,
    state: ServiceState,
    handles: Vec<Handle>,
    /// The result the service gets when it next resumes from a kernel call.
    resume_value: i32,
    stats: ServiceStats,
    restarts: u32,
    /// A new module to swap in at the service's next quiescent point.
    pending_swap: Option<Vec<u8>>,
    /// The version replaced by the last swap, kept for a rollback until its
    /// probation ends.
    previous: Option<Previous>,
    swaps: u32,
    /// When the swap in progress was asked for: the pause lasts until the new
    /// version waits in `receive`, ready to serve.
    swap_asked_at: Option<u64>,
    /// Whether the service has had the CPU at least once (for `system ready`).
    ever_ran: bool,
}

/// A replaced version, still parked in `receive`.
struct Previous {
    service: Service,
    /// The second stack its interpreter keeps after the state-save call ran
    /// beside its suspended entry point.
    _second_stack: crate::heap::InterpreterClaim,
    wait: Wait,
    module: Vec<u8>,
    until_ns: u64,
}

/// A service's module and settings, kept to restart it.
struct Image {
    name: String,
    module: Vec<u8>,
    limits: ServiceLimits,
    endpoint_names: Vec<String>,
    policy: RestartPolicy,
    args: Vec<String>,
    env: Vec<String>,
    grants: Arc<crate::driver::Resolved>,
}

/// What a kernel call did to its caller.
enum Then {
    /// Answered at once: the caller goes on with this result.
    Continue(i32),
    /// The caller waits.
    Block,
}

/// The kernel core.
pub struct Kernel {
    platform: Arc<dyn Platform>,
    /// Admission for everything services make the kernel hold.
    heap: Arc<Heap>,
    services: Vec<Slot>,
    endpoints: Vec<Endpoint>,
    calls: CallTable,
    run_queue: VecDeque<ServiceId>,
    timers: BTreeSet<(u64, ServiceId)>,
    /// The service that gets exit and fault reports and may use `control`.
    supervisor: Option<ServiceId>,
    /// Bytes held by queued messages, and the most they may hold: a bound on
    /// kernel memory that no combination of queue depths can exceed.
    queued_bytes: usize,
    message_budget: usize,
    /// Requests from the host's control channel, and the services whose swap
    /// outcome the host waits for.
    control: ControlChannel,
    host_swaps: Vec<ServiceId>,
    /// Services whose last swap the host asked for, still on probation: only
    /// their rollback is reported on the control channel (where a concurrent
    /// `push` might otherwise take it for its own answer).
    host_probation: Vec<ServiceId>,
    /// When the control channel was last polled: it is polled at most every
    /// [`CONTROL_POLL_NS`] while services run, and on every idle wake-up.
    control_polled_at: u64,
    summary: RunSummary,
    /// Services that have had the CPU at least once.
    started: usize,
    announced_ready: bool,
    /// The service each interrupt line is granted to.
    irq_owner: [Option<ServiceId>; 16],
    /// Lines that fired but whose notification could not be queued yet.
    irq_pending: u16,
    system_name: String,
    /// Totals for `info`.
    messages: u64,
    interrupts: u64,
}

impl Kernel {
    /// Unpacks a boot bundle, creates every endpoint and loads every service. A
    /// service that fails to load is reported and left out; its endpoints stay
    /// closed, so their users get [`Error::PeerGone`].
    pub fn boot(
        bundle_bytes: &[u8],
        platform: Arc<dyn Platform>,
    ) -> Result<(Kernel, KernelSettings), BootError> {
        let bundle = bundle::decode(bundle_bytes).map_err(BootError::Bundle)?;
        let mut kernel = Kernel {
            heap: Heap::new(Arc::clone(&platform)),
            platform,
            services: Vec::with_capacity(bundle.services.len()),
            endpoints: Vec::new(),
            calls: CallTable::default(),
            run_queue: VecDeque::with_capacity(bundle.services.len()),
            timers: BTreeSet::new(),
            supervisor: None,
            queued_bytes: 0,
            message_budget: 0,
            control: ControlChannel::default(),
            host_swaps: Vec::new(),
            host_probation: Vec::new(),
            control_polled_at: 0,
            summary: RunSummary::default(),
            started: 0,
            announced_ready: false,
            irq_owner: [None; 16],
            irq_pending: 0,
            system_name: bundle.kernel.system_name.clone(),
            messages: 0,
            interrupts: 0,
        };
        let pci_present = if bundle.services.iter().any(|image| !image.grants.is_empty()) {
            crate::driver::enumerate(kernel.platform.as_ref())
        } else {
            Vec::new()
        };
        let (mut claims, reserved) =
            crate::driver::Claims::new(&pci_present, kernel.platform.as_ref());
        kernel.message_budget = MAX_MESSAGE_BUDGET.min(kernel.platform.heap_available() / 4);
        kernel.log(&format!(
            "system `{}`: {} services in the bundle",
            bundle.kernel.system_name,
            bundle.services.len()
        ));
        for line in reserved {
            kernel.log(&line);
        }
        // Pass 1: every provided endpoint, closed until its provider loads.
        // `declared_by[e]` is the bundle index of endpoint e's provider.
        let mut declared_by: Vec<Option<usize>> = Vec::new();
        for (index, image) in bundle.services.iter().enumerate() {
            for name in &image.provides {
                if kernel.endpoint_named(name).is_some() {
                    kernel.log(&format!(
                        "service {}: endpoint `{name}` is provided twice; ignored",
                        image.name
                    ));
                    continue;
                }
                kernel
                    .endpoints
                    .push(Endpoint::new((*name).to_string(), None, 1));
                declared_by.push(Some(index));
            }
        }
        // Pass 2: handles, then the service itself.
        for (index, image) in bundle.services.iter().enumerate() {
            let mut handles = Vec::new();
            let mut names = Vec::new();
            for name in &image.provides {
                if let Some(endpoint) = kernel.endpoint_named(name)
                    && declared_by.get(endpoint).copied().flatten() == Some(index)
                {
                    handles.push(Handle {
                        endpoint,
                        provider: true,
                    });
                    names.push((*name).to_string());
                }
            }
            for name in &image.uses {
                // An endpoint nobody provides (image-builder refuses those) stays
                // closed: its users get PeerGone.
                let endpoint = match kernel.endpoint_named(name) {
                    Some(endpoint) => endpoint,
                    None => {
                        kernel
                            .endpoints
                            .push(Endpoint::new((*name).to_string(), None, 1));
                        declared_by.push(None);
                        kernel.endpoints.len() - 1
                    }
                };
                handles.push(Handle {
                    endpoint,
                    provider: false,
                });
                names.push((*name).to_string());
            }
            let started_at = kernel.platform.now_ns();
            let reload = Image {
                name: image.name.to_string(),
                module: image.module.to_vec(),
                limits: image.limits,
                endpoint_names: names.clone(),
                policy: image.restart,
                args: image.args.iter().map(|arg| (*arg).to_string()).collect(),
                env: image.env.iter().map(|var| (*var).to_string()).collect(),
                grants: {
                    let (grants, skipped) = crate::driver::resolve(
                        &image.grants,
                        &pci_present,
                        kernel.platform.as_ref(),
                        &mut claims,
                    );
                    for what in skipped {
                        kernel.log(&format!("service {}: not granted: {what}", image.name));
                    }
                    if !grants.irqs.is_empty() && image.provides.is_empty() {
                        kernel.log(&format!(
                            "service {}: has interrupt lines but no endpoint: notifications are dropped",
                            image.name
                        ));
                    }
                    Arc::new(grants)
                },
            };
            match Service::load(image, names, Arc::clone(&kernel.platform), &kernel.heap) {
                Ok(mut service) => {
                    let id = kernel.services.len();
                    service.grant(Arc::clone(&reload.grants));
                    // Claims made each line unique to one service.
                    for &irq in &reload.grants.irqs {
                        if let Some(owner) = kernel.irq_owner.get_mut(usize::from(irq)) {
                            *owner = Some(id);
                        }
                    }
                    let micros = kernel.platform.now_ns().saturating_sub(started_at) / 1000;
                    kernel.log(&format!(
                        "loaded service {} ({} bytes, {micros} us)",
                        image.name,
                        image.module.len()
                    ));
                    for handle in handles.iter().filter(|handle| handle.provider) {
                        if let Some(endpoint) = kernel.endpoints.get_mut(handle.endpoint) {
                            let depth = image
                                .limits
                                .queue_depth
                                .clamp(1, atoll_abi::MAX_QUEUE_DEPTH);
                            *endpoint =
                                Endpoint::new(endpoint.name.clone(), Some(id), depth as usize);
                        }
                    }
                    if image.supervisor && kernel.supervisor.is_none() {
                        kernel.supervisor = Some(id);
                    }
                    kernel.services.push(Slot {
                        service,
                        image: reload,
                        state: ServiceState::Ready,
                        handles,
                        resume_value: 0,
                        stats: ServiceStats::default(),
                        restarts: 0,
                        pending_swap: None,
                        previous: None,
                        swaps: 0,
                        swap_asked_at: None,
                        ever_ran: false,
                    });
                    kernel.run_queue.push_back(id);
                }
                Err(error) => {
                    kernel.summary.failed_to_load += 1;
                    kernel.log(&format!("service {} failed to load: {error}", image.name));
                }
            }
        }
        Ok((kernel, bundle.kernel))
    }

    fn endpoint_named(&self, name: &str) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|endpoint| endpoint.name == name)
    }

    /// Names and states of the loaded services, in bundle order.
    pub fn service_states(&self) -> impl Iterator<Item = (&str, &ServiceState, ServiceStats)> {
        self.services
            .iter()
            .map(|slot| (slot.service.name(), &slot.state, slot.stats))
    }

    /// Runs services until none can ever run again.
    pub fn run(&mut self) -> RunSummary {
        self.announce_ready_once();
        loop {
            let now = self.platform.now_ns();
            if now.saturating_sub(self.control_polled_at) >= CONTROL_POLL_NS {
                self.control_polled_at = now;
                self.poll_control();
            }
            self.fire_timers();
            self.deliver_interrupts();
            if let Some(id) = self.run_queue.pop_front() {
                self.run_service(id);
                self.announce_ready_once();
                continue;
            }
            match self.timers.first() {
                Some(&(deadline, _)) => self.platform.wait_until(deadline),
                // A live driver may still be woken by its device.
                // (In steps, so that the control channel is still polled.)
                None if self.interrupts_awaited() => self
                    .platform
                    .wait_until(self.platform.now_ns().saturating_add(CONTROL_POLL_NS)),
                None => break,
            }
        }
        self.summary.blocked = self
            .services
            .iter()
            .filter(|slot| matches!(slot.state, ServiceState::Blocked(_)))
            .count();
        self.summary
    }

    /// Gives service `id` one slice, serving its kernel calls as they come.
    fn run_service(&mut self, id: ServiceId) {
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        if slot.state != ServiceState::Ready {
            return;
        }
        if !slot.ever_ran {
            // Counted once per service: restarts and swaps start new instances.
            slot.ever_ran = true;
            self.started += 1;
        }
        if slot
            .previous
            .as_ref()
            .is_some_and(|previous| self.platform.now_ns() > previous.until_ns)
        {
            // Probation over: the old version's Engine and Store are freed.
            slot.previous = None;
            self.host_probation.retain(|&asked| asked != id);
        }
        let mut value = slot.resume_value;
        let mut fresh = true;
        loop {
            let Some(slot) = self.services.get_mut(id) else {
                return;
            };
            match slot.service.run_slice(value, fresh) {
                SliceOutcome::Preempted => {
                    self.run_queue.push_back(id);
                    return;
                }
                SliceOutcome::Syscall(syscall) => {
                    slot.stats.syscalls += 1;
                    match self.syscall(id, syscall) {
                        Then::Continue(result) => {
                            value = result;
                            fresh = false;
                        }
                        Then::Block => return,
                    }
                }
                SliceOutcome::Exited(status) => {
                    slot.state = ServiceState::Exited;
                    self.summary.exited += 1;
                    let (message, outcome) = if status == 0 {
                        (
                            format!("service {} exited", slot.service.name()),
                            Outcome::Exited,
                        )
                    } else {
                        (
                            format!(
                                "service {} exited with status {status}",
                                slot.service.name()
                            ),
                            Outcome::Failed(status),
                        )
                    };
                    self.log(&message);
                    self.ended(id, outcome);
                    self.free_the_supervisor();
                    return;
                }
                SliceOutcome::Faulted(reason) => {
                    let message = format!("service {} faulted: {reason}", slot.service.name());
                    slot.state = ServiceState::Faulted(reason.clone());
                    self.summary.faulted += 1;
                    self.log(&message);
                    self.ended(id, Outcome::Faulted(reason));
                    self.free_the_supervisor();
                    return;
                }
            }
        }
    }

    /// The endpoint behind `handle` of service `id`, if the handle is real and
    /// allows what is asked (`provider`: receive).
    fn endpoint_of(&self, id: ServiceId, handle: i32, provider: bool) -> Result<usize, Error> {
        let index = usize::try_from(handle)
            .ok()
            .and_then(|handle| handle.checked_sub(1))
            .ok_or(Error::BadHandle)?;
        let handle = self
            .services
            .get(id)
            .and_then(|slot| slot.handles.get(index))
            .ok_or(Error::BadHandle)?;
        if provider && !handle.provider {
            return Err(Error::NotPermitted);
        }
        Ok(handle.endpoint)
    }

    fn syscall(&mut self, id: ServiceId, syscall: Syscall) -> Then {
        let result = match syscall {
            Syscall::Send { handle, message } => self.send(id, handle, message),
            Syscall::Call {
                handle,
                message,
                reply,
            } => self.call(id, handle, message, reply, None),
            Syscall::ReadStdin {
                handle,
                message,
                buffer,
                count,
            } => {
                // WASI wants an errno, now or when the console answers.
                return match self.call(id, handle, message, buffer, Some(count)) {
                    Ok(then) => then,
                    Err(_) => Then::Continue(atoll_abi::wasi::errno::IO),
                };
            }
            Syscall::Receive {
                handle,
                buffer,
                info,
                timeout_ns,
            } => self.receive(id, handle, buffer, info, timeout_ns),
            Syscall::Reply { token, message } => self.reply(id, token, &message),
            Syscall::Control { op, name } => self.control(id, op, &name),
            Syscall::Swap { name, module } => self.swap_request(id, &name, module),
            Syscall::Info {
                kind,
                index,
                buffer,
            } => self.info(id, kind, index, buffer),
            Syscall::Sleep { ns } => {
                let deadline = self.platform.now_ns().saturating_add(ns);
                self.block(id, Wait::Sleep { deadline });
                return Then::Block;
            }
        };
        match result {
            Ok(then) => then,
            Err(error) => Then::Continue(error.code()),
        }
    }

    fn send(&mut self, id: ServiceId, handle: i32, data: Vec<u8>) -> Result<Then, Error> {
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

    fn call(
        &mut self,
        id: ServiceId,
        handle: i32,
        data: Vec<u8>,
        reply: GuestSlice,
        stdin_count: Option<GuestSlice>,
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
            reply,
            received: false,
            stdin_count,
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
    fn free_the_supervisor(&mut self) {
        let Some(mut waiter) = self.supervisor.filter(|&id| self.is_live(id)) else {
            return;
        };
        // A chain visits each service at most once unless it loops; a loop
        // of live services is their own deadlock, not one the kernel breaks.
        for _ in 0..self.services.len() {
            let Some(ServiceState::Blocked(Wait::Reply { token })) =
                self.services.get(waiter).map(|slot| &slot.state)
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
            if let Some(call) = self.calls.remove(token) {
                for endpoint in self.endpoints.iter_mut() {
                    if let Some(message) = endpoint.remove_call(token) {
                        self.queued_bytes =
                            self.queued_bytes.saturating_sub(message_cost(&message));
                    }
                }
                self.log(&format!(
                    "call from {} to ended service {} answered PeerGone: the supervisor waits on it",
                    self.name_of(call.caller),
                    self.name_of(server)
                ));
                self.wake_caller(call.caller, token, peer_gone(&call));
            }
            return;
        }
    }

    fn name_of(&self, id: ServiceId) -> &str {
        self.services
            .get(id)
            .map_or("?", |slot| slot.image.name.as_str())
    }

    /// Changes the bound on bytes held by all queues together (at boot: a
    /// quarter of the free heap, at most 64 MiB). Sends past it get `QueueFull`.
    pub fn set_message_budget(&mut self, bytes: usize) {
        self.message_budget = bytes;
    }

    /// Queues a message and, if the provider is waiting for one, delivers it.
    fn enqueue(&mut self, endpoint: usize, message: Message) -> Result<(), Error> {
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
    fn deliver_if_waiting(&mut self, owner: ServiceId, endpoint: usize) {
        if let Some(ServiceState::Blocked(Wait::Receive {
            endpoint: waited,
            buffer,
            info,
            ..
        })) = self.services.get(owner).map(|slot| &slot.state)
            && *waited == endpoint
        {
            let (buffer, info) = (*buffer, *info);
            match self.deliver(owner, endpoint, buffer, info) {
                // What was queued went back to its sender: keep waiting.
                Err(Error::WouldBlock) => {}
                result => self.wake(owner, result.unwrap_or_else(Error::code)),
            }
        }
    }

    fn receive(
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
    fn deliver(
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
        let mut record = [0u8; atoll_abi::RECEIVE_INFO_LEN];
        let (token_bytes, sender_bytes) = record.split_at_mut(4);
        token_bytes.copy_from_slice(&message.token.to_le_bytes());
        sender_bytes.copy_from_slice(&(message.sender as u32).to_le_bytes());
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
    fn refuse_to_sender(&mut self, message: &Message, receiver: ServiceId, capacity: usize) {
        let what = format!(
            "{} bytes from {} are more than {} receives ({capacity} bytes)",
            message.data.len(),
            self.name_of(message.sender),
            self.name_of(receiver)
        );
        match self.calls.remove(message.token) {
            Some(call) => {
                self.log(&format!("call refused: {what}"));
                let result = if call.stdin_count.is_some() {
                    atoll_abi::wasi::errno::IO
                } else {
                    Error::TooLarge.code()
                };
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

    fn reply(&mut self, id: ServiceId, token: u32, data: &[u8]) -> Result<Then, Error> {
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
        let waiting = matches!(
            self.services.get(call.caller).map(|slot| &slot.state),
            Some(ServiceState::Blocked(Wait::Reply { token: waited })) if *waited == token
        );
        if !waiting {
            self.calls.remove(token);
            return Err(Error::PeerGone);
        }
        if let Some(count) = call.stdin_count {
            let caller = self.services.get_mut(call.caller).ok_or(Error::PeerGone)?;
            let errno = crate::wasi::deliver_stdin(&mut caller.service, call.reply, count, data);
            self.calls.remove(token);
            self.wake(call.caller, errno);
            return Ok(Then::Continue(0));
        }
        if data.len() > call.reply.len() {
            // The token stays valid: the server may answer with something shorter.
            return Err(Error::BufferTooSmall);
        }
        let caller = self.services.get_mut(call.caller).ok_or(Error::PeerGone)?;
        let written = caller.service.write_memory(call.reply, data);
        self.calls.remove(token);
        let length = i32::try_from(data.len()).unwrap_or(i32::MAX);
        self.wake(call.caller, written.map_or_else(Error::code, |()| length));
        Ok(Then::Continue(0))
    }

    fn block(&mut self, id: ServiceId, wait: Wait) {
        let deadline = match &wait {
            Wait::Receive { deadline, .. } => *deadline,
            Wait::Sleep { deadline } => Some(*deadline),
            Wait::Reply { .. } => None,
        };
        if let Some(deadline) = deadline {
            self.timers.insert((deadline, id));
        }
        let quiescent = matches!(wait, Wait::Receive { .. });
        let now = self.platform.now_ns();
        if let Some(slot) = self.services.get_mut(id) {
            slot.state = ServiceState::Blocked(wait);
            if quiescent && slot.pending_swap.is_some() {
                self.perform_swap(id);
            } else if quiescent
                && slot.previous.is_some()
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
    }

    /// Makes a blocked service ready; it resumes with `result`.
    fn wake(&mut self, id: ServiceId, result: i32) {
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        let deadline = match &slot.state {
            ServiceState::Blocked(Wait::Receive { deadline, .. }) => *deadline,
            ServiceState::Blocked(Wait::Sleep { deadline }) => Some(*deadline),
            ServiceState::Blocked(Wait::Reply { .. }) => None,
            _ => return,
        };
        if let Some(deadline) = deadline {
            self.timers.remove(&(deadline, id));
        }
        slot.state = ServiceState::Ready;
        slot.resume_value = result;
        self.run_queue.push_back(id);
    }

    /// Wakes every service whose deadline has passed.
    fn fire_timers(&mut self) {
        let Some(&(first, _)) = self.timers.first() else {
            return;
        };
        let now = self.platform.now_ns();
        if first > now {
            return;
        }
        while let Some(&(deadline, id)) = self.timers.first() {
            if deadline > now {
                break;
            }
            let result = match self.services.get(id).map(|slot| &slot.state) {
                Some(ServiceState::Blocked(Wait::Sleep { .. })) => 0,
                _ => Error::TimedOut.code(),
            };
            self.wake(id, result);
            // `wake` removed the timer if the service was waiting on it; make
            // sure a stale entry cannot loop.
            self.timers.remove(&(deadline, id));
        }
    }

    /// Service `id` has ended. With a live supervisor, the calls it had taken
    /// are answered with `PeerGone`, its endpoints keep their queues, and the
    /// supervisor is told; it decides. Without one, the service is stopped.
    fn ended(&mut self, id: ServiceId, outcome: Outcome) {
        if self.roll_back(id, &outcome) {
            // The old version takes its device back, DMA buffers and all.
            return;
        }
        if let Some(slot) = self.services.get(id) {
            // A dead driver's devices must not write to memory any more.
            crate::driver::quiesce(&slot.image.grants, self.platform.as_ref());
        }
        let supervisor = self
            .supervisor
            .filter(|&supervisor| supervisor != id && self.is_live(supervisor));
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
                                self.services.get(other).map(|slot| &slot.state),
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
            policy: slot.image.policy,
            at_ns: self.platform.now_ns(),
        };
        let Some(endpoint) = self
            .services
            .get(supervisor)
            .and_then(|slot| slot.handles.first())
            .filter(|handle| handle.provider)
            .map(|handle| handle.endpoint)
        else {
            self.stopped(id);
            return;
        };
        let Ok(data) = postcard::to_allocvec(&event) else {
            self.stopped(id);
            return;
        };
        let message = Message {
            sender: KERNEL_SENDER as ServiceId,
            data,
            token: 0,
        };
        // Counted against the budget but never refused by it: reports are
        // small and one per ended service. Only a heap at its reserve (a
        // supervisor that restarts without reading its reports) drops one,
        // and then the service stays stopped.
        if self.heap.admit(message_cost(&message)).is_err() {
            self.log(&format!(
                "report of {} to the supervisor dropped: kernel heap low; it stays stopped",
                event.service
            ));
            self.stopped(id);
            return;
        }
        self.queued_bytes += message_cost(&message);
        let pushed = self
            .endpoints
            .get_mut(endpoint)
            .map(|queue| queue.push_from_kernel(message));
        if pushed != Some(Ok(())) {
            self.stopped(id);
            return;
        }
        self.deliver_if_waiting(supervisor, endpoint);
    }

    /// `control` from the supervisor.
    fn control(&mut self, id: ServiceId, op: i32, name: &str) -> Result<Then, Error> {
        if self.supervisor != Some(id) {
            return Err(Error::NotPermitted);
        }
        let target = self
            .services
            .iter()
            .position(|slot| slot.image.name == name)
            .ok_or(Error::NotFound)?;
        if target == id {
            return Err(Error::NotPermitted);
        }
        let running = self.is_live(target);
        match op {
            CONTROL_STOP => {
                self.halt(target);
                if let Some(slot) = self.services.get(target) {
                    crate::driver::quiesce(&slot.image.grants, self.platform.as_ref());
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

    /// Reads the host control channel and acts on complete requests. Returns
    /// whether any service became runnable (callers idling should run again).
    pub fn poll_control(&mut self) -> bool {
        let mut buffer = [0u8; 512];
        let mut any = false;
        loop {
            let read = self.platform.control_read(&mut buffer);
            let Some(bytes) = buffer.get(..read).filter(|bytes| !bytes.is_empty()) else {
                break;
            };
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
                    Err(reason) => self.platform.control_write(&format!("{reason}\n")),
                }
            }
        }
        any || !self.run_queue.is_empty()
    }

    /// `swap` from the supervisor: the module is copied out of its memory
    /// only once its right to swap is checked, and the copy is paid for.
    fn swap_request(
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
        let bytes = slot
            .service
            .read_memory(module, crate::host::MAX_SWAP_MODULE_LEN)?;
        let module = self.heap.copy(bytes)?;
        slot.service.charge_copy(module.len());
        self.schedule_swap(name, module, false)?;
        Ok(Then::Continue(0))
    }

    /// Checks a new module for service `name` now, and swaps it in at the
    /// service's next quiescent point (waiting in `receive`), which may be at
    /// once. `host`: the host control channel asked and waits for the outcome.
    fn schedule_swap(
        &mut self,
        name: &str,
        module: Vec<u8>,
        host: bool,
    ) -> Result<(), crate::control::SwapRefusal> {
        let target = self
            .services
            .iter()
            .position(|slot| slot.image.name == name)
            .ok_or(Error::NotFound)?;
        // Validation compiles the module once; loading it will again.
        self.heap.admit(crate::heap::compile_cost(&module))?;
        let limits = self
            .services
            .get(target)
            .ok_or(Error::NotFound)?
            .image
            .limits;
        if let Err(error) = crate::service::validate(&module, &limits) {
            self.log(&format!("swap of {name} refused: {error}"));
            return Err(crate::control::SwapRefusal {
                error: Error::InvalidModule,
                reason: Some(error.to_string()),
            });
        }
        let Some(slot) = self.services.get_mut(target) else {
            return Err(Error::NotFound.into());
        };
        if !matches!(slot.state, ServiceState::Ready | ServiceState::Blocked(_)) {
            return Err(Error::InvalidArgument.into());
        }
        slot.pending_swap = Some(module);
        slot.swap_asked_at = Some(self.platform.now_ns());
        let quiescent = matches!(slot.state, ServiceState::Blocked(Wait::Receive { .. }));
        if host && !self.host_swaps.contains(&target) {
            self.host_swaps.push(target);
        }
        if quiescent {
            self.perform_swap(target);
        }
        Ok(())
    }

    /// Tells the host, if it asked for this service's swap, how it went.
    fn tell_host(&mut self, id: ServiceId, line: &str) {
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
    /// to them get `BadHandle`).
    fn perform_swap(&mut self, id: ServiceId) {
        let now = self.platform.now_ns();
        let platform = Arc::clone(&self.platform);
        let heap = Arc::clone(&self.heap);
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        let Some(module) = slot.pending_swap.take() else {
            return;
        };
        let ServiceState::Blocked(wait @ Wait::Receive { .. }) = slot.state.clone() else {
            return;
        };
        let name = slot.image.name.clone();
        let outcome = (|| -> Result<(Service, crate::heap::InterpreterClaim), String> {
            let second_stack = heap
                .claim_interpreter()
                .map_err(|error| error.to_string())?;
            let state = slot.service.save_state()?;
            let image = ServiceImage {
                name: &slot.image.name,
                module: &module,
                limits: slot.image.limits,
                provides: Vec::new(),
                uses: Vec::new(),
                supervisor: false,
                restart: slot.image.policy,
                args: slot.image.args.iter().map(String::as_str).collect(),
                env: slot.image.env.iter().map(String::as_str).collect(),
                grants: Default::default(),
            };
            let mut service =
                Service::load(&image, slot.image.endpoint_names.clone(), platform, &heap)
                    .map_err(|error| error.to_string())?;
            service.grant(Arc::clone(&slot.image.grants));
            crate::driver::restore_with_dma(&mut slot.service, &mut service, state.as_deref())?;
            Ok((service, second_stack))
        })();
        let (service, second_stack) = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => {
                let message = format!("swap of {name} failed, old version kept: {reason}");
                self.log(&message);
                self.tell_host(id, &format!("error: {message}\n"));
                return;
            }
        };
        if let Wait::Receive {
            deadline: Some(deadline),
            ..
        } = wait
        {
            self.timers.remove(&(deadline, id));
        }
        // Calls the old version had taken end here: the new version starts
        // with none, and a caller must not wait for a reply nobody will give.
        self.answer_taken_calls(id);
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        // The new version holds the DMA buffers already (restore_with_dma).
        let old = core::mem::replace(&mut slot.service, service);
        let old_module = core::mem::replace(&mut slot.image.module, module);
        let probation = slot
            .image
            .limits
            .swap_probation_ms
            .saturating_mul(1_000_000);
        // Dropping the version before last frees its Engine and Store.
        slot.previous = Some(Previous {
            service: old,
            _second_stack: second_stack,
            wait,
            module: old_module,
            until_ns: now.saturating_add(probation),
        });
        slot.state = ServiceState::Ready;
        slot.resume_value = 0;
        slot.swaps = slot.swaps.saturating_add(1);
        let message = format!(
            "service {name} swapped to a new version ({} swaps)",
            slot.swaps
        );
        self.run_queue.push_back(id);
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
    fn roll_back(&mut self, id: ServiceId, outcome: &Outcome) -> bool {
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
        restored.put_dma(slot.service.take_dma());
        slot.service = restored;
        slot.image.module = previous.module;
        let deadline = match &previous.wait {
            Wait::Receive { deadline, .. } => *deadline,
            _ => None,
        };
        slot.state = ServiceState::Blocked(previous.wait);
        let what = match outcome {
            Outcome::Exited => String::from("exited"),
            Outcome::Faulted(reason) => format!("faulted ({reason})"),
            Outcome::Failed(status) => format!("exited with status {status}"),
        };
        let message = format!(
            "swap of {} rolled back: the new version {what} during its probation",
            slot.image.name
        );
        if let Some(deadline) = deadline {
            self.timers.insert((deadline, id));
        }
        self.log(&message);
        if let Some(index) = self.host_probation.iter().position(|&asked| asked == id) {
            self.host_probation.swap_remove(index);
            self.platform
                .control_write(&format!("rolled back: {message}\n"));
        }
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

    /// Takes service `id` off the CPU and out of whatever it waits for.
    fn halt(&mut self, id: ServiceId) {
        let Some(slot) = self.services.get_mut(id) else {
            return;
        };
        match &slot.state {
            ServiceState::Blocked(Wait::Reply { token }) => {
                // Its call goes now: one still queued leaves the table (its
                // message, delivered later, has no reply to wait for), one
                // its server has taken is withdrawn, so that the table never
                // keeps calls for callers that are gone (the server's late
                // reply gets PeerGone).
                let token = *token;
                match self.calls.get(token).map(|call| call.received) {
                    Some(false) => {
                        self.calls.remove(token);
                        for endpoint in self.endpoints.iter_mut() {
                            if let Some(message) = endpoint.remove_call(token) {
                                self.queued_bytes =
                                    self.queued_bytes.saturating_sub(message_cost(&message));
                            }
                        }
                    }
                    Some(true) => {
                        self.calls.withdraw(token);
                    }
                    None => {}
                }
            }
            ServiceState::Blocked(Wait::Receive {
                deadline: Some(deadline),
                ..
            })
            | ServiceState::Blocked(Wait::Sleep { deadline }) => {
                self.timers.remove(&(*deadline, id));
            }
            _ => {}
        }
        if matches!(slot.state, ServiceState::Ready | ServiceState::Blocked(_)) {
            slot.state = ServiceState::Stopped;
        }
        slot.pending_swap = None;
        slot.previous = None;
        self.run_queue.retain(|&queued| queued != id);
    }

    /// Loads service `id` afresh from its image: a new Engine and Store (the old
    /// ones are dropped, with all they allocated), the same handles, and its
    /// endpoints open with whatever is queued on them.
    fn reload(&mut self, id: ServiceId) -> Result<(), Error> {
        // A swap asked for the version that ended is not for this one.
        let abandoned = self.services.get_mut(id).and_then(|slot| {
            slot.swap_asked_at = None;
            slot.pending_swap.take().map(|_| slot.image.name.clone())
        });
        if let Some(name) = abandoned {
            let message = format!("swap of {name} abandoned: the service was started afresh");
            self.log(&message);
            self.tell_host(id, &format!("error: {message}\n"));
        }
        let Some(slot) = self.services.get_mut(id) else {
            return Err(Error::NotFound);
        };
        let image = ServiceImage {
            name: &slot.image.name,
            module: &slot.image.module,
            limits: slot.image.limits,
            provides: Vec::new(),
            uses: Vec::new(),
            supervisor: false,
            restart: slot.image.policy,
            args: slot.image.args.iter().map(String::as_str).collect(),
            env: slot.image.env.iter().map(String::as_str).collect(),
            grants: Default::default(),
        };
        crate::driver::quiesce(&slot.image.grants, self.platform.as_ref());
        match Service::load(
            &image,
            slot.image.endpoint_names.clone(),
            Arc::clone(&self.platform),
            &self.heap,
        ) {
            Ok(mut service) => {
                service.grant(Arc::clone(&slot.image.grants));
                slot.service = service;
                slot.state = ServiceState::Ready;
                slot.resume_value = 0;
                slot.restarts = slot.restarts.saturating_add(1);
                let message = format!(
                    "service {} restarted ({} so far)",
                    slot.image.name, slot.restarts
                );
                for endpoint in self.endpoints.iter_mut().filter(|e| e.owner == Some(id)) {
                    endpoint.reopen();
                }
                self.run_queue.push_back(id);
                self.log(&message);
                Ok(())
            }
            Err(error) => {
                let message = format!("service {} failed to restart: {error}", slot.image.name);
                slot.state = ServiceState::Faulted(message.clone());
                self.log(&message);
                self.stopped(id);
                Err(Error::InvalidArgument)
            }
        }
    }

    /// Answers with `PeerGone` the calls service `id` had taken but not answered.
    fn answer_taken_calls(&mut self, id: ServiceId) {
        for token in self
            .calls
            .tokens_where(|call| call.server == id && call.received)
        {
            if let Some(call) = self.calls.remove(token) {
                self.wake_caller(call.caller, token, peer_gone(&call));
            }
        }
    }

    /// Wakes `caller` with `result` if it still waits for the reply to
    /// `token` (a caller stopped or restarted meanwhile waits for nothing, or
    /// for something else).
    fn wake_caller(&mut self, caller: ServiceId, token: u32, result: i32) {
        let waiting = matches!(
            self.services.get(caller).map(|slot| &slot.state),
            Some(ServiceState::Blocked(Wait::Reply { token: waited })) if *waited == token
        );
        if waiting {
            self.wake(caller, result);
        }
    }

    /// Cleans up after service `id` stopped: its endpoints close, and every
    /// call waiting on it is answered with [`Error::PeerGone`].
    fn stopped(&mut self, id: ServiceId) {
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
                self.wake_caller(call.caller, token, peer_gone(&call));
            }
        }
    }

    /// Queues a notification for each interrupt line that fired, on its
    /// owner's first provided endpoint. The line stays masked until the owner
    /// acknowledges it, and a line whose notification still waits in the
    /// queue is not notified again, so at most one notification per line is
    /// queued; one that cannot be queued now is retried on the next turn.
    fn deliver_interrupts(&mut self) {
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
            let live = self.is_live(owner);
            let endpoint = self
                .services
                .get(owner)
                .and_then(|slot| slot.handles.first())
                .filter(|handle| handle.provider)
                .map(|handle| handle.endpoint);
            let (true, Some(endpoint)) = (live, endpoint) else {
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
            let message = Message {
                sender: KERNEL_SENDER as ServiceId,
                data: alloc::vec![irq],
                token: 0,
            };
            let cost = message_cost(&message);
            let pushed = self
                .endpoints
                .get_mut(endpoint)
                .map(|queue| queue.push_from_kernel(message));
            if pushed == Some(Ok(())) {
                self.queued_bytes += cost;
                self.interrupts += 1;
                self.deliver_if_waiting(owner, endpoint);
            } else {
                self.irq_pending |= 1 << irq;
            }
        }
    }

    /// Whether service `id` is loaded and neither ended nor stopped.
    fn is_live(&self, id: ServiceId) -> bool {
        matches!(
            self.services.get(id).map(|slot| &slot.state),
            Some(ServiceState::Ready | ServiceState::Blocked(_))
        )
    }

    /// Whether a live service owns an interrupt line (so an idle system
    /// waits for interrupts instead of ending).
    fn interrupts_awaited(&self) -> bool {
        self.irq_owner
            .iter()
            .flatten()
            .any(|&owner| self.is_live(owner))
    }

    /// `info`: writes a system or service record into the caller's buffer.
    fn info(
        &mut self,
        id: ServiceId,
        kind: i32,
        index: i32,
        buffer: GuestSlice,
    ) -> Result<Then, Error> {
        let record = match kind {
            atoll_abi::info::SYSTEM => postcard::to_allocvec(&atoll_abi::info::SystemInfo {
                system_name: self.system_name.clone(),
                uptime_ns: self.platform.now_ns(),
                services: u32::try_from(self.services.len()).unwrap_or(u32::MAX),
                heap_in_use: self.platform.heap_in_use().unwrap_or(0) as u64,
                heap_available: self.heap.available() as u64,
                queued_bytes: self.queued_bytes as u64,
                message_budget: self.message_budget as u64,
                messages: self.messages,
                interrupts: self.interrupts,
            }),
            atoll_abi::info::SERVICE => {
                let index = usize::try_from(index).map_err(|_| Error::NotFound)?;
                let slot = self.services.get(index).ok_or(Error::NotFound)?;
                postcard::to_allocvec(&atoll_abi::info::ServiceInfo {
                    name: slot.image.name.clone(),
                    // The caller is the one service on the CPU.
                    state: if index == id {
                        String::from("running")
                    } else {
                        state_name(&slot.state)
                    },
                    memory_bytes: slot.service.memory_size() as u64,
                    fuel_used: slot.service.fuel_used(),
                    sent: slot.stats.sent,
                    received: slot.stats.received,
                    restarts: slot.restarts,
                    swaps: slot.swaps,
                    dma_bytes: slot.service.dma_bytes() as u64,
                })
            }
            _ => return Err(Error::InvalidArgument),
        }
        .map_err(|_| Error::InvalidArgument)?;
        let len = i32::try_from(record.len()).map_err(|_| Error::TooLarge)?;
        let slot = self.services.get_mut(id).ok_or(Error::BadHandle)?;
        slot.service.write_memory(buffer, &record)?;
        Ok(Then::Continue(len))
    }

    /// Logs `system ready` once, as soon as every loaded service has had the CPU.
    fn announce_ready_once(&mut self) {
        if self.announced_ready || self.started < self.services.len() {
            return;
        }
        self.announced_ready = true;
        self.log(&format!("system ready ({} services)", self.services.len()));
    }

    fn log(&self, message: &str) {
        self.platform.console_write(&format!("atoll: {message}\n"));
    }
}

/// What a caller resumes with when its server goes away: `PeerGone`, or
/// WASI's `EIO` for a stdin read.
fn peer_gone(call: &PendingCall) -> i32 {
    if call.stdin_count.is_some() {
        atoll_abi::wasi::errno::IO
    } else {
        Error::PeerGone.code()
    }
}

/// A service state as `ps` shows it.
fn state_name(state: &ServiceState) -> String {
    match state {
        ServiceState::Ready => String::from("ready"),
        ServiceState::Blocked(Wait::Receive { .. }) => String::from("receiving"),
        ServiceState::Blocked(Wait::Reply { .. }) => String::from("calling"),
        ServiceState::Blocked(Wait::Sleep { .. }) => String::from("sleeping"),
        ServiceState::Exited => String::from("exited"),
        ServiceState::Faulted(_) => String::from("faulted"),
        ServiceState::Stopped => String::from("stopped"),
    }
}

/// How often the host control channel is polled while services run.
const CONTROL_POLL_NS: u64 = 1_000_000;

/// The most bytes all queues together may hold.
pub const MAX_MESSAGE_BUDGET: usize = 64 * 1024 * 1024;

/// What a queued message costs against the budget: its bytes plus bookkeeping.
fn message_cost(message: &Message) -> usize {
    message.data.len() + core::mem::size_of::<Message>()
}

#[cfg(test)]
mod test_hooks;
