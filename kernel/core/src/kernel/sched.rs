//! The scheduler: the one place where a service's state, its deadline and the
//! run queue change. Its fields are private, so these invariants hold by
//! construction, not by convention:
//!
//! - a service is [`ServiceState::Ready`] exactly when it is in the run queue
//!   (once) or on the CPU;
//! - it has a timer exactly when it is blocked with a deadline, and the timer
//!   is that deadline;
//! - a service resumes with the value it was woken with (0 after a start).
//!
//! Scheduling is round robin over the FIFO run queue; each turn is at most one
//! fuel slice (the kernel's loop, `Kernel::run`). Deadlines sit in an ordered
//! set, so the next one is found in O(log n).
//!
//! Because every state change passes through here, this is also where time
//! spent blocked is counted (by reason) and where block and wake events enter
//! the trace ring, which the scheduler holds for the kernel ([`crate::trace`]).

use crate::Platform;
use crate::guest::GuestSlice;
use crate::ipc::ServiceId;
use crate::trace::Trace;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::trace::{BLOCK_RECEIVE, BLOCK_REPLY, BLOCK_SLEEP, KERNEL_PEER, Kind};

/// Where a service is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Runnable, in the run queue.
    Ready,
    /// Parked until an event.
    Blocked(Wait),
    /// Returned from its entry point (or called WASI `proc_exit`).
    Exited,
    /// Stopped by a trap, with the reason.
    Faulted(String),
    /// Stopped by the supervisor, or for good.
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

impl Wait {
    /// What it waits for, as a trace record and the blocked-time counters
    /// name it.
    fn reason(&self) -> u32 {
        match self {
            Wait::Receive { .. } => BLOCK_RECEIVE,
            Wait::Reply { .. } => BLOCK_REPLY,
            Wait::Sleep { .. } => BLOCK_SLEEP,
        }
    }

    fn deadline(&self) -> Option<u64> {
        match self {
            Wait::Receive { deadline, .. } => *deadline,
            Wait::Sleep { deadline } => Some(*deadline),
            Wait::Reply { .. } => None,
        }
    }
}

pub(super) struct Scheduler {
    states: Vec<ServiceState>,
    /// What each service resumes with when it next runs.
    resume: Vec<i32>,
    run_queue: VecDeque<ServiceId>,
    /// The ready service taken off the run queue to run.
    running: Option<ServiceId>,
    timers: BTreeSet<(u64, ServiceId)>,
    /// The platform clock, for blocked time and trace records.
    clock: Arc<dyn Platform>,
    /// The clock as read once in the current kernel entry ([`Scheduler::now`]),
    /// `None` until the entry first needs it.
    entry_now: Option<u64>,
    /// When each blocked service blocked.
    blocked_since: Vec<u64>,
    /// Nanoseconds each service spent blocked, by [`Wait::reason`].
    blocked_ns: Vec<[u64; 3]>,
    trace: Trace,
}

impl Scheduler {
    pub(super) fn new(clock: Arc<dyn Platform>) -> Scheduler {
        Scheduler {
            states: Vec::new(),
            resume: Vec::new(),
            run_queue: VecDeque::new(),
            running: None,
            timers: BTreeSet::new(),
            clock,
            entry_now: None,
            blocked_since: Vec::new(),
            blocked_ns: Vec::new(),
            trace: Trace::default(),
        }
    }

    /// Starts a kernel entry (a host function's way in, the end of a slice,
    /// a turn of the run loop): the next [`Scheduler::now`] reads the clock
    /// afresh.
    pub(super) fn enter(&mut self) {
        self.entry_now = None;
    }

    /// The time of the current kernel entry: the clock, read at most once
    /// per entry. Every state change and trace record of one entry (a `call`
    /// blocks its caller and wakes the server; a turn wakes the services
    /// whose deadlines passed) is stamped with it: a read of the clock is
    /// dear (docs/benchmarks.md, "One clock reading per kernel entry").
    /// Entries follow one another (the kernel is borrowed for each), so the
    /// times never go back.
    pub(super) fn now(&mut self) -> u64 {
        *self.entry_now.get_or_insert_with(|| self.clock.now_ns())
    }

    /// Adds a service, ready to run. Returns its id.
    pub(super) fn add(&mut self) -> ServiceId {
        let id = self.states.len();
        self.states.push(ServiceState::Ready);
        self.resume.push(0);
        self.blocked_since.push(0);
        self.blocked_ns.push([0; 3]);
        self.run_queue.push_back(id);
        id
    }

    /// Nanoseconds service `id` has spent blocked in `receive`, in `call`
    /// (waiting for the reply) and in `sleep`, up to now.
    /// Includes the wait in progress: a server waiting since boot has been
    /// blocked all that time, not for 0 ns.
    pub(super) fn blocked_ns(&self, id: ServiceId) -> [u64; 3] {
        let mut totals = self.blocked_ns.get(id).copied().unwrap_or([0; 3]);
        if let Some(ServiceState::Blocked(wait)) = self.states.get(id)
            && let Some(since) = self.blocked_since.get(id).copied()
            && let Some(total) = totals.get_mut(wait.reason() as usize)
        {
            *total = total.saturating_add(self.clock.now_ns().saturating_sub(since));
        }
        totals
    }

