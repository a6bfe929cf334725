//! The loader: the interpreter's configuration, and the checks a module
//! passes before it runs. A module is compiled once into a [`Program`], checked
//! against the ABI and the service's limits, and instantiated from it at boot,
//! at every restart and at a hot swap: a restart compiles nothing.

use crate::heap::Heap;
use crate::host::HostState;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::bundle::ServiceLimits;
use atoll_abi::{ENTRY_POINT, IMPORT_MODULE, MEMORY_EXPORT, ValueType};
use wasmi::{
    CompilationMode, Config, CustomFuelCosts, EnforcedLimits, Engine, ExternType, Linker, Module,
    ValType,
};

/// When a program's functions are translated into the interpreter's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// All of them before the program is accepted: for modules a service
    /// hands the kernel at run time (`swap`), so that a module wasmi cannot
    /// translate is refused, and a swap's pause translates nothing.
    Eager,
    /// Each on its first call (validation stays eager): for the boot bundle,
    /// whose modules image-builder already compiled eagerly with this
    /// configuration (`validate`), so no translation can fail. Boot then
    /// translates only what runs.
    Lazy,
}

/// A module compiled and checked under the kernel's configuration, its host
/// functions linked: what boot, every restart and a hot swap instantiate.
pub struct Program {
    pub(crate) module: Module,
    pub(crate) linker: Linker<HostState>,
    /// For a WASI program: the WASI shim, compiled in the same engine (a
    /// store holds instances of one engine), its host functions linked.
    pub(crate) shim: Option<(Module, Linker<HostState>)>,
    pub info: ModuleInfo,
    /// For a lazily translated program: the heap headroom its code may still
    /// take, kept free while the program lives.
    _code: Option<crate::heap::Claim>,
}

impl Program {
    /// Compiles and checks `bytes` for a service with `limits` (as
    /// [`validate`] does), if the kernel heap admits the compiled code; with
    /// the WASI shim's module for a program that imports WASI preview1
    /// (refused without it: [`LoadError::NoWasiShim`]).
    pub fn compile_with_shim(
        bytes: &[u8],
        limits: &ServiceLimits,
        heap: &Arc<Heap>,
        translation: Translation,
        shim: Option<&[u8]>,
    ) -> Result<Program, LoadError> {
        let shim_cost = shim.map_or(0, crate::heap::compile_cost);
        let cost = crate::heap::compile_cost(bytes).saturating_add(shim_cost);
        // Lazy: the code is allocated while the service runs, inside wasmi
        // (infallibly), so its bound stays claimed for the program's life.
        let code = match translation {
            Translation::Eager => {
                heap.admit(cost).map_err(|_| LoadError::OutOfMemory)?;
                None
            }
            Translation::Lazy => Some(heap.claim(cost).map_err(|_| LoadError::OutOfMemory)?),
        };
        let module = compile(bytes, translation)?;
        let info = check(&module, bytes, limits)?;
        let mut linker = Linker::new(module.engine());
        crate::host::define(&mut linker).map_err(LoadError::Instantiate)?;
        let shim = match (info.uses_wasi, shim) {
            (false, _) => None,
            (true, None) => return Err(LoadError::NoWasiShim),
            (true, Some(shim)) => {
                crate::preflight::check(shim).map_err(LoadError::Preflight)?;
                let shim = Module::new(module.engine(), shim).map_err(LoadError::Compile)?;
                check_shim(&shim)?;
                let mut linker = Linker::new(module.engine());
                crate::host::define_shim(&mut linker).map_err(LoadError::Instantiate)?;
                Some((shim, linker))
            }
        };
        Ok(Program {
            module,
            linker,
            shim,
            info,
            _code: code,
        })
    }
}

/// The most elements a service's table may hold.
pub const MAX_TABLE_ELEMENTS: u32 = 100_000;

