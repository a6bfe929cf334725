//! One service: a Wasm instance (with its WASI shim's, for a WASI program)
//! in a `Store` of its own, over its program's `Engine`.
//!
//! A service's [`Program`] (its compiled module, in an `Engine` of its own) is
//! kept for the service's life: a restart instantiates it again in a fresh
//! `Store`, so it compiles nothing, and dropping the old `Store` frees
//! everything the old instance held. (An `Engine` never frees code it
//! compiled, which is why programs do not share one: a hot swap drops the
//! old program with its `Engine` when the probation ends.) The interpreter
//! counts fuel, so a service runs for at most its slice before it is
//! suspended and the scheduler moves on; a suspended call lives on the heap
//! and needs no kernel stack.

use crate::Platform;
use crate::grants::{DmaPool, Resolved};
use crate::guest::GuestSlice;
use crate::heap::{Claim, Heap, INTERPRETER_STACK_BYTES};
use crate::host::{HostState, Limiter, Messages, Switch, Syscall};
use crate::ipc::ServiceId;
use crate::loader::{LoadError, MAX_TABLE_ELEMENTS, Program};
use alloc::rc::Weak;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::bundle::ServiceLimits;
use atoll_abi::{
    ENTRY_POINT, Error, HANDLER_DECLINED, HANDLER_DEFERRED, HANDLER_EXPORT, MAX_MESSAGE_LEN,
    MEMORY_EXPORT,
};
use core::cell::RefCell;
use wasmi::{
    Instance, Memory, Store, StoreLimitsBuilder, TypedFunc, TypedResumableCall,
    TypedResumableCallHostTrap, TypedResumableCallOutOfFuel, Val,
};

/// Fuel a module's start function may burn during instantiation. A start function
/// cannot be preempted (it runs before the service exists), so it gets a fixed
/// budget and faults when it exceeds it.
pub const START_FUEL: u64 = 10_000_000;

/// What it takes to start a service, kept for its restarts.
#[derive(Clone)]
pub struct Image {
    pub name: String,
    pub program: Arc<Program>,
    pub limits: ServiceLimits,
    /// The endpoints the service provides, then those it uses: handle `h`
    /// names entry `h - 1`.
    pub endpoint_names: Vec<String>,
    /// WASI `args_get` and `environ_get` (`KEY=value`) strings.
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// WASI preopened directories, resolved to handles.
    pub(crate) preopens: Vec<atoll_abi::startup::Preopen>,
    /// WASI listening sockets, resolved to handles.
    pub(crate) listeners: Vec<atoll_abi::startup::Listener>,
    pub grants: Arc<Resolved>,
}

/// What one slice of CPU time ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum SliceOutcome {
    /// The slice's fuel ran out; the service is still runnable.
    Preempted,
    /// The service made a kernel call; resume it with the call's result.
    Syscall(Syscall),
    /// The entry point returned (status 0) or the service called WASI
    /// `proc_exit` with this status.
    Exited(i32),
    /// The service trapped, with the interpreter's reason.
    Faulted(String),
    /// Its handler returned from `upcall`: `reply` (checked to lie in its
    /// memory and to be at most a message long) answers the call, or
    /// `None` ([`atoll_abi::HANDLER_DEFERRED`]) leaves it open. Either way
    /// the service is back in the `receive` the upcall stood in for.
    Handled {
        upcall: Upcall,
        reply: Option<GuestSlice>,
    },
}

/// A call handed to a server's handler export in place of resuming the
/// `receive` it waits in: the call's token, and that `receive`'s endpoint,
/// buffer and info record (it waited without a timeout), to wait in again
/// once the handler returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upcall {
    pub token: u32,
    pub endpoint: usize,
    pub buffer: GuestSlice,
    pub info: GuestSlice,
    /// What the `receive` returned: the message's length.
    pub received: i32,
    /// The caller's reply buffer's length (an answer longer than it is
    /// answered with `BufferTooSmall`).
    pub reply_cap: i32,
}

