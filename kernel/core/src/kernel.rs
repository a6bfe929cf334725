//! The kernel proper: boot, the service table and the loop that runs
//! services and dispatches their kernel calls.
//!
//! Each turn gives one ready service at most one fuel slice. A service that
//! makes a kernel call that can be answered at once goes on with the rest of
//! its slice; one that must wait (`call`, `receive` on an empty queue,
//! `sleep`) is parked with what it waits for, and made ready by the event that
//! ends the wait: a message, a reply, a deadline, or its peer stopping. When
//! nothing is ready the platform waits for the next deadline or interrupt.
//! [`Kernel::run`] returns when nothing can ever run again.
//!
//! One file per job, each an `impl Core` over the table's private fields:
//! [`sched`] (the only code that changes a service's state, its deadline and
//! the run queue), `messages` (send, call, receive, reply), `lifecycle` (end,
//! stop, restart, supervision), `swap` (hot swap and rollback, the host
//! control channel), `irq` (interrupt notifications) and `info`.

mod info;
mod irq;
mod lifecycle;
mod messages;
pub mod sched;
mod swap;

use crate::Platform;
use crate::control::{ControlChannel, Request};
use crate::guest::GuestSlice;
use crate::heap::Heap;
use crate::host::{InPlace, Syscall};
use crate::ipc::{CallTable, Endpoint, Message, PendingCall, ServiceId};
use crate::loader::Program;
use crate::service::{Image, Service, SliceOutcome, Upcall};
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::Error;
use atoll_abi::bundle::{self, DecodeError, KernelSettings};
use atoll_abi::supervision::{
    CONTROL_RESTART, CONTROL_START, CONTROL_STOP, CONTROL_TRACE_OFF, CONTROL_TRACE_ON, Event,
    KERNEL_SENDER, Outcome, RestartPolicy,
};
use core::cell::RefCell;
use sched::Scheduler;
pub use sched::{ServiceState, Wait};

/// How the boot bundle's modules are translated (docs/design.md, "When code
/// is translated"): lazily, or eagerly in the build kept for comparison.
const BOOT_TRANSLATION: crate::loader::Translation = if cfg!(feature = "eager-boot") {
    crate::loader::Translation::Eager
} else {
    crate::loader::Translation::Lazy
};

/// Why the kernel cannot boot at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The boot bundle is missing or malformed.
    #[error("boot bundle: {0}")]
    Bundle(DecodeError),
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

/// A service's right to an endpoint.
#[derive(Clone, Copy, Debug)]
struct Handle {
    endpoint: usize,
    /// Providers may receive; users may only send and call.
    provider: bool,
}

/// A service's counters kept in its table entry, each counted at the one
/// place its event happens (`info` adds those other owners keep: fuel and
/// memory in [`Service`], blocked time in the scheduler, restarts and swaps
/// in the lifecycle).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Messages queued by it (sends and calls).
    pub sent: u64,
    /// Messages it took from its endpoints.
    pub received: u64,
    /// Kernel calls (host traps and calls completed in place alike).
    pub syscalls: u64,
    /// Turns on the CPU.
    pub slices: u64,
    /// Times it trapped.
    pub faults: u32,
}

/// One entry of the service table.
struct Slot {
    /// `None` while it runs. Boxed: it moves out and back at every slice.
    service: Option<Box<Service>>,
    /// What it takes to start the service again.
    image: Image,
    policy: RestartPolicy,
    handles: Vec<Handle>,
    stats: ServiceStats,
    restarts: u32,
    /// A new version, compiled and checked (and, unless the feature
    /// `late-swap-start` asks otherwise, instantiated), to swap in at the
    /// service's next quiescent point.
    pending_swap: Option<swap::PendingSwap>,
    /// The version replaced by the last swap, kept for a rollback until its
    /// probation ends.
    previous: Option<Previous>,
    /// The version before last, replaced as `previous` by a swap: freed
    /// after the swap's pause (when the kernel idles, the service's next
    /// turn after it serves, or its next swap is asked for), not inside it.
    /// One is kept: a swap that finds one still here frees it in its pause.
    retired: Option<Previous>,
    swaps: u32,
    /// The pause of the last swap, until the new version first asks for a
    /// message (`Core::end_swap_pause`).
    open_pause: Option<swap::OpenPause>,
    /// Whether the service has had the CPU at least once (for `system ready`).
    ever_ran: bool,
}