/// Why a service could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module exceeds a bound checked before compilation (see [`crate::preflight`]).
    #[error("invalid module: {0}")]
    Preflight(crate::preflight::PreflightError),
    /// The module is not valid Wasm or exceeds the kernel's module limits.
    #[error("invalid module: {0}")]
    Compile(wasmi::Error),
    /// The kernel heap cannot hold the compiled module and its interpreter
    /// without eating into its reserve.
    #[error("the kernel heap cannot hold it now")]
    OutOfMemory,
    /// Imports that are not host functions of the ABI, every one of them:
    /// `(module, name)` in import order (never empty).
    #[error("imports unknown function{} {}", if .0.len() == 1 { "" } else { "s" }, import_list(.0))]
    UnknownImports(Vec<(String, String)>),
    /// An import names a host function but with another signature: `(module, name)`.
    #[error("imports `{0}::{1}` with a signature other than the ABI's")]
    ImportSignature(String, String),
    /// Instantiation failed (e.g. its memory exceeds the service's limit, or its
    /// start function trapped).
    #[error("cannot instantiate: {}", instantiation_reason(.0))]
    Instantiate(wasmi::Error),
    /// No exported `_start: () -> ()`.
    #[error("no exported `{}: () -> ()`", ENTRY_POINT)]
    MissingEntryPoint,
    /// No exported linear memory named `memory`.
    #[error("no exported memory `{}`", MEMORY_EXPORT)]
    MissingMemory,
    /// The module defines more than one linear memory (a service has one).
    #[error("defines {0} linear memories; a service has exactly one")]
    TooManyMemories(u64),
    /// The module imports WASI preview1 and the kernel has no WASI shim (the
    /// bundle carries one only when a service of the system uses WASI).
    #[error("it imports WASI preview1 and the bundle has no WASI shim")]
    NoWasiShim,
    /// The module imports from both WASI preview1 and `atoll`: a WASI
    /// program reaches the kernel through its WASI shim only.
    #[error(
        "it imports from both `wasi_snapshot_preview1` and `atoll`: a WASI program reaches the kernel through WASI only"
    )]
    WasiWithAtoll,
    /// The WASI shim does not import and export what the kernel links: the
    /// reason.
    #[error("the WASI shim {0}")]
    BadWasiShim(String),
    /// The module defines more than one table.
    #[error("defines {0} tables; a service has at most one")]
    TooManyTables(u64),
    /// The initial linear memory is larger than the service's
    /// `memory-limit-kib`.
    #[error(
        "its initial memory of {} KiB is above the service's memory-limit-kib of {}",
        initial_bytes.div_ceil(1024),
        limit_bytes / 1024
    )]
    MemoryAboveLimit {
        initial_bytes: u64,
        limit_bytes: u64,
    },
    /// The initial table has more elements than [`MAX_TABLE_ELEMENTS`].
    #[error(
        "its initial table of {initial} elements is above the kernel's cap of {}",
        MAX_TABLE_ELEMENTS
    )]
    TableAboveLimit { initial: u64 },
    /// Active data segment `segment` (index in the data section) writes
    /// bytes `offset..end`, beyond the initial memory of `memory_bytes`.
    #[error(
        "data segment {segment} writes bytes {offset}..{end}, outside the initial memory of {memory_bytes} bytes"
    )]
    DataOutOfBounds {
        segment: u32,
        offset: u64,
        end: u64,
        memory_bytes: u64,
    },
    /// Active element segment `segment` fills elements `offset..end`,
    /// beyond the initial table of `table_size`.
    #[error(
        "element segment {segment} fills elements {offset}..{end}, outside the initial table of {table_size}"
    )]
    ElementOutOfBounds {
        segment: u32,
        offset: u64,
        end: u64,
        table_size: u64,
    },
}

/// `module::name` of each import, quoted, comma-separated.
fn import_list(imports: &[(String, String)]) -> String {
    let quoted: Vec<String> = imports
        .iter()
        .map(|(module, name)| format!("`{module}::{name}`"))
        .collect();
    quoted.join(", ")
}

/// wasmi's reason, except where its text shows interpreter internals (a
/// table handle, an import's type as `Debug`): then a plain sentence.
fn instantiation_reason(error: &wasmi::Error) -> String {
    use wasmi::errors::{ErrorKind, InstantiationError};
    match error.kind() {
        ErrorKind::Instantiation(InstantiationError::ElementSegmentDoesNotFit {
            table_index,
            len,
            ..
        }) => format!(
            "an element segment of {len} elements at offset {table_index} does not fit its table"
        ),
        ErrorKind::Instantiation(
            InstantiationError::ImportTypeMismatch { name, .. }
            | InstantiationError::GlobalTypeMismatch { name, .. }
            | InstantiationError::FuncTypeMismatch { name, .. }
            | InstantiationError::TableTypeMismatch { name, .. }
            | InstantiationError::MemoryTypeMismatch { name, .. },
        ) => format!("import {name} does not match its definition"),
        _ => error.to_string(),
    }
}

