//! Fuzz target: the host ABI. Two services call random host functions with
//! random arguments in a random order: one (maybe the supervisor) the ABI's,
//! the other a WASI program whose shim calls the ABI's and the shim's own
//! kernel functions (`program_read`, `print`, `exit`, ...), with pointers
//! and lengths at the edges of both its memories; handles
//! and tokens valid and not, timeouts from none to for ever. The first may
//! also serve its endpoint (a loop of `reply_receive`) and export a
//! handler (`atoll_handle`) that makes random calls too, then returns an
//! answer at the edges of its memory, defers, declines, traps or runs past
//! its slice; a third service calls that endpoint, so that calls switch to
//! the waiting server and run its handler (docs/abi.md, "Handlers"). They
//! run in a hosted kernel on a virtual clock until nothing can run. No
//! panic, and the process heap after the kernel is dropped is where it was
//! before it booted (checked with a counting allocator, after one warm-up
//! input).
#![forbid(unsafe_code)]

use arbitrary::{Arbitrary, Unstructured};
use atoll_abi::ValueType;
use atoll_fuzz::Outcome;
use atoll_fuzz::hosted::{self, Spec, VirtualPlatform};
use std::cell::Cell;
use std::fmt::Write;
use std::process::ExitCode;
use std::sync::Arc;

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

/// The text a handler logs first, and its line on the console, which the
/// platform counts.
const HANDLER_MARK: &str = "upcall!";
const HANDLER_LINE: &str = "[a] upcall!";

/// Calls the served loop answers at most, and the third service makes at most.
const SERVE_ROUNDS: u32 = 16;

/// The ABI's function called `name`, as [`hosted::shim_wat`] names it.
fn abi_id(name: &str) -> String {
    let index = atoll_abi::HOST_FUNCTIONS
        .iter()
        .position(|function| function.name == name)
        .unwrap_or(0);
    format!("$a{index}")
}

/// A module's imports of every ABI function, its memory, and the names a
/// call may find (its endpoints and the services).
fn abi_module_head() -> String {
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
    let _ = writeln!(
        wat,
        "  (memory (export \"memory\") 1)\n  (data (i32.const 0) \"pa pb a b\")"
    );
    wat
}

/// What a handler returns: the kernel's two special answers, an answer
/// `(ptr << 32) | len` at the edges of a one-page memory, or anything.
fn handler_result(input: &mut Unstructured<'_>) -> arbitrary::Result<i64> {
    const PTRS: [i64; 6] = [0, 1024, 65_520, 65_535, 65_536, 0x7fff_ffff];
    const LENS: [i64; 6] = [0, 16, 64, 4096, 4097, 65_536];
    Ok(match input.int_in_range(0..=3)? {
        0 => atoll_abi::HANDLER_DEFERRED,
        1 => atoll_abi::HANDLER_DECLINED,
        2 => (*input.choose(&PTRS)? << 32) | *input.choose(&LENS)?,
        _ => i64::arbitrary(input)?,
    })
}

/// The shape of an `atoll_handle` export, if `input` asks for one: of the
/// wrong type (the kernel then calls no handler), or what its body ends
/// with: a result picked by `input`, a trap, or a spin past its slice
/// first.
enum Handler {
    WrongType,
    Ends(String),
}

fn handler_shape(input: &mut Unstructured<'_>) -> arbitrary::Result<Option<Handler>> {
    Ok(match input.int_in_range(0..=7u8)? {
        0 => None,
        1 => Some(Handler::WrongType),
        2 => Some(Handler::Ends("    unreachable\n".to_string())),
        3 => {
            // At least one unit of fuel a round: from 10,000 rounds the
            // slice of 10,000 runs out in the loop.
            let rounds = input.int_in_range(10_000..=40_000u32)?;
            Some(Handler::Ends(format!(
                "    (loop $spin (local.set 2 (i32.add (local.get 2) (i32.const 1)))\n      (br_if $spin (i32.lt_u (local.get 2) (i32.const {rounds}))))\n    (i64.const {})\n",
                handler_result(input)?
            )))
        }
        _ => Some(Handler::Ends(format!(
            "    (i64.const {})\n",
            handler_result(input)?
        ))),
    })
}