/// A replaced version, still parked in `receive`.
struct Previous {
    service: Box<Service>,
    /// The second stack its interpreter keeps after the state-save call ran
    /// beside its suspended entry point.
    _second_stack: crate::heap::Claim,
    wait: Wait,
    program: Arc<Program>,
    until_ns: u64,
}

/// What a kernel call did to its caller.
enum Then {
    /// Answered at once: the caller goes on with this result.
    Continue(i32),
    /// The caller waits.
    Block,
}

/// The kernel: its state behind a `RefCell`, shared with the services' host
/// functions (a `Weak` in each one's host state) so that a kernel call that
/// need not block completes inside its host function. The running service is
/// out of the table while it runs, so nothing it can reach aliases it.
pub struct Kernel {
    core: Rc<RefCell<Core>>,
}

/// What [`Kernel::run`] does next.
enum Turn {
    /// Give this service a slice; it resumes with this value. The time the
    /// turn was decided at (one clock read serves the turn).
    Run(ServiceId, i32, u64),
    /// Nothing is ready: wait until this time.
    Wait(Arc<dyn Platform>, u64),
    /// Nothing can ever run again.
    Done,
}

impl Kernel {
    /// Unpacks a boot bundle, creates every endpoint and loads every service. A
    /// service that fails to load is reported and left out; its endpoints stay
    /// closed, so their users get [`Error::PeerGone`].
    pub fn boot(
        bundle_bytes: &[u8],
        platform: Arc<dyn Platform>,
    ) -> Result<(Kernel, KernelSettings), BootError> {
        let (core, settings) = Core::boot(bundle_bytes, platform)?;
        let core = Rc::new(RefCell::new(core));
        core.borrow_mut().connect(Rc::downgrade(&core));
        Ok((Kernel { core }, settings))
    }

    /// Runs services until none can ever run again.
    pub fn run(&mut self) -> RunSummary {
        entered(&self.core).announce_ready_once();
        loop {
            let turn = entered(&self.core).next_turn();
            match turn {
                Turn::Run(id, resume, now) => {
                    self.run_service(id, resume, now);
                    entered(&self.core).announce_ready_once();
                }
                Turn::Wait(platform, deadline) => platform.wait_until(deadline),
                Turn::Done => break,
            }
        }
        entered(&self.core).summary()
    }

    /// Gives service `id` one slice, serving its kernel calls as they come.
    /// The kernel's state is not borrowed while the service runs: its host
    /// functions may borrow it.
    fn run_service(&self, id: ServiceId, resume: i32, now: u64) {
        let Some(service) = entered(&self.core).begin_slice(id, now) else {
            return;
        };
        run_slice(&self.core, id, service, resume);
    }

    /// Reads the host control channel and acts on complete requests. Returns
    /// whether any service became runnable (callers idling should run again).
    pub fn poll_control(&mut self) -> bool {
        entered(&self.core).poll_control()
    }

    /// Names, states and counters of the loaded services, in bundle order.
    #[must_use]
    pub fn service_states(&self) -> Vec<(String, ServiceState, ServiceStats)> {
        self.core.borrow().service_states()
    }

    /// Every service's record as `info` reports it, in bundle order.
    #[must_use]
    pub fn service_info(&self) -> Vec<atoll_abi::info::ServiceInfo> {
        let core = self.core.borrow();
        (0..core.services.len())
            .filter_map(|index| core.service_info(index, None))
            .collect()
    }

    /// Every endpoint's record as `info` reports it.
    #[must_use]
    pub fn endpoint_info(&self) -> Vec<atoll_abi::info::EndpointInfo> {
        let core = self.core.borrow();
        (0..core.endpoints.len())
            .filter_map(|index| core.endpoint_info(index))
            .collect()
    }

    /// Turns the trace ring on or off (the control channel's and the
    /// supervisor's request, for a hosted core).
    pub fn set_tracing(&mut self, on: bool) -> Result<(), Error> {
        entered(&self.core).set_tracing(on)
    }

    /// The trace ring as the dump lines the control channel carries
    /// ([`atoll_abi::trace`]).
    #[must_use]
    pub fn trace_dump(&self) -> Vec<String> {
        self.core.borrow().trace_dump()
    }
}

