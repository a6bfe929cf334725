//! Fuzz target: the host ABI. Two services (either may be the supervisor)
//! call random host functions of Atoll and WASI with random arguments in a
//! random order: pointers and lengths at the edges of their memory, handles
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

/// A host function: import module, name, parameters, results.
type Function = (
    &'static str,
    &'static str,
    &'static [ValueType],
    &'static [ValueType],
);

/// Every function a service may call.
fn functions() -> Vec<Function> {
    atoll_abi::HOST_FUNCTIONS
        .iter()
        .map(|f| (atoll_abi::IMPORT_MODULE, f.name, f.params, f.results))
        .chain(
            atoll_abi::wasi::FUNCTIONS
                .iter()
                .map(|f| (atoll_abi::wasi::IMPORT_MODULE, f.name, f.params, f.results)),
        )
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

/// A service calling host functions picked by `input`, as WAT. Returns it
/// and the number of calls it makes.
fn service(input: &mut Unstructured<'_>) -> arbitrary::Result<(String, usize)> {
    let functions = functions();
    let mut wat = String::from("(module\n");
    for (index, (module, name, params, results)) in functions.iter().enumerate() {
        let _ = writeln!(
            wat,
            "  (import \"{module}\" \"{name}\" (func $f{index} (param{}) (result{})))",
            hosted::types(params),
            hosted::types(results)
        );
    }
    // Names a call may find: its endpoints and the services.
    wat.push_str("  (memory (export \"memory\") 1)\n  (data (i32.const 0) \"pa pb a b\")\n");
    wat.push_str("  (func (export \"_start\")\n");
    let count = input.int_in_range(0..=MAX_CALLS)?;
    for _ in 0..count {
        let index = input.choose_index(functions.len())?;
        let Some((_, name, params, results)) = functions.get(index) else {
            continue;
        };
        let _ = write!(wat, "    (call $f{index}");
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
    wat.push_str("  ))\n");
    Ok((wat, count))
}

thread_local! {
    static WARM: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static KERNEL_CALLS: Cell<u64> = const { Cell::new(0) };
}

fn target(bytes: &[u8]) -> Outcome {
    let mut input = Unstructured::new(bytes);
    let (Ok((a, a_calls)), Ok((b, b_calls)), Ok(supervisor)) = (
        service(&mut input),
        service(&mut input),
        input.int_in_range(0..=2u8),
    ) else {
        return "short input";
    };
    let (a, b) = match (wat::parse_str(&a), wat::parse_str(&b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(error), _) | (_, Err(error)) => {
            panic!("a generated service does not assemble: {error}")
        }
    };
    let before = ALLOCATOR.allocated();
    let ran = hosted::run(&[
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
            supervisor: supervisor == 2,
        },
    ]);
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