/// The export of `shape`, as WAT: it writes the mark at 16 and logs it
/// (the line the platform counts), runs `body`, then ends as `shape` says.
fn handler_wat(shape: Option<Handler>, body: &str) -> String {
    let mut mark = [0u8; 8];
    mark.iter_mut()
        .zip(HANDLER_MARK.bytes())
        .for_each(|(byte, text)| *byte = text);
    let (mark, log) = (i64::from_le_bytes(mark), abi_id("log"));
    match shape {
        None => String::new(),
        Some(Handler::WrongType) => {
            "  (func (export \"atoll_handle\") (param i32) (result i32) (i32.const 0))\n"
                .to_string()
        }
        Some(Handler::Ends(end)) => format!(
            "  (func (export \"atoll_handle\") (param i32 i32) (result i64) (local i32)\n    (i64.store (i32.const 16) (i64.const {mark}))\n    (drop (call {log} (i32.const 16) (i32.const {})))\n{body}{end}  )\n",
            HANDLER_MARK.len()
        ),
    }
}

/// A service calling the ABI's functions picked by `input`, and maybe
/// serving its endpoint (handle 1), before or after those calls, for up to
/// [`SERVE_ROUNDS`] messages with `receive` and `reply_receive` (each
/// waiting for ever, or 1 ms), and maybe with a handler export, as WAT.
/// Returns it and the number of calls it makes.
fn service(input: &mut Unstructured<'_>) -> arbitrary::Result<(String, usize)> {
    let mut wat = abi_module_head();
    let serve = match input.int_in_range(0..=4u8)? {
        0 => String::new(),
        shape => {
            // A receive with a timeout is never stood in for by an upcall.
            let timeout = if shape < 4 { -1 } else { 1_000_000 };
            // The info record at 2048 (its token first), the message at
            // 1024, the answer (the message's first 16 bytes) from 1024,
            // the answer's status at 2056.
            let (receive, reply_receive) = (abi_id("receive"), abi_id("reply_receive"));
            format!(
                "    (drop (call {receive} (i32.const 1) (i32.const 1024) (i32.const 64) (i64.const {timeout}) (i32.const 2048)))\n    (loop $serve\n      (drop (call {reply_receive} (i32.load (i32.const 2048)) (i32.const 1024) (i32.const 16) (i32.const 2056) (i32.const 1) (i32.const 1024) (i32.const 64) (i64.const {timeout}) (i32.const 2048)))\n      (local.set 0 (i32.add (local.get 0) (i32.const 1)))\n      (br_if $serve (i32.lt_u (local.get 0) (i32.const {SERVE_ROUNDS}))))\n"
            )
        }
    };
    let serve_first = input.arbitrary::<bool>()?;
    let handler = handler_shape(input)?;
    // The structure first, then the calls: an input that runs out leaves
    // the calls short, not the structure at its defaults.
    let (body, count) = calls(input, &abi_functions())?;
    let logs = matches!(handler, Some(Handler::Ends(_)));
    let (handler_body, handler_calls) = if logs {
        calls(input, &abi_functions())?
    } else {
        (String::new(), 0)
    };
    // Call sites written besides the random ones: the loop's two, the
    // handler's log.
    let fixed = 2 * usize::from(!serve.is_empty()) + usize::from(logs);
    let handler = handler_wat(handler, &handler_body);
    let (first, then) = if serve_first {
        (serve, body)
    } else {
        (body, serve)
    };
    let _ = write!(
        wat,
        "  (func (export \"_start\") (local i32)\n{first}{then}  )\n{handler})\n"
    );
    Ok((wat, count + handler_calls + fixed))
}

/// A service that sleeps (none, 1 ms or 100 ms: the WASI program may be
/// done by then, and a call switches to its server only when no other
/// service is ready), then calls the first one's endpoint (its handle 1) up
/// to [`SERVE_ROUNDS`] times, with requests and reply buffers picked by
/// `input` (at the edges of its memory too), as WAT. Returns it and the
/// number of calls written (the call is made `rounds` times).
fn caller(input: &mut Unstructured<'_>) -> arbitrary::Result<(String, usize)> {
    const REQUEST_PTRS: [i32; 6] = [0, 0, 0, 65_528, 65_536, -1];
    const LENS: [i32; 6] = [0, 1, 16, 16, 64, 4097];
    const REPLY_PTRS: [i32; 6] = [256, 256, 256, 65_520, 65_536, -1];
    const CAPS: [i32; 5] = [0, 8, 16, 64, 4096];
    let mut wat = abi_module_head();
    let rounds = input.int_in_range(0..=SERVE_ROUNDS)?;
    let sleep = *input.choose(&[0i64, 1_000_000, 100_000_000])?;
    let (request, len, reply, cap) = (
        *input.choose(&REQUEST_PTRS)?,
        *input.choose(&LENS)?,
        *input.choose(&REPLY_PTRS)?,
        *input.choose(&CAPS)?,
    );
    let (call, sleep_id) = (abi_id("call"), abi_id("sleep"));
    let _ = write!(
        wat,
        "  (func (export \"_start\") (local i32)\n    (drop (call {sleep_id} (i64.const {sleep})))\n    (block $done (loop $calls\n      (br_if $done (i32.ge_u (local.get 0) (i32.const {rounds})))\n      (drop (call {call} (i32.const 1) (i32.const {request}) (i32.const {len}) (i32.const {reply}) (i32.const {cap})))\n      (local.set 0 (i32.add (local.get 0) (i32.const 1)))\n      (br $calls)))\n  ))\n"
    );
    Ok((wat, 2))
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
    static RUNS: Cell<u64> = const { Cell::new(0) };
    static HANDLED: Cell<u64> = const { Cell::new(0) };
}

