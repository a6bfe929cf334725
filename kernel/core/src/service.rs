//! One service: a Wasm instance in an `Engine` and `Store` of its own.
//!
//! Each service gets its own wasmi `Engine` because an `Engine` never frees the
//! code it compiled and a `Store` never frees its instances: only dropping both
//! returns a service's memory (which restarts and hot-swap will rely on). The
//! interpreter counts fuel, so a service runs for at most its slice before it is
//! suspended and the scheduler moves on; a suspended call lives on the heap and
//! needs no kernel stack.

use crate::Platform;
use crate::guest::GuestSlice;
use crate::heap::{Heap, InterpreterClaim};
use crate::host::Syscall;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::bundle::{ServiceImage, ServiceLimits};
use atoll_abi::{ENTRY_POINT, Error, IMPORT_MODULE, MEMORY_EXPORT, ValueType};
use wasmi::{
    CompilationMode, Config, EnforcedLimits, Engine, ExternType, Instance, Linker, Memory, Module,
    ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, TypedFunc, TypedResumableCall,
    TypedResumableCallHostTrap, TypedResumableCallOutOfFuel, Val, ValType,
};
// wasmi does not re-export the error type of its `ResourceLimiter` trait.
use wasmi_core::LimiterError;

/// Fuel a module's start function may burn during instantiation. A start function
/// cannot be preempted (it runs before the service exists), so it gets a fixed
/// budget and faults when it exceeds it.
pub const START_FUEL: u64 = 10_000_000;

/// What a host function sees of the service calling it.
pub(crate) struct HostState {
    pub(crate) name: String,
    pub(crate) platform: Arc<dyn Platform>,
    /// The kernel heap's admission, for what the service's calls make the
    /// kernel hold.
    pub(crate) heap: Arc<Heap>,
    /// Endpoint names in handle order: handle `h` names `endpoint_names[h - 1]`.
    pub(crate) endpoint_names: Vec<String>,
    /// The kernel call a host function has just suspended the service for.
    pub(crate) pending: Option<Syscall>,
    /// Set by WASI `proc_exit`: the service has ended with this status.
    pub(crate) exit_status: Option<i32>,
    /// WASI `args_get` and `environ_get` (`KEY=value`) strings.
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    /// WASI stubs this service has called, by index in `atoll_abi::wasi::FUNCTIONS`
    /// (each is logged once).
    pub(crate) wasi_warned: u64,
    /// Fuel charged for kernel work that the slice could not cover; paid
    /// from the next slices.
    pub(crate) fuel_debt: u64,
    /// State of the service's `random_get` generator (never 0).
    pub(crate) random: u64,
    /// Its driver grants and the DMA buffers it holds.
    pub(crate) driver: crate::driver::DriverState,
    limiter: Limiter,
}

/// The service's static limits, plus the kernel heap's admission: a memory or
/// table the heap cannot hold is refused like one over the limit
/// (`memory.grow` returns -1), never a kernel allocation failure.
struct Limiter {
    limits: StoreLimits,
    heap: Arc<Heap>,
}

/// Bytes the interpreter holds per table element (a reference, with slack).
const TABLE_ELEMENT_BYTES: usize = 16;