/// Where a handler's call stands between slices.
enum Handling {
    /// To be called with what the `receive` returned.
    NotStarted,
    OutOfFuel(TypedResumableCallOutOfFuel<i64>),
    InSyscall(TypedResumableCallHostTrap<i64>),
}

/// Where the entry-point call stands between slices.
enum Suspended {
    NotStarted,
    OutOfFuel(TypedResumableCallOutOfFuel<()>),
    InSyscall(TypedResumableCallHostTrap<()>),
    Finished,
}

/// A loaded service: its Wasm instance and the state of its entry-point call.
pub struct Service {
    fuel_slice: u64,
    fuel_used: u64,
    /// Fuel the instruction the service was preempted at needs, when that is
    /// more than a slice (e.g. a large `memory.grow` or `memory.fill`).
    fuel_required: u64,
    store: Store<HostState>,
    entry: TypedFunc<(), ()>,
    /// The memory the ABI's functions work on: the service's own, or for a
    /// WASI program its shim's (where the shim's calls and replies are).
    memory: Memory,
    /// The program's own memory (the same as `memory` but for a WASI
    /// program): its state handoff's.
    program_memory: Memory,
    /// A WASI program (with its shim).
    wasi: bool,
    instance: Instance,
    suspended: Suspended,
    /// Its [`atoll_abi::HANDLER_EXPORT`], if it exports it with its type
    /// and has not declined a call.
    handler: Option<TypedFunc<(i32, i32), i64>>,
    /// The heap's room for the handler's interpreter stack (its call runs
    /// beside the entry point's suspended one, on a stack of its own),
    /// claimed at the first upcall and kept, as wasmi keeps the stack.
    handler_stack: Option<Claim>,
    /// The upcall in progress: it runs instead of the entry point's call
    /// (suspended in `receive` meanwhile) until it returns.
    handling: Option<(Handling, Upcall)>,
    /// This interpreter's share of the heap's stack headroom (released when
    /// the service is dropped, after its Store).
    _claim: Claim,
}

/// The hot-swap state handoff exports, and the most state a swap carries.
pub use atoll_abi::handoff::{
    MAX_STATE_LEN, STATE_ALLOC_EXPORT, STATE_RESTORE_EXPORT, STATE_SAVE_EXPORT,
};
/// A new version's `atoll_state_alloc(len) -> ptr`.
type StateAlloc = TypedFunc<i32, i32>;
/// A new version's `atoll_state_restore(ptr, len)`.
type StateRestore = TypedFunc<(i32, i32), ()>;

/// Fuel for each state-handoff call.
const STATE_FUEL: u64 = 10_000_000;