/// Borrows the kernel for one kernel entry: what it does is stamped with
/// one reading of the clock ([`Scheduler::now`]), taken when first needed.
fn entered(core: &RefCell<Core>) -> core::cell::RefMut<'_, Core> {
    let mut core = core.borrow_mut();
    core.sched.enter();
    core
}

/// Runs service `id` (taken out of the table for its turn) for a slice,
/// serving its kernel calls as they come, until the slice ends or the
/// service blocks. `core` is not borrowed while the service runs: its host
/// functions may borrow it (and a `call` may run its server in place: see
/// [`Core::begin_switch`]).
/// Returns the fuel the service used.
fn run_slice(core: &RefCell<Core>, id: ServiceId, mut service: Box<Service>, resume: i32) -> u64 {
    let mut value = resume;
    let mut fresh = true;
    let mut used = 0u64;
    loop {
        let before = service.fuel_used();
        let outcome = service.run_slice(value, fresh);
        used = used.saturating_add(service.fuel_used().saturating_sub(before));
        let mut core = entered(core);
        core.put_service(id, service);
        let Some(result) = core.after_slice(id, outcome) else {
            return used;
        };
        let Some(next) = core.take_service(id) else {
            return used;
        };
        (service, value, fresh) = (next, result, false);
    }
}

impl crate::host::Switch for RefCell<Core> {
    fn call_in_place(
        &self,
        id: ServiceId,
        handle: i32,
        memory: &mut [u8],
        message: GuestSlice,
        reply: GuestSlice,
    ) -> InPlace {
        // Busy: a state handoff runs the service with the kernel borrowed.
        let started = match self.try_borrow_mut() {
            Ok(mut core) => {
                core.sched.enter();
                core.begin_switch(id, handle, memory, message, reply)
            }
            Err(_) => return InPlace::NotTaken,
        };
        match started {
            Ok((server, service, resume)) => {
                let used = run_slice(self, server, service, resume);
                // Part of the kernel entry that ended the server's slice,
                // just before: its time stamps the caller's wake-up.
                self.borrow_mut().end_switch(id, used, memory, reply)
            }
            Err(in_place) => in_place,
        }
    }
}