/// The most elements a service's table may hold.
pub const MAX_TABLE_ELEMENTS: u32 = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        // The memory is a Vec grown with `try_reserve`: while it moves, the
        // new buffer (up to twice the old one, by amortised doubling) and the
        // old one are both held.
        let needed = desired.max(current.saturating_mul(2));
        if self.heap.admit(needed).is_err() {
            return Ok(false);
        }
        self.limits.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let needed = desired
            .max(current.saturating_mul(2))
            .saturating_mul(TABLE_ELEMENT_BYTES);
        if self.heap.admit(needed).is_err() {
            return Ok(false);
        }
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Why a service could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The module exceeds a bound checked before compilation (see [`crate::preflight`]).
    Preflight(crate::preflight::PreflightError),
    /// The module is not valid Wasm or exceeds the kernel's module limits.
    Compile(wasmi::Error),
    /// The kernel heap cannot hold the compiled module and its interpreter
    /// without eating into its reserve.
    OutOfMemory,
    /// Imports that are not host functions of the ABI, every one of them:
    /// `(module, name)` in import order (never empty).
    UnknownImports(Vec<(String, String)>),
    /// An import names a host function but with another signature: `(module, name)`.
    ImportSignature(String, String),
    /// Instantiation failed (e.g. its memory exceeds the service's limit, or its
    /// start function trapped).
    Instantiate(wasmi::Error),
    /// No exported `_start: () -> ()`.
    MissingEntryPoint,
    /// No exported linear memory named `memory`.
    MissingMemory,
    /// The module defines more than one linear memory (a service has one).
    TooManyMemories(u64),
    /// The module defines more than one table.
    TooManyTables(u64),
    /// The initial linear memory is larger than the service's
    /// `memory-limit-kib`.
    MemoryAboveLimit {
        initial_bytes: u64,
        limit_bytes: u64,
    },
    /// The initial table has more elements than [`MAX_TABLE_ELEMENTS`].
    TableAboveLimit { initial: u64 },
    /// Active data segment `segment` (index in the data section) writes
    /// bytes `offset..end`, beyond the initial memory of `memory_bytes`.
    DataOutOfBounds {
        segment: u32,
        offset: u64,
        end: u64,
        memory_bytes: u64,
    },
    /// Active element segment `segment` fills elements `offset..end`,
    /// beyond the initial table of `table_size`.
    ElementOutOfBounds {
        segment: u32,
        offset: u64,
        end: u64,
        table_size: u64,
    },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Preflight(error) => write!(formatter, "invalid module: {error}"),
            LoadError::Compile(error) => write!(formatter, "invalid module: {error}"),
            LoadError::OutOfMemory => {
                write!(formatter, "the kernel heap cannot hold it now")
            }
            LoadError::UnknownImports(imports) => {
                let plural = if imports.len() == 1 { "" } else { "s" };
                write!(formatter, "imports unknown function{plural} ")?;
                for (index, (module, name)) in imports.iter().enumerate() {
                    let separator = if index == 0 { "" } else { ", " };
                    write!(formatter, "{separator}`{module}::{name}`")?;
                }
                Ok(())
            }
            LoadError::ImportSignature(module, name) => write!(
                formatter,
                "imports `{module}::{name}` with a signature other than the ABI's"
            ),
            LoadError::Instantiate(error) => {
                write!(formatter, "cannot instantiate: ")?;
                instantiation_reason(error, formatter)
            }
            LoadError::MissingEntryPoint => {
                write!(formatter, "no exported `{ENTRY_POINT}: () -> ()`")
            }
            LoadError::MissingMemory => write!(formatter, "no exported memory `{MEMORY_EXPORT}`"),
            LoadError::TooManyMemories(count) => write!(
                formatter,
                "defines {count} linear memories; a service has exactly one"
            ),
            LoadError::TooManyTables(count) => {
                write!(
                    formatter,
                    "defines {count} tables; a service has at most one"
                )
            }
            LoadError::MemoryAboveLimit {
                initial_bytes,
                limit_bytes,
            } => write!(
                formatter,
                "its initial memory of {} KiB is above the service's memory-limit-kib of {}",
                initial_bytes.div_ceil(1024),
                limit_bytes / 1024
            ),
            LoadError::TableAboveLimit { initial } => write!(
                formatter,
                "its initial table of {initial} elements is above the kernel's cap of {MAX_TABLE_ELEMENTS}"
            ),
            LoadError::DataOutOfBounds {
                segment,
                offset,
                end,
                memory_bytes,
            } => write!(
                formatter,
                "data segment {segment} writes bytes {offset}..{end}, outside the initial memory of {memory_bytes} bytes"
            ),
            LoadError::ElementOutOfBounds {
                segment,
                offset,
                end,
                table_size,
            } => write!(
                formatter,
                "element segment {segment} fills elements {offset}..{end}, outside the initial table of {table_size}"
            ),
        }
    }
}