    /// The trace ring (to turn on or off and to read).
    pub(super) fn trace(&mut self) -> &mut Trace {
        &mut self.trace
    }

    pub(super) fn trace_ref(&self) -> &Trace {
        &self.trace
    }

    /// Records an event in the trace ring if tracing is on, at the entry's
    /// time.
    #[inline]
    pub(super) fn record(
        &mut self,
        kind: Kind,
        service: ServiceId,
        peer: usize,
        token: u32,
        detail: u32,
    ) {
        if self.trace.is_on() {
            let now = self.now();
            self.trace
                .record(|| now, kind, service, peer, token, detail);
        }
    }

    pub(super) fn state(&self, id: ServiceId) -> Option<&ServiceState> {
        self.states.get(id)
    }

    /// Every service's state, by id.
    pub(super) fn states(&self) -> impl Iterator<Item = &ServiceState> {
        self.states.iter()
    }

    /// Whether service `id` exists and has neither ended nor been stopped.
    pub(super) fn is_live(&self, id: ServiceId) -> bool {
        matches!(
            self.states.get(id),
            Some(ServiceState::Ready | ServiceState::Blocked(_))
        )
    }

    /// Whether service `id` waits for the reply to `token`.
    pub(super) fn awaits_reply(&self, id: ServiceId, token: u32) -> bool {
        matches!(self.states.get(id), Some(ServiceState::Blocked(Wait::Reply { token: waited })) if *waited == token)
    }

    /// Services blocked for ever (when nothing else can run).
    pub(super) fn blocked(&self) -> usize {
        let blocked = |state: &&ServiceState| matches!(state, ServiceState::Blocked(_));
        self.states.iter().filter(blocked).count()
    }

    /// The next ready service and the value it resumes with.
    pub(super) fn next(&mut self) -> Option<(ServiceId, i32)> {
        let id = self.run_queue.pop_front()?;
        self.running = Some(id);
        Some((id, self.resume.get(id).copied().unwrap_or(0)))
    }

    /// Makes ready service `id` the running one at once, ahead of the run
    /// queue, when none runs: the server of a direct switch, then its
    /// caller again. What it resumes with; `None` if it is not ready.
    pub(super) fn run_now(&mut self, id: ServiceId) -> Option<i32> {
        if self.running.is_some() || !matches!(self.states.get(id), Some(ServiceState::Ready)) {
            return None;
        }
        // Woken just now, so usually last in the queue.
        if self.run_queue.back() == Some(&id) {
            self.run_queue.pop_back();
        } else {
            let position = self.run_queue.iter().position(|&queued| queued == id)?;
            self.run_queue.remove(position);
        }
        self.running = Some(id);
        Some(self.resume.get(id).copied().unwrap_or(0))
    }

    /// A direct switch: running service `from` blocks in `wait` and blocked
    /// service `to` takes the CPU at once, resuming with `result`. What
    /// `block`, `wake` and `run_now` do in turn, but in one step and without
    /// the run queue (which stays as it was): it is the round trip's path.
    /// `false`, changing nothing, unless `from` runs and `to` is blocked.
    pub(super) fn switch(
        &mut self,
        from: ServiceId,
        wait: Wait,
        to: ServiceId,
        result: i32,
    ) -> bool {
        if from == to
            || self.running != Some(from)
            || !matches!(self.states.get(to), Some(ServiceState::Blocked(_)))
        {
            return false;
        }
        self.set(from, ServiceState::Blocked(wait), None);
        let now = self.now();
        self.resume_now(to, result, now).is_some()
    }

    /// Makes blocked service `id` the running one at once, when none runs,
    /// to resume with `result`: `wake` then `run_now` without the run queue
    /// (the caller of a direct switch, answered). Its wait is counted as
    /// having ended at `waited_until` (the caller's, when the reply came:
    /// from there it waited for the CPU, not for the reply), its wake-up is
    /// traced now. What it resumes with; `None`, changing nothing, if it is
    /// not blocked or another runs.
    pub(super) fn resume_now(
        &mut self,
        id: ServiceId,
        result: i32,
        waited_until: u64,
    ) -> Option<i32> {
        if self.running.is_some() || !matches!(self.states.get(id), Some(ServiceState::Blocked(_)))
        {
            return None;
        }
        if let Some(resume) = self.resume.get_mut(id) {
            *resume = result;
        }
        self.set(id, ServiceState::Ready, Some(waited_until));
        Some(result)
    }

    /// Puts a service that used up its slice (and is still ready) at the back.
    pub(super) fn preempted(&mut self, id: ServiceId) {
        if self.running == Some(id) {
            self.running = None;
            self.run_queue.push_back(id);
        }
    }