/// The kernel's state: the service table and everything services share.
pub(crate) struct Core {
    /// The `Rc` this core lives in, handed to each service's host functions.
    me: Weak<RefCell<Core>>,
    /// The direct switch in progress, if a `call` runs its server in place.
    switching: Option<messages::Switching>,
    /// The reply of the direct switch in progress, until its caller's host
    /// function writes it (`messages::SWITCH_REPLY_KEPT`).
    switch_reply: Vec<u8>,
    /// Fuel the servers run in place have used in this turn: no switch
    /// starts once it reaches the caller's slice (the last one started may
    /// still run its server's whole slice), so that a turn stays a few
    /// slices long.
    switched_fuel: u64,
    platform: Arc<dyn Platform>,
    /// Admission for everything services make the kernel hold.
    heap: Arc<Heap>,
    /// The WASI shim's module, from the bundle: every WASI program is linked
    /// to an instance of it (also one a swap brings).
    wasi_shim: Option<Arc<[u8]>>,
    services: Vec<Slot>,
    /// Each service's state, the run queue and the timers.
    sched: Scheduler,
    endpoints: Vec<Endpoint>,
    calls: CallTable,
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
    /// Buffers of messages taken, for the next ones (`messages::recycle`).
    spare_buffers: Vec<Vec<u8>>,
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

impl Core {
    fn boot(
        bundle_bytes: &[u8],
        platform: Arc<dyn Platform>,
    ) -> Result<(Core, KernelSettings), BootError> {
        let wired = bundle::decode(bundle_bytes).map_err(BootError::Bundle)?;
        let bundle = &wired.bundle;
        let mut kernel = Core {
            me: Weak::new(),
            switching: None,
            switch_reply: Vec::new(),
            switched_fuel: 0,
            heap: Heap::new(Arc::clone(&platform)),
            wasi_shim: bundle.wasi_shim.map(Arc::from),
            sched: Scheduler::new(Arc::clone(&platform)),
            platform,
            services: Vec::with_capacity(bundle.services.len()),
            endpoints: Vec::new(),
            calls: CallTable::default(),
            supervisor: None,
            queued_bytes: 0,
            message_budget: 0,
            control: ControlChannel::default(),
            host_swaps: Vec::new(),
            spare_buffers: Vec::with_capacity(messages::SPARE_BUFFERS),
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
            crate::grants::enumerate(kernel.platform.as_ref())
        } else {
            Vec::new()
        };
        let (mut claims, reserved) =
            crate::grants::Claims::new(&pci_present, kernel.platform.as_ref());
        kernel.message_budget = MAX_MESSAGE_BUDGET.min(kernel.platform.heap_available() / 4);
        kernel.log(&format!(
            "system `{}`: {} services in the bundle",
            bundle.kernel.system_name,
            bundle.services.len()
        ));
        for line in reserved {
            kernel.log(&line);
        }
        // The endpoints and each service's handles were resolved by
        // image-builder (`bundle::Wired`, whose fit `bundle::decode`
        // checked); every endpoint stays closed until its provider loads.
        for name in &wired.endpoints {
            kernel
                .endpoints
                .push(Endpoint::new((*name).to_string(), None, 1));
        }
        for (image, wiring) in bundle.services.iter().zip(&wired.wiring) {
            let (handles, names): (Vec<Handle>, Vec<String>) = wiring
                .handles
                .iter()
                .filter_map(|handle| {
                    let endpoint = usize::try_from(handle.endpoint).ok()?;
                    let name = kernel.endpoints.get(endpoint)?.name.clone();
                    let provider = handle.provider;
                    Some((Handle { endpoint, provider }, name))
                })
                .unzip();
            let started_at = kernel.platform.now_ns();
            let grants = {
                let (grants, skipped) = crate::grants::resolve(
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
            };
            // WASI preopens and listening sockets, on handles resolved with
            // the others.
            let preopens = (image.preopens.iter().zip(&wiring.preopens))
                .map(|(preopen, &handle)| atoll_abi::startup::Preopen {
                    guest: preopen.guest.to_string(),
                    handle,
                    directory: preopen.directory.to_string(),
                    read_only: preopen.read_only,
                })
                .collect();
            let listeners = (image.listen.iter().zip(&wiring.listen))
                .map(|(listen, &handle)| atoll_abi::startup::Listener {
                    handle,
                    port: listen.port,
                    nonblocking: listen.nonblocking,
                })
                .collect();
            let loaded = Program::compile_with_shim(
                image.module,
                &image.limits,
                &kernel.heap,
                BOOT_TRANSLATION,
                kernel.wasi_shim.as_deref(),
            )
            .and_then(|program| {
                let image = Image {
                    name: image.name.to_string(),
                    program: Arc::new(program),
                    limits: image.limits,
                    endpoint_names: names,
                    args: image.args.iter().map(|arg| (*arg).to_string()).collect(),
                    env: image.env.iter().map(|var| (*var).to_string()).collect(),
                    preopens,
                    listeners,
                    grants,
                };
                let service = Service::start(&image, Arc::clone(&kernel.platform), &kernel.heap)?;
                Ok((image, service))
            });
            match loaded {
                Ok((reload, service)) => {
                    let id = kernel.sched.add();
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
                        service: Some(Box::new(service)),
                        image: reload,
                        policy: image.restart,
                        handles,
                        stats: ServiceStats::default(),
                        restarts: 0,
                        pending_swap: None,
                        previous: None,
                        retired: None,
                        swaps: 0,
                        open_pause: None,
                        ever_ran: false,
                    });
                }
                Err(error) => {
                    kernel.summary.failed_to_load += 1;
                    kernel.log(&format!("service {} failed to load: {error}", image.name));
                }
            }
        }
        Ok((kernel, wired.bundle.kernel))
    }

    /// Hands every service its host functions' way into the kernel.
    fn connect(&mut self, me: Weak<RefCell<Core>>) {
        for (id, slot) in self.services.iter_mut().enumerate() {
            if let Some(service) = slot.service.as_mut() {
                service.connect(id, me.clone());
            }
        }
        self.me = me;
    }