/// wasmi's reason, except where its text shows interpreter internals (a
/// table handle, an import's type as `Debug`): then a plain sentence.
fn instantiation_reason(
    error: &wasmi::Error,
    formatter: &mut core::fmt::Formatter<'_>,
) -> core::fmt::Result {
    use wasmi::errors::{ErrorKind, InstantiationError};
    match error.kind() {
        ErrorKind::Instantiation(InstantiationError::ElementSegmentDoesNotFit {
            table_index,
            len,
            ..
        }) => write!(
            formatter,
            "an element segment of {len} elements at offset {table_index} does not fit its table"
        ),
        ErrorKind::Instantiation(
            InstantiationError::ImportTypeMismatch { name, .. }
            | InstantiationError::GlobalTypeMismatch { name, .. }
            | InstantiationError::FuncTypeMismatch { name, .. }
            | InstantiationError::TableTypeMismatch { name, .. }
            | InstantiationError::MemoryTypeMismatch { name, .. },
        ) => write!(formatter, "import {name} does not match its definition"),
        _ => write!(formatter, "{error}"),
    }
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
    memory: Memory,
    instance: Instance,
    suspended: Suspended,
    /// This interpreter's share of the heap's stack headroom (released when
    /// the service is dropped, after its Store).
    _claim: InterpreterClaim,
}

/// The hot-swap state handoff exports, and the most state a swap carries.
pub use atoll_abi::handoff::{
    MAX_STATE_LEN, STATE_ALLOC_EXPORT, STATE_RESTORE_EXPORT, STATE_SAVE_EXPORT,
};
/// Fuel for each state-handoff call.
const STATE_FUEL: u64 = 10_000_000;

impl Service {
    /// Compiles, links and instantiates a service from its image.
    /// `endpoint_names` are the endpoints the service provides, then those it
    /// uses: handle `h` names entry `h - 1`.
    pub fn load(
        image: &ServiceImage<'_>,
        endpoint_names: Vec<String>,
        platform: Arc<dyn Platform>,
        heap: &Arc<Heap>,
    ) -> Result<Service, LoadError> {
        heap.admit(crate::heap::compile_cost(image.module))
            .map_err(|_| LoadError::OutOfMemory)?;
        let claim = heap
            .claim_interpreter()
            .map_err(|_| LoadError::OutOfMemory)?;
        let module = compile(image.module)?;
        let engine = module.engine().clone();
        let limits = StoreLimitsBuilder::new()
            .memory_size(image.limits.memory_bytes as usize)
            .instances(1)
            .memories(1)
            .tables(1)
            .table_elements(MAX_TABLE_ELEMENTS as usize)
            .build();
        let state = HostState {
            name: image.name.to_string(),
            platform: Arc::clone(&platform),
            heap: Arc::clone(heap),
            endpoint_names,
            pending: None,
            exit_status: None,
            args: image.args.iter().map(|arg| (*arg).to_string()).collect(),
            env: image.env.iter().map(|var| (*var).to_string()).collect(),
            wasi_warned: 0,
            fuel_debt: 0,
            random: seed(platform.random_seed(), image.name),
            driver: crate::driver::DriverState::default(),
            limiter: Limiter {
                limits,
                heap: Arc::clone(heap),
            },
        };
        let mut store = Store::new(&engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_fuel(START_FUEL).map_err(LoadError::Instantiate)?;
        let mut linker = Linker::new(&engine);
        crate::host::define(&mut linker).map_err(LoadError::Instantiate)?;
        let info = check_imports(&module)?;
        if info.uses_wasi {
            crate::wasi::define(&mut linker).map_err(LoadError::Instantiate)?;
        }
        check_exports(&module)?;
        check_limits(image.module, &image.limits)?;
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(LoadError::Instantiate)?;
        let entry = instance
            .get_typed_func::<(), ()>(&store, ENTRY_POINT)
            .map_err(|_| LoadError::MissingEntryPoint)?;
        let memory = instance
            .get_memory(&store, MEMORY_EXPORT)
            .ok_or(LoadError::MissingMemory)?;
        Ok(Service {
            instance,
            fuel_slice: image.limits.fuel_slice.max(1),
            fuel_used: 0,
            fuel_required: 0,
            store,
            entry,
            memory,
            suspended: Suspended::NotStarted,
            _claim: claim,
        })
    }

    /// Gives the service its resolved driver grants (after every load).
    pub fn grant(&mut self, grants: Arc<crate::driver::Resolved>) {
        self.store.data_mut().driver.grants = grants;
    }

    /// Takes the service's DMA buffers (to hand them to its next version).
    pub fn take_dma(&mut self) -> crate::driver::DmaPool {
        core::mem::take(&mut self.store.data_mut().driver.dma)
    }

    /// Gives the service DMA buffers of its previous version.
    pub fn put_dma(&mut self, pool: crate::driver::DmaPool) {
        self.store.data_mut().driver.dma = pool;
    }

    /// Bytes of DMA memory the service holds.
    #[must_use]
    pub fn dma_bytes(&self) -> usize {
        self.store.data().driver.dma_bytes()
    }

    /// The service's name from the system description.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.store.data().name
    }