/// Inputs after which a run must have seen a handler run (about a fifth of
/// inputs run one): fewer means the generator or the kernel no longer
/// reaches the upcall path, and the run fails.
const HANDLERS_EXPECTED_BY: u64 = 500;

fn target(bytes: &[u8]) -> Outcome {
    let mut input = Unstructured::new(bytes);
    // The small choices first (see `service`).
    let (Ok(supervisor), Ok((c, c_calls)), Ok((a, a_calls)), Ok((b, shim, b_calls))) = (
        // The first service is the supervisor in a quarter of the inputs
        // (no call switches to the supervisor).
        input.int_in_range(0..=3u8),
        caller(&mut input),
        service(&mut input),
        wasi_service(&mut input),
    ) else {
        return "short input";
    };
    let assemble = |wat: &str| match wat::parse_str(wat) {
        Ok(module) => module,
        Err(error) => panic!("a generated module does not assemble: {error}\n{wat}"),
    };
    if std::env::var_os("FUZZ_WAT").is_some() {
        println!("supervisor {}\n{a}\n{c}", supervisor == 0);
    }
    let (a, b, shim, c) = (assemble(&a), assemble(&b), assemble(&shim), assemble(&c));
    let platform = Arc::new(VirtualPlatform::marking(HANDLER_LINE));
    let before = ALLOCATOR.allocated();
    let ran = hosted::run_on(
        &[
            Spec {
                name: "a",
                module: &a,
                provides: vec!["pa"],
                uses: vec!["pb"],
                supervisor: supervisor == 0,
            },
            Spec {
                name: "b",
                module: &b,
                provides: vec!["pb"],
                uses: vec!["pa"],
                supervisor: false,
            },
            Spec {
                name: "c",
                module: &c,
                provides: vec![],
                uses: vec!["pa"],
                supervisor: false,
            },
        ],
        Some(&shim),
        Arc::clone(&platform),
    );
    let after = ALLOCATOR.allocated();
    // The kernel dropped its handle on the platform with itself.
    assert_eq!(
        Arc::strong_count(&platform),
        1,
        "the kernel's platform outlived it"
    );
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
    CALLS.set(CALLS.get() + (a_calls + b_calls + c_calls) as u64);
    KERNEL_CALLS.set(KERNEL_CALLS.get() + kernel_calls);
    if summary.failed_to_load > 0 {
        panic!("a generated service failed to load: {summary}");
    }
    let handled = platform.marked() > 0;
    RUNS.set(RUNS.get() + 1);
    HANDLED.set(HANDLED.get() + u64::from(handled));
    match (summary.faulted > 0, summary.blocked > 0, handled) {
        (true, _, true) => "faulted, a handler ran",
        (true, _, false) => "faulted",
        (false, true, true) => "waiting for ever, a handler ran",
        (false, true, false) => "waiting for ever",
        (false, false, true) => "ran to the end, a handler ran",
        (false, false, false) => "ran to the end",
    }
}

fn main() -> ExitCode {
    let status = atoll_fuzz::run("host-abi", 4096, target);
    println!(
        "fuzz host-abi: {} host calls written into the generated services (each call site once), {} kernel calls counted by the kernel",
        CALLS.get(),
        KERNEL_CALLS.get()
    );
    if RUNS.get() >= HANDLERS_EXPECTED_BY && HANDLED.get() == 0 {
        eprintln!(
            "fuzz host-abi: no handler ran in {} systems: the upcall path is no longer reached",
            RUNS.get()
        );
        return ExitCode::from(1);
    }
    status
}