    /// Polls the control channel, wakes services whose deadline passed,
    /// delivers interrupts, and says what the kernel does next.
    fn next_turn(&mut self) -> Turn {
        // A turn starts its own entry whoever borrowed the kernel: its
        // timers must see the clock as it is now (after an idle wait), or
        // none would ever fall due.
        self.sched.enter();
        let now = self.sched.now();
        if now.saturating_sub(self.control_polled_at) >= CONTROL_POLL_NS {
            self.control_polled_at = now;
            self.poll_control();
        }
        while let Some((id, result)) = self.sched.due(now) {
            self.sched.wake(id, result);
        }
        self.deliver_interrupts();
        if let Some((id, resume)) = self.sched.next() {
            self.switched_fuel = 0;
            self.platform.console_turn(now);
            return Turn::Run(id, resume, now);
        }
        // Idle: free the versions that swaps retired.
        for slot in &mut self.services {
            slot.retired = None;
        }
        let platform = Arc::clone(&self.platform);
        match self.sched.next_deadline() {
            Some(deadline) => Turn::Wait(platform, deadline),
            // A live driver may still be woken by its device.
            // (In steps, so that the control channel is still polled.)
            None if self.interrupts_awaited() => {
                let deadline = platform.now_ns().saturating_add(CONTROL_POLL_NS);
                Turn::Wait(platform, deadline)
            }
            None => Turn::Done,
        }
    }

    fn summary(&mut self) -> RunSummary {
        self.summary.blocked = self.sched.blocked();
        self.summary
    }

    /// Starts service `id`'s turn: its once-per-turn bookkeeping, then
    /// [`Core::take_service`].
    fn begin_slice(&mut self, id: ServiceId, now: u64) -> Option<Box<Service>> {
        let slot = self.services.get_mut(id)?;
        slot.stats.slices += 1;
        if !slot.ever_ran {
            // Counted once per service: restarts and swaps start new instances.
            slot.ever_ran = true;
            self.started += 1;
        }
        if slot.open_pause.is_none() {
            slot.retired = None;
        }
        if slot
            .previous
            .as_ref()
            .is_some_and(|previous| now > previous.until_ns)
        {
            // Probation over: the old version's Engine and Store are freed.
            slot.previous = None;
            self.host_probation.retain(|&asked| asked != id);
        }
        slot.service.take()
    }

    /// Takes service `id` out of the table to run it (again, within its turn).
    fn take_service(&mut self, id: ServiceId) -> Option<Box<Service>> {
        self.services.get_mut(id)?.service.take()
    }

    /// Puts service `id` back after its slice.
    fn put_service(&mut self, id: ServiceId, service: Box<Service>) {
        if let Some(slot) = self.services.get_mut(id) {
            slot.service = Some(service);
        }
    }

    /// Acts on how service `id`'s slice ended. Returns the result it goes on
    /// with, if it goes on at once.
    fn after_slice(&mut self, id: ServiceId, outcome: SliceOutcome) -> Option<i32> {
        match outcome {
            SliceOutcome::Preempted => self.sched.preempted(id),
            // Made (and counted) in place; the caller is parked already.
            SliceOutcome::Syscall(Syscall::AwaitReply) => {}
            SliceOutcome::Syscall(syscall) => {
                self.count_syscall(id);
                match self.syscall(id, syscall) {
                    Then::Continue(result) => return Some(result),
                    Then::Block => {}
                }
            }
            SliceOutcome::Handled { upcall, reply } => return self.handled(id, upcall, reply),
            SliceOutcome::Exited(status) => {
                let name = self.name_of(id).to_string();
                self.sched.end(id, ServiceState::Exited);
                self.summary.exited += 1;
                let outcome = if status == 0 {
                    self.log(&format!("service {name} exited"));
                    Outcome::Exited
                } else {
                    self.log(&format!("service {name} exited with status {status}"));
                    Outcome::Failed(status)
                };
                self.ended(id, outcome);
                self.free_the_supervisor();
            }
            SliceOutcome::Faulted(reason) => {
                if let Some(slot) = self.services.get_mut(id) {
                    slot.stats.faults = slot.stats.faults.saturating_add(1);
                }
                self.sched
                    .record(atoll_abi::trace::Kind::Fault, id, usize::MAX, 0, 0);
                let name = self.name_of(id).to_string();
                self.sched.end(id, ServiceState::Faulted(reason.clone()));
                self.summary.faulted += 1;
                self.log(&format!("service {name} faulted: {reason}"));
                self.ended(id, Outcome::Faulted(reason));
                self.free_the_supervisor();
            }
        }
        None
    }