    /// Fuel burnt so far by the entry point (excludes the start function).
    #[must_use]
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    /// Current size of the service's linear memory in bytes.
    #[must_use]
    pub fn memory_size(&self) -> usize {
        self.memory.data(&self.store).len()
    }

    /// The bytes of `slice` in the service's memory, if it lies inside it and
    /// is at most `max` long.
    pub fn read_memory(&self, slice: GuestSlice, max: usize) -> Result<&[u8], Error> {
        slice.read(self.memory.data(&self.store), max)
    }

    /// Charges the service for copying `bytes` bytes on its behalf in the
    /// kernel (as `memory.copy` is charged). Fuel that runs out here preempts
    /// it at its next instruction.
    pub fn charge_copy(&mut self, bytes: usize) {
        let fuel = bytes as u64 / crate::host::BYTES_PER_FUEL;
        let left = self.store.get_fuel().unwrap_or(0);
        let _ = self.store.set_fuel(left.saturating_sub(fuel));
        let state = self.store.data_mut();
        state.fuel_debt = state.fuel_debt.saturating_add(fuel.saturating_sub(left));
    }

    /// Copies `bytes` to the start of `target` in the service's memory, after
    /// checking `target` lies inside it and holds `bytes`.
    pub fn write_memory(&mut self, target: GuestSlice, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > target.len() {
            return Err(Error::BufferTooSmall);
        }
        let memory = self.memory.data_mut(&mut self.store);
        let window = target.write(memory, usize::MAX)?;
        window
            .get_mut(..bytes.len())
            .ok_or(Error::OutOfBounds)?
            .copy_from_slice(bytes);
        Ok(())
    }

    /// Asks the service for its state through [`STATE_SAVE_EXPORT`]. `None` if
    /// it exports no such function. Runs beside a suspended entry-point call,
    /// with a fuel budget of its own; the slice's fuel is put back after.
    pub fn save_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        let Ok(save) = self
            .instance
            .get_typed_func::<(), i64>(&self.store, STATE_SAVE_EXPORT)
        else {
            return Ok(None);
        };
        let packed: i64 = self.with_fuel(|store| save.call(store, ()))?;
        let packed = packed.cast_unsigned();
        let slice = GuestSlice::new((packed >> 32) as u32 as i32, packed as u32 as i32);
        let memory = self.memory.data(&self.store);
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
        let alloc = self
            .instance
            .get_typed_func::<i32, i32>(&self.store, STATE_ALLOC_EXPORT);
        let restore = self
            .instance
            .get_typed_func::<(i32, i32), ()>(&self.store, STATE_RESTORE_EXPORT);
        let (Ok(alloc), Ok(restore)) = (alloc, restore) else {
            return Ok(false);
        };
        let len = i32::try_from(state.len()).map_err(|_| "state too large".to_string())?;
        let ptr = self.with_fuel(|store| alloc.call(store, len))?;
        self.write_memory(GuestSlice::new(ptr, len), state)
            .map_err(|error| alloc::format!("state buffer: {error}"))?;
        self.with_fuel(|store| restore.call(store, (ptr, len)))?;
        Ok(true)
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
        state.exit_status = None;
        result
    }

    /// Runs the service until its fuel runs out, it makes a kernel call, or it
    /// ends. `syscall_result` is the result of the kernel call it is suspended
    /// in, if it is. `fresh` starts a new slice; otherwise the service goes on
    /// with the fuel left from before the kernel call, so that making kernel
    /// calls never extends a slice.
    pub fn run_slice(&mut self, syscall_result: i32, fresh: bool) -> SliceOutcome {
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
            Ok(TypedResumableCall::HostTrap(call)) => match self.store.data_mut().pending.take() {
                Some(syscall) => {
                    self.suspended = Suspended::InSyscall(call);
                    SliceOutcome::Syscall(syscall)
                }
                None => match self.store.data_mut().exit_status.take() {
                    Some(status) => {
                        self.suspended = Suspended::Finished;
                        SliceOutcome::Exited(status)
                    }
                    None => self.fault(call.host_error().to_string()),
                },
            },
            // `proc_exit` tail-called from the root frame (`_start` doing
            // `return_call`) cannot be resumed: the interpreter ends the call
            // with the host error instead of a resumable trap. It is still an
            // exit. (No other suspending host function can be tail-called
            // from `_start`: they return a value, `_start` none.)
            Err(error) => match self.store.data_mut().exit_status.take() {
                Some(status) => {
                    self.suspended = Suspended::Finished;
                    SliceOutcome::Exited(status)
                }
                None => self.fault(error.to_string()),
            },
        }
    }

    fn fault(&mut self, reason: String) -> SliceOutcome {
        self.suspended = Suspended::Finished;
        SliceOutcome::Faulted(reason)
    }
}