/// What [`validate`] learnt about a module's imports.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// It imports from WASI preview1.
    pub uses_wasi: bool,
    /// The WASI functions it imports that the WASI shim only stubs (they return
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
    check(&compile(module, Translation::Eager)?, module, limits)
}

fn check(module: &Module, bytes: &[u8], limits: &ServiceLimits) -> Result<ModuleInfo, LoadError> {
    let info = check_imports(module)?;
    check_exports(module)?;
    check_limits(bytes, limits)?;
    Ok(info)
}

/// Compiles `bytes` in an `Engine` of its own, after the checks that must
/// precede the interpreter (no module reaches wasmi's recursive paths unbounded).
fn compile(bytes: &[u8], translation: Translation) -> Result<Module, LoadError> {
    crate::preflight::check(bytes).map_err(LoadError::Preflight)?;
    let engine = Engine::new(&engine_config(translation));
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
    if info.uses_wasi
        && module
            .imports()
            .any(|import| import.module() == IMPORT_MODULE)
    {
        return Err(LoadError::WasiWithAtoll);
    }
    mismatch.map_or(Ok(info), Err)
}

/// Checks the WASI shim: it imports only the ABI's functions (no driver
/// function) and the shim's own, with their signatures, and exports every function of WASI preview1
/// with its signature (so that every WASI program links to it).
fn check_shim(shim: &Module) -> Result<(), LoadError> {
    use atoll_abi::wasi::{FUNCTIONS, SHIM_FUNCTIONS, SHIM_IMPORT_MODULE};
    for import in shim.imports() {
        let expected = match import.module() {
            IMPORT_MODULE => atoll_abi::host_function(import.name()).filter(|function| {
                !atoll_abi::DRIVER_FUNCTIONS
                    .iter()
                    .any(|driver| driver.name == function.name)
            }),
            SHIM_IMPORT_MODULE => SHIM_FUNCTIONS
                .iter()
                .find(|function| function.name == import.name()),
            _ => None,
        };
        let matches = expected
            .zip(import.ty().func())
            .is_some_and(|(function, ty)| {
                types_match(ty.params(), function.params)
                    && types_match(ty.results(), function.results)
            });
        if !matches {
            return Err(LoadError::BadWasiShim(alloc::format!(
                "imports {}::{} (not as the kernel defines it)",
                import.module(),
                import.name()
            )));
        }
    }
    if !shim
        .exports()
        .any(|export| export.name() == MEMORY_EXPORT && export.ty().memory().is_some())
    {
        return Err(LoadError::BadWasiShim("exports no memory".to_string()));
    }
    for function in FUNCTIONS {
        let exported = shim.exports().any(|export| {
            export.name() == function.name
                && export.ty().func().is_some_and(|ty| {
                    types_match(ty.params(), function.params)
                        && types_match(ty.results(), function.results)
                })
        });
        if !exported {
            return Err(LoadError::BadWasiShim(alloc::format!(
                "does not export {} with its WASI signature",
                function.name
            )));
        }
    }
    Ok(())
}