impl Service {
    /// Instantiates `image`'s program in a fresh `Store` and runs its start
    /// function: compiles nothing.
    pub fn start(
        image: &Image,
        platform: Arc<dyn Platform>,
        heap: &Arc<Heap>,
    ) -> Result<Service, LoadError> {
        let claim = heap
            .claim(INTERPRETER_STACK_BYTES)
            .map_err(|_| LoadError::OutOfMemory)?;
        // A WASI program is two instances, each with its memory: the
        // program's and its shim's.
        let instances = if image.program.shim.is_some() { 2 } else { 1 };
        let limits = StoreLimitsBuilder::new()
            .memory_size(image.limits.memory_bytes as usize)
            .instances(instances)
            .memories(instances)
            .tables(instances)
            .table_elements(MAX_TABLE_ELEMENTS as usize)
            .build();
        let startup = startup_record(image, platform.as_ref())?;
        let state = HostState {
            kernel: None,
            switch: None,
            name: image.name.clone(),
            platform,
            heap: Arc::clone(heap),
            endpoint_names: image.endpoint_names.clone(),
            pending: None,
            startup,
            output: [Vec::new(), Vec::new()],
            fuel_debt: 0,
            driver: crate::grants::DriverState {
                grants: Arc::clone(&image.grants),
                dma: DmaPool::default(),
            },
            limiter: Limiter {
                limits,
                heap: Arc::clone(heap),
                memory_limit: image.limits.memory_bytes as usize,
                memory_total: 0,
                memory_total_before: 0,
                heap_refused: false,
            },
            memory: None,
            program_memory: None,
        };
        let mut store = Store::new(image.program.module.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_fuel(START_FUEL).map_err(LoadError::Instantiate)?;
        let instance = match &image.program.shim {
            None => image
                .program
                .linker
                .instantiate_and_start(&mut store, &image.program.module)
                .map_err(|error| instantiation_failed(&store, error))?,
            Some((shim, linker)) => {
                // The shim first (the ABI's functions work on its memory),
                // then the program, its WASI imports bound to the shim's
                // exports of the same names (the loader checked they exist).
                let shim = linker
                    .instantiate_and_start(&mut store, shim)
                    .map_err(|error| instantiation_failed(&store, error))?;
                let shim_memory = shim
                    .get_memory(&store, MEMORY_EXPORT)
                    .ok_or(LoadError::MissingMemory)?;
                store.data_mut().memory = Some(shim_memory);
                let imports = image
                    .program
                    .module
                    .imports()
                    .map(|import| {
                        shim.get_export(&store, import.name())
                            .ok_or(LoadError::NoWasiShim)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                wasmi::Instance::new(&mut store, &image.program.module, &imports)
                    .map_err(|error| instantiation_failed(&store, error))?
            }
        };
        let entry = instance
            .get_typed_func::<(), ()>(&store, ENTRY_POINT)
            .map_err(|_| LoadError::MissingEntryPoint)?;
        let program_memory = instance
            .get_memory(&store, MEMORY_EXPORT)
            .ok_or(LoadError::MissingMemory)?;
        let memory = match store.data().memory {
            Some(shim_memory) => shim_memory,
            None => program_memory,
        };
        store.data_mut().memory = Some(memory);
        store.data_mut().program_memory = Some(program_memory);
        // A WASI program's calls go to its shim's loop, never by upcall.
        let handler = (image.program.shim.is_none() && !cfg!(feature = "no-upcall"))
            .then(|| {
                instance
                    .get_typed_func::<(i32, i32), i64>(&store, HANDLER_EXPORT)
                    .ok()
            })
            .flatten();
        Ok(Service {
            handler,
            handler_stack: None,
            handling: None,
            instance,
            fuel_slice: image.limits.fuel_slice.max(1),
            fuel_used: 0,
            fuel_required: 0,
            store,
            entry,
            memory,
            program_memory,
            wasi: image.program.shim.is_some(),
            suspended: Suspended::NotStarted,
            _claim: claim,
        })
    }

    /// Links the service's host functions to the kernel that runs it as
    /// service `id`, so that kernel calls that need not block complete in
    /// place.
    pub(crate) fn connect<K: Messages + 'static>(&mut self, id: ServiceId, kernel: Weak<RefCell<K>>)
    where
        RefCell<K>: Switch,
    {
        let state = self.store.data_mut();
        state.switch = Some(kernel.clone());
        state.kernel = Some((id, kernel));
    }

    /// Takes the service's DMA buffers (to hand them to its next version).
    pub fn take_dma(&mut self) -> DmaPool {
        core::mem::take(&mut self.store.data_mut().driver.dma)
    }

    /// Gives the service DMA buffers of its previous version.
    pub fn put_dma(&mut self, pool: DmaPool) {
        self.store.data_mut().driver.dma = pool;
    }

    /// Bytes of DMA memory the service holds.
    #[must_use]
    pub fn dma_bytes(&self) -> usize {
        self.store.data().driver.dma.bytes()
    }

    /// Fuel burnt so far by the entry point (excludes the start function).
    #[must_use]
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    /// Current size of the service's linear memory in bytes (with its WASI
    /// shim's, for a WASI program).
    #[must_use]
    pub fn memory_size(&self) -> usize {
        let shim = if self.wasi {
            self.memory.data(&self.store).len()
        } else {
            0
        };
        self.program_memory.data(&self.store).len() + shim
    }

    /// The bytes of `slice` in the service's memory, if it lies inside it and
    /// is at most `max` long.
    pub fn read_memory(&self, slice: GuestSlice, max: usize) -> Result<&[u8], Error> {
        slice.read(self.memory.data(&self.store), max)
    }

    /// The bytes of `slice` in the program's own memory (for a WASI program,
    /// not its shim's).
    #[cfg(test)]
    pub(crate) fn read_program_memory(&self, slice: GuestSlice) -> Result<&[u8], Error> {
        slice.read(self.program_memory.data(&self.store), usize::MAX)
    }

    /// Charges the service for copying `bytes` bytes on its behalf in the
    /// kernel (as `memory.copy` is charged). Fuel that runs out here preempts
    /// it at its next instruction.
    pub fn charge_copy(&mut self, bytes: usize) {
        let fuel = bytes as u64 / crate::host::BYTES_PER_FUEL;
        let left = self.store.get_fuel().unwrap_or(0);
        let _ = self.store.set_fuel(left.saturating_sub(fuel));
        // Counted here: the slice's own count starts after the kernel call.
        self.fuel_used = self.fuel_used.saturating_add(fuel.min(left));
        let state = self.store.data_mut();
        state.fuel_debt = state.fuel_debt.saturating_add(fuel.saturating_sub(left));
    }

    /// Copies `bytes` to the start of `target` in the service's memory, after
    /// checking `target` lies inside it and holds `bytes`.
    pub fn write_memory(&mut self, target: GuestSlice, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > target.len() {
            return Err(Error::BufferTooSmall);
        }
        target.put(self.memory.data_mut(&mut self.store), bytes)
    }

    /// Writes a message into `buffer` and its receive-info `record` into
    /// `info`, as its `receive` asked, with one lookup of its memory (the
    /// message path's). The message may be written when the record fails.
    pub fn write_received(
        &mut self,
        (buffer, info): (GuestSlice, GuestSlice),
        bytes: &[u8],
        record: &[u8],
    ) -> Result<(), Error> {
        if bytes.len() > buffer.len() || record.len() > info.len() {
            return Err(Error::BufferTooSmall);
        }
        let memory = self.memory.data_mut(&mut self.store);
        buffer.put(memory, bytes)?;
        info.put(memory, record)
    }

    /// Asks the service for its state through [`STATE_SAVE_EXPORT`]. `None` if
    /// it exports no such function. Runs beside a suspended entry-point call,
    /// with a fuel budget of its own; the slice's fuel is put back after.
    pub fn save_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        let Some(save) = self.save_export() else {
            return Ok(None);
        };
        let packed: i64 = self.with_fuel(|store| save.call(store, ()))?;
        let packed = packed.cast_unsigned();
        let slice = GuestSlice::new((packed >> 32) as u32 as i32, packed as u32 as i32);
        let memory = self.program_memory.data(&self.store);
        let state = slice
            .read(memory, MAX_STATE_LEN)
            .map_err(|error| alloc::format!("saved state: {error}"))?;
        let copy = self
            .store
            .data()
            .heap
            .copy(state)
            .map_err(|error| alloc::format!("saved state: {error}"))?;
        Ok(Some(copy))
    }

    /// Hands `state` to the service through [`STATE_ALLOC_EXPORT`] and
    /// [`STATE_RESTORE_EXPORT`], before it starts. `false` if it exports them not.
    pub fn restore_state(&mut self, state: &[u8]) -> Result<bool, String> {
        let Some((alloc, restore)) = self.restore_exports() else {
            return Ok(false);
        };
        let len = i32::try_from(state.len()).map_err(|_| "state too large".to_string())?;
        let ptr = self.with_fuel(|store| alloc.call(store, len))?;
        GuestSlice::new(ptr, len)
            .put(self.program_memory.data_mut(&mut self.store), state)
            .map_err(|error| alloc::format!("state buffer: {error}"))?;
        self.with_fuel(|store| restore.call(store, (ptr, len)))?;
        Ok(true)
    }

    /// Whether it exports [`STATE_SAVE_EXPORT`], so that a swap hands its
    /// state to the next version.
    pub fn saves_state(&self) -> bool {
        self.save_export().is_some()
    }

    /// The service's [`STATE_SAVE_EXPORT`], if it exports it with its
    /// signature.
    fn save_export(&self) -> Option<TypedFunc<(), i64>> {
        (self.instance)
            .get_typed_func::<(), i64>(&self.store, STATE_SAVE_EXPORT)
            .ok()
    }

    /// Whether a growth of its memories or tables was refused because the
    /// kernel heap could not hold it (so a failure that followed is out of
    /// memory, not the service's fault).
    pub fn heap_refused_growth(&self) -> bool {
        self.store.data().limiter.heap_refused
    }

    /// Asks a new version, when its swap is asked for (before the quiescent
    /// point), for a one-byte state buffer that it never gets back: the first
    /// allocation of its allocator, which grows its memory, then happens
    /// outside the swap's pause, where it was most of it (docs/benchmarks.md,
    /// "The new version's first allocation, before the pause"). A version
    /// without the handoff exports is left alone.
    pub fn warm_state_buffer(&mut self) -> Result<(), String> {
        let Some((alloc, _)) = self.restore_exports() else {
            return Ok(());
        };
        self.with_fuel(|store| alloc.call(store, 1)).map(|_| ())
    }

    /// The service's [`STATE_ALLOC_EXPORT`] and [`STATE_RESTORE_EXPORT`],
    /// if it exports both with their signatures.
    fn restore_exports(&self) -> Option<(StateAlloc, StateRestore)> {
        let alloc = self
            .instance
            .get_typed_func::<i32, i32>(&self.store, STATE_ALLOC_EXPORT)
            .ok()?;
        let restore = self
            .instance
            .get_typed_func::<(i32, i32), ()>(&self.store, STATE_RESTORE_EXPORT)
            .ok()?;
        Some((alloc, restore))
    }

    /// Runs `call` with the state-handoff fuel budget, then restores the fuel
    /// the service had.
    fn with_fuel<R>(
        &mut self,
        call: impl FnOnce(&mut Store<HostState>) -> Result<R, wasmi::Error>,
    ) -> Result<R, String> {
        let fuel = self.store.get_fuel().unwrap_or(0);
        self.store
            .set_fuel(STATE_FUEL)
            .map_err(|error| error.to_string())?;
        let result = call(&mut self.store).map_err(|error| error.to_string());
        let _ = self.store.set_fuel(fuel);
        // A handoff export that made a kernel call (or exited) failed: the
        // call is not performed, and must not linger for the entry point's
        // next suspension to pick up.
        let state = self.store.data_mut();
        state.pending = None;
        result
    }

    /// Runs the service until its fuel runs out, it makes a kernel call, or it
    /// ends. `syscall_result` is the result of the kernel call it is suspended
    /// in, if it is. `fresh` starts a new slice; otherwise the service goes on
    /// with the fuel left from before the kernel call, so that making kernel
    /// calls never extends a slice.
    pub fn run_slice(&mut self, syscall_result: i32, fresh: bool) -> SliceOutcome {
        let outcome = self.run(syscall_result, fresh);
        if matches!(outcome, SliceOutcome::Exited(_) | SliceOutcome::Faulted(_)) {
            // A WASI program's last line, if it did not end it.
            crate::host::shim::flush_output(self.store.data_mut());
        }
        outcome
    }

    /// [`Service::run_slice`] but for the output left at the end.
    fn run(&mut self, syscall_result: i32, fresh: bool) -> SliceOutcome {
        // A slice always covers the instruction the service stopped at, or an
        // instruction costing more than a slice could never run.
        if fresh {
            // Only the slice that resumes the costly instruction is larger.
            let slice = self
                .fuel_slice
                .max(core::mem::take(&mut self.fuel_required));
            // Debt for kernel work comes off the top (a slice may go wholly
            // to it: the service runs again once the debt is paid).
            let debt = &mut self.store.data_mut().fuel_debt;
            let paid = (*debt).min(slice);
            *debt -= paid;
            self.fuel_used = self.fuel_used.saturating_add(paid);
            if let Err(error) = self.store.set_fuel(slice - paid) {
                return self.fault(error.to_string());
            }
        }
        let mut syscall_result = syscall_result;
        if let Some((handling, upcall)) = self.handling.take() {
            match self.run_handler(handling, syscall_result, upcall) {
                Ok(outcome) => return outcome,
                // Declined: the `receive` returns what it received.
                Err(received) => syscall_result = received,
            }
        }
        let fuel_before = self.store.get_fuel().unwrap_or(0);
        let result = match core::mem::replace(&mut self.suspended, Suspended::Finished) {
            Suspended::NotStarted => self.entry.call_resumable(&mut self.store, ()),
            Suspended::OutOfFuel(call) => call.resume(&mut self.store),
            Suspended::InSyscall(call) => call.resume(&mut self.store, &[Val::I32(syscall_result)]),
            Suspended::Finished => return SliceOutcome::Faulted("resumed after its end".into()),
        };
        let remaining = self.store.get_fuel().unwrap_or(0);
        self.fuel_used = self
            .fuel_used
            .saturating_add(fuel_before.saturating_sub(remaining));
        match result {
            Ok(TypedResumableCall::Finished(())) => SliceOutcome::Exited(0),
            Ok(TypedResumableCall::OutOfFuel(call)) => {
                self.fuel_required = call.required_fuel();
                self.suspended = Suspended::OutOfFuel(call);
                SliceOutcome::Preempted
            }
            Ok(TypedResumableCall::HostTrap(call)) => {
                if let Some(status) = call.host_error().i32_exit_status() {
                    return self.exit(status);
                }
                match self.store.data_mut().pending.take() {
                    Some(syscall) => {
                        self.suspended = Suspended::InSyscall(call);
                        SliceOutcome::Syscall(syscall)
                    }
                    None => self.fault(call.host_error().to_string()),
                }
            }
            // `proc_exit` tail-called from the root frame (`_start` doing
            // `return_call`) cannot be resumed: the interpreter ends the call
            // with the exit trap instead of a resumable one. It is still an exit.
            Err(error) => match error.i32_exit_status() {
                Some(status) => self.exit(status),
                None => self.fault(error.to_string()),
            },
        }
    }

    /// Hands the call `upcall` (received into the buffers of the `receive`
    /// the service waits in) to its handler export, which runs in place of
    /// that `receive` from the service's next slice. `false`: it has no
    /// handler, or is in one already (a handler waiting in a `receive` of
    /// its own gets the message from it), or the heap has no room for the
    /// handler's interpreter stack.
    pub fn begin_upcall(&mut self, upcall: Upcall) -> bool {
        if self.handler.is_none() || self.handling.is_some() {
            return false;
        }
        if self.handler_stack.is_none() {
            let heap = Arc::clone(&self.store.data().heap);
            match heap.claim(INTERPRETER_STACK_BYTES) {
                Ok(claim) => self.handler_stack = Some(claim),
                Err(_) => return false,
            }
        }
        self.handling = Some((Handling::NotStarted, upcall));
        true
    }

    /// Runs (or resumes, with `syscall_result`) the handler's call.
    /// `Err(received)`: it declined the message, which its `receive` then
    /// returns.
    fn run_handler(
        &mut self,
        handling: Handling,
        syscall_result: i32,
        upcall: Upcall,
    ) -> Result<SliceOutcome, i32> {
        let fuel_before = self.store.get_fuel().unwrap_or(0);
        let result = match (handling, self.handler) {
            (Handling::NotStarted, Some(handler)) => {
                handler.call_resumable(&mut self.store, (upcall.received, upcall.reply_cap))
            }
            (Handling::NotStarted, None) => return Err(upcall.received),
            (Handling::OutOfFuel(call), _) => call.resume(&mut self.store),
            (Handling::InSyscall(call), _) => {
                call.resume(&mut self.store, &[Val::I32(syscall_result)])
            }
        };
        let remaining = self.store.get_fuel().unwrap_or(0);
        self.fuel_used = self
            .fuel_used
            .saturating_add(fuel_before.saturating_sub(remaining));
        let reply = match result {
            // Declined: this instance serves with its own loop, and is not
            // asked again (a decline costs a call of the export), nor does
            // it keep the room for a handler's stack.
            Ok(TypedResumableCall::Finished(HANDLER_DECLINED)) => {
                self.handler = None;
                self.handler_stack = None;
                return Err(upcall.received);
            }
            Ok(TypedResumableCall::Finished(HANDLER_DEFERRED)) => None,
            Ok(TypedResumableCall::Finished(packed)) => {
                let packed = packed.cast_unsigned();
                let reply = GuestSlice::new((packed >> 32) as u32 as i32, packed as u32 as i32);
                let bad = packed >> 63 != 0 || self.read_memory(reply, MAX_MESSAGE_LEN).is_err();
                if bad {
                    return Ok(self.fault(alloc::format!(
                        "its handler returned {:#x}: not a reply in its memory",
                        packed
                    )));
                }
                Some(reply)
            }
            Ok(TypedResumableCall::OutOfFuel(call)) => {
                self.fuel_required = call.required_fuel();
                self.handling = Some((Handling::OutOfFuel(call), upcall));
                return Ok(SliceOutcome::Preempted);
            }
            Ok(TypedResumableCall::HostTrap(call)) => {
                if let Some(status) = call.host_error().i32_exit_status() {
                    return Ok(self.exit(status));
                }
                return Ok(match self.store.data_mut().pending.take() {
                    Some(syscall) => {
                        self.handling = Some((Handling::InSyscall(call), upcall));
                        SliceOutcome::Syscall(syscall)
                    }
                    None => self.fault(call.host_error().to_string()),
                });
            }
            Err(error) => {
                return Ok(match error.i32_exit_status() {
                    Some(status) => self.exit(status),
                    None => self.fault(error.to_string()),
                });
            }
        };
        Ok(SliceOutcome::Handled { upcall, reply })
    }

    fn exit(&mut self, status: i32) -> SliceOutcome {
        self.suspended = Suspended::Finished;
        SliceOutcome::Exited(status)
    }

    fn fault(&mut self, reason: String) -> SliceOutcome {
        self.suspended = Suspended::Finished;
        SliceOutcome::Faulted(reason)
    }
}

/// The state handoff of a hot swap, for a driver: `new` restores `state`
/// (if any) holding the DMA pool of `old`, so that buffers it allocates count
/// against the same budget and join the pool the kernel keeps until bus
/// mastering is off. On success the pool stays with `new`; on failure it goes
/// back to `old`, with what the restore allocated retired.
pub fn restore_with_dma(
    old: &mut Service,
    new: &mut Service,
    state: Option<&[u8]>,
) -> Result<(), alloc::string::String> {
    let mut pool = old.take_dma();
    pool.begin_restore();
    new.put_dma(pool);
    let result = match state {
        Some(state) => new.restore_state(state).map(|_| ()),
        None => Ok(()),
    };
    let mut pool = new.take_dma();
    pool.end_restore(result.is_ok());
    if result.is_ok() {
        new.put_dma(pool);
    } else {
        old.put_dma(pool);
    }
    result
}

/// Why instantiating (or running a start function) failed: out of memory if
/// the kernel heap refused a growth on the way (a start function that traps
/// on a refused `memory.grow` is not at fault), else the interpreter's error.
fn instantiation_failed(store: &Store<HostState>, error: wasmi::Error) -> LoadError {
    if store.data().limiter.heap_refused {
        LoadError::OutOfMemory
    } else {
        LoadError::Instantiate(error)
    }
}

/// The service's [`atoll_abi::startup::Startup`] record, encoded: its
/// description, and a seed (new at every start: never 0, and different for
/// services started at the same instant).
fn startup_record(image: &Image, platform: &dyn Platform) -> Result<Arc<[u8]>, LoadError> {
    let record = atoll_abi::startup::Startup {
        args: image.args.clone(),
        env: image.env.clone(),
        preopens: image.preopens.clone(),
        listeners: image.listeners.clone(),
        boot_wall_clock_ns: platform.boot_wall_clock_ns(),
        random_seed: crate::host::seed(platform.random_seed(), &image.name),
    };
    postcard::to_allocvec(&record)
        .map(Arc::from)
        .map_err(|_| LoadError::OutOfMemory)
}