/// What [`validate`] learnt about a module's imports.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// It imports from WASI preview1.
    pub uses_wasi: bool,
    /// The WASI functions it imports that the kernel only stubs (they return
    /// an errno), in import order.
    pub wasi_stubs: Vec<&'static str>,
}

/// Checks a module as the kernel's loader will, without running it: it compiles
/// under the kernel's interpreter configuration and limits, imports only host
/// functions of the ABI or of WASI preview1 with their exact signatures,
/// exports the entry point and its memory, and fits the service's `limits`
/// (one memory and at most one table, initial sizes within the limits, active
/// segments inside them). image-builder calls this, and the loader makes the
/// same checks, so a bundle never holds a module that this kernel would refuse
/// for these reasons. (What is left to instantiation: the start function, and
/// the kernel heap's room at the time.)
pub fn validate(module: &[u8], limits: &ServiceLimits) -> Result<ModuleInfo, LoadError> {
    let compiled = compile(module)?;
    let info = check_imports(&compiled)?;
    check_exports(&compiled)?;
    check_limits(module, limits)?;
    Ok(info)
}

/// Compiles `bytes` in an `Engine` of its own, after the checks that must
/// precede the interpreter (no module reaches wasmi's recursive paths unbounded).
fn compile(bytes: &[u8]) -> Result<Module, LoadError> {
    crate::preflight::check(bytes).map_err(LoadError::Preflight)?;
    let engine = Engine::new(&engine_config());
    Module::new(&engine, bytes).map_err(LoadError::Compile)
}

/// Checks every import: all unknown ones are reported together; otherwise the
/// first with a signature other than the ABI's.
fn check_imports(module: &Module) -> Result<ModuleInfo, LoadError> {
    let mut info = ModuleInfo::default();
    let mut unknown = Vec::new();
    let mut mismatch = None;
    for import in module.imports() {
        let expected = match import.module() {
            IMPORT_MODULE => atoll_abi::host_function(import.name())
                .map(|function| (function.params, function.results)),
            atoll_abi::wasi::IMPORT_MODULE => {
                atoll_abi::wasi::function(import.name()).map(|function| {
                    info.uses_wasi = true;
                    if matches!(function.support, atoll_abi::wasi::Support::Stub { .. }) {
                        info.wasi_stubs.push(function.name);
                    }
                    (function.params, function.results)
                })
            }
            _ => None,
        };
        let (Some((params, results)), Some(signature)) = (expected, import.ty().func()) else {
            unknown.push((import.module().to_string(), import.name().to_string()));
            continue;
        };
        if mismatch.is_none()
            && (!types_match(signature.params(), params)
                || !types_match(signature.results(), results))
        {
            mismatch = Some(LoadError::ImportSignature(
                import.module().to_string(),
                import.name().to_string(),
            ));
        }
    }
    if !unknown.is_empty() {
        return Err(LoadError::UnknownImports(unknown));
    }
    mismatch.map_or(Ok(info), Err)
}