/// Checks the WASI shim as the loader will (image-builder, before it puts
/// the shim in a bundle).
pub fn validate_shim(shim: &[u8]) -> Result<(), LoadError> {
    check_shim(&compile(shim, Translation::Eager)?)
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
fn engine_config(translation: Translation) -> Config {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(match translation {
            Translation::Eager => CompilationMode::Eager,
            Translation::Lazy => CompilationMode::LazyTranslation,
        })
        // Translation is free of fuel: wasmi 2.0 ends a call that runs out of
        // fuel while translating lazily with an error, not a resumable
        // out-of-fuel (vendor/wasmi: `compile_or_get_func_entry`), which would
        // be the service's fault. Each function is translated once per
        // program, so its cost is bounded by the module's size, as eager
        // translation at load is; copies keep wasmi's default cost.
        .fuel_cost(CustomFuelCosts {
            bytes_copied_per_fuel: 64,
            fuel_per_bytes_translated: 0,
            fuel_per_bytes_validated: 0,
        })
        // No `EnforcedLimits::strict()`: its cap of 1,000 data segments refuses
        // every Go program (about 28,000), and its other bounds guard lazy
        // compilation of untrusted modules, which is off: only the bundle's
        // modules, which image-builder translated eagerly under this same
        // configuration, are translated lazily. A module's size is bounded
        // instead (the bundle is built by image-builder; `swap` takes at most
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
    use wasmi::Store;

    #[test]
    fn an_instantiation_error_is_told_without_interpreter_internals() {
        // Before: "out of bounds table access: Table(Stored { store: StoreId(..),
        // value: RawHandle { .. } }) does not fit 2 elements starting from offset 1".
        let module = wat::parse_str(
            r#"(module (table 2 funcref) (elem (i32.const 1) func $f $f) (func $f))"#,
        )
        .unwrap();
        let engine = Engine::new(&engine_config(Translation::Eager));
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

    /// A module whose `run` calls `$big`, a function of about 3 KB.
    fn caller_of_a_big_function() -> Vec<u8> {
        let body = "(local.set $x (i32.add (local.get $x) (i32.const 7)))".repeat(400);
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1)
                (func $big (result i32) (local $x i32) {body} (local.get $x))
                (func (export "run") (result i32) (call $big))
                (func (export "_start")))"#
        ))
        .unwrap()
    }

    #[test]
    fn lazy_translation_costs_no_fuel_so_a_short_slice_still_makes_progress() {
        // wasmi ends a call that runs out of fuel while translating a function
        // lazily with an error, not a resumable out-of-fuel: with translation
        // priced (7 fuel a byte by default), a service whose slice is shorter
        // than its biggest function's price would fault on its first call.
        let bytes = caller_of_a_big_function();
        let engine = Engine::new(&engine_config(Translation::Lazy));
        let module = Module::new(&engine, &bytes).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::<()>::new(&engine)
            .instantiate_and_start(&mut store, &module)
            .unwrap();
        let run = instance.get_typed_func::<(), i32>(&store, "run").unwrap();
        store.set_fuel(100).unwrap();
        let mut call = run.call_resumable(&mut store, ()).unwrap();
        let mut slices = 1;
        let result = loop {
            match call {
                wasmi::TypedResumableCall::Finished(result) => break result,
                wasmi::TypedResumableCall::OutOfFuel(invocation) => {
                    // As the kernel does: a slice covers the instruction
                    // (here `$big`'s one block) it stopped at.
                    slices += 1;
                    store.set_fuel(invocation.required_fuel().max(100)).unwrap();
                    call = invocation.resume(&mut store).unwrap();
                }
                wasmi::TypedResumableCall::HostTrap(_) => panic!("no host calls here"),
            }
        };
        assert_eq!(result, 400 * 7);
        assert!(slices > 1, "the slice was meant to run out");
    }

    #[test]
    fn compile_cost_bounds_a_lazy_program_that_translates_every_function() {
        // The boot loader keeps `compile_cost` free for a lazy program's code
        // (its `heap::Claim`), so parsing it and then translating every function
        // while it runs must fit in that bound: here 50,000 small functions,
        // each called once from `_start`, on a heap of exactly that (plus
        // slack for the store, its stacks and a page of memory). More would
        // abort the test.
        const FUNCTIONS: usize = 50_000;
        let mut text =
            String::from(r#"(module (memory (export "memory") 1) (func (export "_start")"#);
        for index in 0..FUNCTIONS {
            text.push_str(&alloc::format!(" (call $f{index})"));
        }
        text.push(')');
        for index in 0..FUNCTIONS {
            text.push_str(&alloc::format!(
                " (func $f{index} (local i32) (local.set 0 (i32.add (local.get 0) (i32.const {index}))))"
            ));
        }
        text.push(')');
        let bytes = wat::parse_str(&text).unwrap();
        let admitted = crate::preflight::compile_cost(&bytes);
        let limit = crate::test_allocator::FiniteHeap::new(admitted + (1 << 20));
        let engine = Engine::new(&engine_config(Translation::Lazy));
        let module = Module::new(&engine, &bytes).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_fuel(u64::MAX / 2).unwrap();
        let instance = Linker::<()>::new(&engine)
            .instantiate_and_start(&mut store, &module)
            .unwrap();
        let start = instance.get_typed_func::<(), ()>(&store, "_start").unwrap();
        start.call(&mut store, ()).unwrap();
        drop(limit);
    }
}