    /// The endpoint behind `handle` of service `id`, if the handle is real and
    /// allows what is asked (`provider`: receive).
    pub(super) fn endpoint_of(
        &self,
        id: ServiceId,
        handle: i32,
        provider: bool,
    ) -> Result<usize, Error> {
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
            Syscall::Send { handle, message } => {
                self.send(id, handle, messages::Bytes::Kernel(message))
            }
            Syscall::Call {
                handle,
                message,
                reply,
            } => self.call(id, handle, messages::Bytes::Kernel(message), reply),
            Syscall::Receive {
                handle,
                buffer,
                info,
                timeout_ns,
            } => self.receive(id, handle, buffer, info, timeout_ns),
            Syscall::Reply { token, message } => self.reply(id, token, &message),
            Syscall::ReplyReceive {
                token,
                message,
                status,
                handle,
                buffer,
                info,
                timeout_ns,
            } => {
                // Counted as the two calls it makes, as on the fast path.
                self.count_syscall(id);
                let replied = self
                    .reply(id, token, &message)
                    .map_or_else(Error::code, |_| 0);
                // Checked writable by the host function; memory never shrinks.
                if let Some(service) = self
                    .services
                    .get_mut(id)
                    .and_then(|slot| slot.service.as_mut())
                {
                    let _ = service.write_memory(status, &replied.to_le_bytes());
                }
                let timeout_ns = crate::host::receive_timeout_after(replied, timeout_ns);
                self.receive(id, handle, buffer, info, timeout_ns)
            }
            Syscall::AwaitReply => return Then::Block,
            Syscall::Control { op, name } => self.control(id, op, &name),
            Syscall::Swap { name, module } => self.swap_request(id, &name, module),
            Syscall::Info {
                kind,
                index,
                buffer,
            } => self.info(id, kind, index, buffer),
            Syscall::Sleep { ns } => {
                // From this entry's time, which is after the service's call.
                let deadline = self.sched.now().saturating_add(ns);
                self.block(id, Wait::Sleep { deadline });
                return Then::Block;
            }
        };
        match result {
            Ok(then) => then,
            Err(error) => Then::Continue(error.code()),
        }
    }

    pub(super) fn name_of(&self, id: ServiceId) -> &str {
        self.services
            .get(id)
            .map_or("?", |slot| slot.image.name.as_str())
    }

    /// Logs `system ready` once, as soon as every loaded service has had the CPU.
    fn announce_ready_once(&mut self) {
        if self.announced_ready || self.started < self.services.len() {
            return;
        }
        self.announced_ready = true;
        self.log(&format!("system ready ({} services)", self.services.len()));
    }

    pub(super) fn log(&self, message: &str) {
        self.platform.console_write(&format!("atoll: {message}\n"));
    }
}

/// How often the host control channel is polled while services run.
const CONTROL_POLL_NS: u64 = 1_000_000;

/// The most bytes all queues together may hold.
pub const MAX_MESSAGE_BUDGET: usize = 64 * 1024 * 1024;

/// What a queued message costs against the budget: the buffer holding its
/// bytes (a reused buffer may be larger than the message) plus bookkeeping.
/// A queued message's buffer never changes, so what is added at `enqueue` is
/// what is taken off when it leaves.
fn message_cost(message: &Message) -> usize {
    kernel_message_cost(&message.data)
}

/// What a message with `data` costs the budget and the heap.
fn kernel_message_cost(data: &Vec<u8>) -> usize {
    data.capacity() + core::mem::size_of::<Message>()
}

impl Core {
    /// The service called `name`, if any.
    fn service_named(&self, name: &str) -> Option<ServiceId> {
        self.services
            .iter()
            .position(|slot| slot.image.name == name)
    }

    /// Where the kernel's own messages to service `id` (interrupts, the
    /// supervisor's reports) go: its first endpoint, if it provides it.
    fn inbox(&self, id: ServiceId) -> Option<usize> {
        let handle = self.services.get(id)?.handles.first()?;
        handle.provider.then_some(handle.endpoint)
    }

    /// Queues `data` from the kernel on `endpoint`, counted in the message
    /// budget (never refused by it). Returns whether it was queued.
    fn queue_from_kernel(&mut self, endpoint: usize, data: Vec<u8>) -> bool {
        let message = Message {
            sender: KERNEL_SENDER as ServiceId,
            data,
            token: 0,
        };
        let cost = message_cost(&message);
        let Some(queue) = self.endpoints.get_mut(endpoint) else {
            return false;
        };
        let queued = queue.push_from_kernel(message).is_ok();
        if queued {
            self.queued_bytes += cost;
        }
        queued
    }
}

#[cfg(test)]
mod test_hooks;