/// Checks, from the module's bytes, what instantiation would otherwise refuse
/// (or find only at boot): one memory, at most one table, initial sizes within
/// the service's memory limit and [`MAX_TABLE_ELEMENTS`], and every active
/// data and element segment whose offset is a constant inside the initial
/// memory or table. Runs after [`compile`], so the module parses and its
/// constant expressions are short (an offset that is not a constant, which
/// the imports rules exclude, is left to instantiation).
fn check_limits(module: &[u8], limits: &ServiceLimits) -> Result<(), LoadError> {
    use wasmparser::{DataKind, ElementItems, ElementKind, Payload, TypeRef};
    let mut memories = 0u64;
    let mut tables = 0u64;
    let mut memory_bytes = 0u64;
    let mut table_size = 0u64;
    // Each global's value, where it is a constant.
    let mut globals: Vec<Option<u64>> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        // Compilation has parsed the module: an error here is not reachable.
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_iter().flatten() {
                    match import.ty {
                        TypeRef::Memory(_) => memories += 1,
                        TypeRef::Table(_) => tables += 1,
                        TypeRef::Global(_) => globals.push(None),
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader.into_iter().flatten() {
                    memories += 1;
                    if memories == 1 {
                        let page = 1u64 << memory.page_size_log2.unwrap_or(16).min(16);
                        memory_bytes = memory.initial.saturating_mul(page);
                    }
                }
            }
            Payload::TableSection(reader) => {
                for table in reader.into_iter().flatten() {
                    tables += 1;
                    if tables == 1 {
                        table_size = table.ty.initial;
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader.into_iter().flatten() {
                    let value = constant(&global.init_expr, &globals);
                    globals.push(value);
                }
            }
            Payload::ElementSection(reader) => {
                check_sizes(memories, tables, memory_bytes, table_size, limits)?;
                for (segment, element) in (0u32..).zip(reader) {
                    let Ok(element) = element else { continue };
                    let ElementKind::Active { offset_expr, .. } = &element.kind else {
                        continue;
                    };
                    let count = match &element.items {
                        ElementItems::Functions(items) => items.count(),
                        ElementItems::Expressions(_, items) => items.count(),
                    };
                    let Some(offset) = constant(offset_expr, &globals) else {
                        continue;
                    };
                    let end = offset.saturating_add(u64::from(count));
                    if end > table_size {
                        return Err(LoadError::ElementOutOfBounds {
                            segment,
                            offset,
                            end,
                            table_size,
                        });
                    }
                }
            }
            Payload::DataSection(reader) => {
                check_sizes(memories, tables, memory_bytes, table_size, limits)?;
                for (segment, data) in (0u32..).zip(reader) {
                    let Ok(data) = data else { continue };
                    let DataKind::Active { offset_expr, .. } = &data.kind else {
                        continue;
                    };
                    let Some(offset) = constant(offset_expr, &globals) else {
                        continue;
                    };
                    let end = offset.saturating_add(data.data.len() as u64);
                    if end > memory_bytes {
                        return Err(LoadError::DataOutOfBounds {
                            segment,
                            offset,
                            end,
                            memory_bytes,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    check_sizes(memories, tables, memory_bytes, table_size, limits)
}

/// The memory and table counts and initial sizes against the limits.
fn check_sizes(
    memories: u64,
    tables: u64,
    memory_bytes: u64,
    table_size: u64,
    limits: &ServiceLimits,
) -> Result<(), LoadError> {
    if memories > 1 {
        return Err(LoadError::TooManyMemories(memories));
    }
    if tables > 1 {
        return Err(LoadError::TooManyTables(tables));
    }
    if memory_bytes > u64::from(limits.memory_bytes) {
        return Err(LoadError::MemoryAboveLimit {
            initial_bytes: memory_bytes,
            limit_bytes: u64::from(limits.memory_bytes),
        });
    }
    if table_size > u64::from(MAX_TABLE_ELEMENTS) {
        return Err(LoadError::TableAboveLimit {
            initial: table_size,
        });
    }
    Ok(())
}

/// The value of a constant expression (as an unsigned offset: an `i32` is
/// zero-extended), if it is made of constants, earlier constant globals and
/// extended-constant arithmetic. `None` for anything else.
fn constant(expr: &wasmparser::ConstExpr<'_>, globals: &[Option<u64>]) -> Option<u64> {
    use wasmparser::Operator;
    let mut stack: Vec<u64> = Vec::new();
    let mut reader = expr.get_operators_reader();
    let i32_op = |stack: &mut Vec<u64>, op: fn(u32, u32) -> u32| -> Option<()> {
        let right = stack.pop()? as u32;
        let left = stack.pop()? as u32;
        stack.push(u64::from(op(left, right)));
        Some(())
    };
    let i64_op = |stack: &mut Vec<u64>, op: fn(u64, u64) -> u64| -> Option<()> {
        let right = stack.pop()?;
        let left = stack.pop()?;
        stack.push(op(left, right));
        Some(())
    };
    // Preflight bounds every constant expression's length.
    for _ in 0..=crate::preflight::MAX_CONST_EXPR_OPERATORS {
        match reader.read().ok()? {
            Operator::I32Const { value } => stack.push(u64::from(value.cast_unsigned())),
            Operator::I64Const { value } => stack.push(value.cast_unsigned()),
            Operator::GlobalGet { global_index } => {
                stack.push((*globals.get(global_index as usize)?)?);
            }
            Operator::I32Add => i32_op(&mut stack, u32::wrapping_add)?,
            Operator::I32Sub => i32_op(&mut stack, u32::wrapping_sub)?,
            Operator::I32Mul => i32_op(&mut stack, u32::wrapping_mul)?,
            Operator::I64Add => i64_op(&mut stack, u64::wrapping_add)?,
            Operator::I64Sub => i64_op(&mut stack, u64::wrapping_sub)?,
            Operator::I64Mul => i64_op(&mut stack, u64::wrapping_mul)?,
            Operator::End => return stack.pop(),
            _ => return None,
        }
    }
    None
}

/// A generator seed for service `name`: never 0 (xorshift's fixed point), and
/// different for services loaded at the same instant.
fn seed(platform_seed: u64, name: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (platform_seed ^ hash) | 1
}

fn types_match(actual: &[ValType], expected: &[ValueType]) -> bool {
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(actual, expected)| {
            matches!(
                (actual, expected),
                (ValType::I32, ValueType::I32) | (ValType::I64, ValueType::I64)
            )
        })
}

fn check_exports(module: &Module) -> Result<(), LoadError> {
    let mut entry = false;
    let mut memory = false;
    for export in module.exports() {
        match export.ty() {
            ExternType::Func(signature) if export.name() == ENTRY_POINT => {
                entry = signature.params().is_empty() && signature.results().is_empty();
            }
            ExternType::Memory(_) if export.name() == MEMORY_EXPORT => memory = true,
            _ => {}
        }
    }
    if !entry {
        return Err(LoadError::MissingEntryPoint);
    }
    if !memory {
        return Err(LoadError::MissingMemory);
    }
    Ok(())
}

/// The interpreter configuration every service runs under.
fn engine_config() -> Config {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        // Fuel running out during lazy compilation is not resumable: compile
        // everything up front.
        .compilation_mode(CompilationMode::Eager)
        // No `EnforcedLimits::strict()`: its cap of 1,000 data segments refuses
        // every Go program (about 28,000), and its other bounds guard lazy
        // compilation, which is off. A module's size is bounded instead (the
        // bundle is built by image-builder; `swap` takes at most
        // `atoll_abi::MAX_MODULE_LEN` (16 MiB) and only with the heap reserve
        // intact), and compiling is linear in it.
        .enforced_limits(EnforcedLimits::default())
        // Explicit, so that the heap's stack headroom matches them.
        .set_max_stack_height(crate::heap::VALUE_STACK_BYTES)
        .set_max_recursion_depth(crate::heap::MAX_RECURSION_DEPTH);
    config
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;

    #[test]
    fn an_instantiation_error_is_told_without_interpreter_internals() {
        // Before: "out of bounds table access: Table(Stored { store: StoreId(..),
        // value: RawHandle { .. } }) does not fit 2 elements starting from offset 1".
        let module = wat::parse_str(
            r#"(module (table 2 funcref) (elem (i32.const 1) func $f $f) (func $f))"#,
        )
        .unwrap();
        let engine = Engine::new(&engine_config());
        let module = Module::new(&engine, &module).unwrap();
        let mut store = Store::new(&engine, ());
        let error = Linker::<()>::new(&engine)
            .instantiate_and_start(&mut store, &module)
            .err()
            .unwrap();
        assert_eq!(
            LoadError::Instantiate(error).to_string(),
            "cannot instantiate: an element segment of 2 elements at offset 1 does not fit its table"
        );
    }
}
