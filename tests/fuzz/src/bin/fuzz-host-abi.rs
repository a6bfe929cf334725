//! Fuzz target: the host ABI. Two services call random host functions with
//! random arguments in a random order: one (maybe the supervisor) the ABI's,
//! the other a WASI program whose shim calls the ABI's and the shim's own
//! kernel functions (`program_read`, `print`, `exit`, ...), with pointers
//! and lengths at the edges of both its memories; handles
//! and tokens valid and not, timeouts from none to for ever. They run in a
//! hosted kernel on a virtual clock until nothing can run. No panic, and the
//! process heap after the kernel is dropped is where it was before it
//! booted (checked with a counting allocator, after one warm-up input).
#![forbid(unsafe_code)]

use arbitrary::{Arbitrary, Unstructured};
use atoll_abi::ValueType;
use atoll_fuzz::Outcome;
use atoll_fuzz::hosted::{self, Spec};
use std::cell::Cell;
use std::fmt::Write;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Calls per service at most.
const MAX_CALLS: usize = 64;

/// A host function: its name in the generated WAT, its name, parameters,
/// results.
type Function = (
    String,
    &'static str,
    &'static [ValueType],
    &'static [ValueType],
);

/// The ABI's functions, as [`hosted::shim_wat`] names them (`$a{i}`).
fn abi_functions() -> Vec<Function> {
    atoll_abi::HOST_FUNCTIONS
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("$a{i}"), f.name, f.params, f.results))
        .collect()
}

/// Every function the WASI shim may call: the ABI's but the driver
/// functions, and its own (`$s{i}`).
fn shim_functions() -> Vec<Function> {
    let shim = atoll_abi::wasi::SHIM_FUNCTIONS
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("$s{i}"), f.name, f.params, f.results));
    abi_functions()
        .into_iter()
        .filter(|(_, name, _, _)| !hosted::is_driver(name))
        .chain(shim)
        .collect()
}

/// An i32 argument: the edges of a one-page memory, handles, or anything.
fn int32(input: &mut Unstructured<'_>) -> arbitrary::Result<i32> {
    const EDGES: [i32; 14] = [
        0,
        1,
        2,
        3,
        4,
        8,
        -1,
        64,
        4096,
        65_528,
        65_532,
        65_536,
        i32::MAX,
        i32::MIN,
    ];
    Ok(match input.int_in_range(0..=3)? {
        0 => *input.choose(&EDGES)?,
        1 => input.int_in_range(0..=70_000)?,
        2 => input.int_in_range(0..=8)?,
        _ => i32::arbitrary(input)?,
    })
}

/// An i64 argument: timeouts and durations from none to for ever.
fn int64(input: &mut Unstructured<'_>) -> arbitrary::Result<i64> {
    const EDGES: [i64; 7] = [0, -1, 1, 1000, 1_000_000, i64::MAX, i64::MIN];
    Ok(if input.arbitrary::<bool>()? {
        *input.choose(&EDGES)?
    } else {
        i64::arbitrary(input)?
    })
}

/// Calls of `functions` picked by `input`, as WAT instructions. Returns
/// them and their number.
fn calls(
    input: &mut Unstructured<'_>,
    functions: &[Function],
) -> arbitrary::Result<(String, usize)> {
    let mut wat = String::new();
    let count = input.int_in_range(0..=MAX_CALLS)?;
    for _ in 0..count {
        let index = input.choose_index(functions.len())?;
        let Some((id, name, params, results)) = functions.get(index) else {
            continue;
        };
        let _ = write!(wat, "    (call {id}");
        for param in *params {
            match param {
                ValueType::I32 => {
                    let _ = write!(wat, " (i32.const {})", int32(input)?);
                }
                ValueType::I64 => {
                    let _ = write!(wat, " (i64.const {})", int64(input)?);
                }
            }
        }
        let drops = " drop".repeat(results.len());
        let _ = writeln!(wat, "){drops} ;; {name}");
    }
    Ok((wat, count))
}

/// A service calling the ABI's functions picked by `input`, as WAT. Returns
/// it and the number of calls it makes.
fn service(input: &mut Unstructured<'_>) -> arbitrary::Result<(String, usize)> {
    let mut wat = String::from("(module\n");
    for (id, name, params, results) in abi_functions() {
        let _ = writeln!(
            wat,
            "  (import \"{}\" \"{name}\" (func {id} (param{}) (result{})))",
            atoll_abi::IMPORT_MODULE,
            hosted::types(params),
            hosted::types(results)
        );
    }
    // Names a call may find: its endpoints and the services.
    wat.push_str("  (memory (export \"memory\") 1)\n  (data (i32.const 0) \"pa pb a b\")\n");
    let (body, count) = calls(input, &abi_functions())?;
    let _ = write!(wat, "  (func (export \"_start\")\n{body}  ))\n");
    Ok((wat, count))
}

/// A WASI program whose `_start` calls `sched_yield` twice, and a WASI shim
/// whose `sched_yield` calls the ABI's and the shim's kernel functions
/// picked by `input` (their pointers at the edges of both memories).
fn wasi_service(input: &mut Unstructured<'_>) -> arbitrary::Result<(String, String, usize)> {
    let program = r#"(module
        (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
        (memory (export "memory") 1)
        (func (export "_start") (drop (call $yield)) (drop (call $yield))))"#;
    let (body, count) = calls(input, &shim_functions())?;
    Ok((
        program.to_string(),
        hosted::shim_wat("sched_yield", &body),
        count * 2,
    ))
}

thread_local! {
    static WARM: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static KERNEL_CALLS: Cell<u64> = const { Cell::new(0) };
}

fn target(bytes: &[u8]) -> Outcome {
    let mut input = Unstructured::new(bytes);
    let (Ok((a, a_calls)), Ok((b, shim, b_calls)), Ok(supervisor)) = (
        service(&mut input),
        wasi_service(&mut input),
        input.int_in_range(0..=1u8),
    ) else {
        return "short input";
    };
    let assemble = |wat: &str| match wat::parse_str(wat) {
        Ok(module) => module,
        Err(error) => panic!("a generated module does not assemble: {error}"),
    };
    let (a, b, shim) = (assemble(&a), assemble(&b), assemble(&shim));
    let before = ALLOCATOR.allocated();
    let ran = hosted::run(
        &[
            Spec {
                name: "a",
                module: &a,
                provides: vec!["pa"],
                uses: vec!["pb"],
                supervisor: supervisor == 1,
            },
            Spec {
                name: "b",
                module: &b,
                provides: vec!["pb"],
                uses: vec!["pa"],
                supervisor: false,
            },
        ],
        Some(&shim),
    );
    let after = ALLOCATOR.allocated();
    let Some((summary, kernel_calls)) = ran else {
        panic!("the bundle does not boot");
    };
    if WARM.get() {
        assert!(
            after <= before,
            "the kernel left {} bytes on the heap",
            after - before
        );
    }
    WARM.set(true);
    CALLS.set(CALLS.get() + (a_calls + b_calls) as u64);
    KERNEL_CALLS.set(KERNEL_CALLS.get() + kernel_calls);
    if summary.failed_to_load > 0 {
        panic!("a generated service failed to load: {summary}");
    }
    if summary.faulted > 0 {
        "faulted"
    } else if summary.blocked > 0 {
        "waiting for ever"
    } else {
        "ran to the end"
    }
}

fn main() -> ExitCode {
    let status = atoll_fuzz::run("host-abi", 4096, target);
    println!(
        "fuzz host-abi: {} host calls generated, {} kernel calls counted by the kernel",
        CALLS.get(),
        KERNEL_CALLS.get()
    );
    status
}