    pub(super) fn has_ready(&self) -> bool {
        !self.run_queue.is_empty()
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|&(deadline, _)| deadline)
    }

    /// Parks service `id` (ready, or ended and being given back its old
    /// version) until `wait` ends.
    pub(super) fn block(&mut self, id: ServiceId, wait: Wait) {
        self.set(id, ServiceState::Blocked(wait), None);
    }

    /// Makes blocked service `id` ready to resume with `result`. Returns
    /// whether it was blocked.
    pub(super) fn wake(&mut self, id: ServiceId, result: i32) -> bool {
        if !matches!(self.states.get(id), Some(ServiceState::Blocked(_))) {
            return false;
        }
        self.start(id, result);
        true
    }

    /// Makes service `id` ready from whatever it was (a restart, a new
    /// version), to resume with `result`.
    pub(super) fn start(&mut self, id: ServiceId, result: i32) {
        if let Some(resume) = self.resume.get_mut(id) {
            *resume = result;
        }
        self.set(id, ServiceState::Ready, None);
    }

    /// Ends service `id` (`Exited`, `Faulted` or `Stopped`): off the run
    /// queue, its timer gone. Returns the state it left.
    pub(super) fn end(&mut self, id: ServiceId, state: ServiceState) -> Option<ServiceState> {
        debug_assert!(!matches!(
            state,
            ServiceState::Ready | ServiceState::Blocked(_)
        ));
        self.set(id, state, None)
    }

    /// The first service whose deadline is at or before `now`, taken off its
    /// timer, with what it resumes with: 0 after a sleep, `TimedOut` after a
    /// receive.
    pub(super) fn due(&mut self, now: u64) -> Option<(ServiceId, i32)> {
        let &(deadline, id) = self
            .timers
            .first()
            .filter(|&&(deadline, _)| deadline <= now)?;
        let result = match self.states.get(id) {
            Some(ServiceState::Blocked(Wait::Sleep { .. })) => 0,
            _ => atoll_abi::Error::TimedOut.code(),
        };
        self.timers.remove(&(deadline, id));
        Some((id, result))
    }

    /// Moves service `id` to `state`, keeping the run queue and the timers in
    /// step (`onto_cpu`: made ready, it runs at once instead of joining the
    /// run queue, only when none runs, and the wait it leaves counts as
    /// having ended at that time, if before now). Returns the state it left.
    /// Inlined: each caller moves to one kind of state, and the branches for
    /// the others fold away (a quarter of the kernel's own work on a round
    /// trip was this function's entry, exit and the state it returned).
    #[inline(always)]
    fn set(
        &mut self,
        id: ServiceId,
        state: ServiceState,
        onto_cpu: Option<u64>,
    ) -> Option<ServiceState> {
        // What the new state needs, read before it moves into the table.
        let (entered, new_deadline) = match &state {
            ServiceState::Blocked(wait) => (Some(wait.reason()), wait.deadline()),
            _ => (None, None),
        };
        let ready = matches!(state, ServiceState::Ready);
        let slot = self.states.get_mut(id)?;
        let old = core::mem::replace(slot, state);
        let (left, old_deadline) = match &old {
            ServiceState::Blocked(wait) => (Some(wait.reason()), wait.deadline()),
            _ => (None, None),
        };
        if entered.is_some() || left.is_some() {
            self.account(id, left, entered, ready, onto_cpu);
        }
        if let Some(deadline) = old_deadline {
            self.timers.remove(&(deadline, id));
        }
        if matches!(old, ServiceState::Ready) {
            if self.running == Some(id) {
                self.running = None;
            } else {
                self.run_queue.retain(|&queued| queued != id);
            }
        }
        if ready && onto_cpu.is_some() {
            self.running = Some(id);
        } else if ready {
            self.run_queue.push_back(id);
        } else if let Some(deadline) = new_deadline {
            self.timers.insert((deadline, id));
        }
        Some(old)
    }

    /// Counts the time service `id` spent blocked (`left`: why it was; until
    /// `waited_until` if given, else until now), and records its block
    /// (`entered`: why it is now) or its wake-up (`ready`) in the trace.
    #[inline(always)]
    fn account(
        &mut self,
        id: ServiceId,
        left: Option<u32>,
        entered: Option<u32>,
        ready: bool,
        waited_until: Option<u64>,
    ) {
        let now = self.now();
        let until = waited_until.map_or(now, |until| until.min(now));
        if let Some(reason) = left
            && let Some(since) = self.blocked_since.get(id).copied()
            && let Some(total) = self
                .blocked_ns
                .get_mut(id)
                .and_then(|totals| totals.get_mut(reason as usize))
        {
            *total = total.saturating_add(until.saturating_sub(since));
        }
        if let Some(reason) = entered {
            if let Some(since) = self.blocked_since.get_mut(id) {
                *since = now;
            }
            self.trace
                .record(|| now, Kind::Block, id, KERNEL_PEER.into(), 0, reason);
        } else if ready {
            let resume = self.resume.get(id).copied().unwrap_or(0);
            self.trace.record(
                || now,
                Kind::Wake,
                id,
                KERNEL_PEER.into(),
                0,
                resume.cast_unsigned(),
            );
        }
    }
}
