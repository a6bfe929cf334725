//! Host tests of the hardening review's findings: each hostile input that
//! once brought the kernel down, and what the kernel does with it now.

use super::*;
use crate::LoadError;

/// `value` as unsigned LEB128.
fn leb(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// Loads `module` alone, outside any kernel, on an unlimited test platform.
fn load_alone(module: &[u8], limits: ServiceLimits) -> Result<Service, crate::LoadError> {
    let platform: Arc<dyn Platform> = Arc::new(TestPlatform::default());
    let heap = crate::heap::Heap::new(Arc::clone(&platform));
    let image = ServiceImage {
        name: "alone",
        module,
        limits,
        provides: vec![],
        uses: vec![],
        supervisor: false,
        restart: RestartPolicy::default(),
        args: vec![],
        env: vec![],
        grants: Default::default(),
    };
    Service::load(&image, Vec::new(), platform, &heap)
}

/// A valid service (memory, `_start`) whose one global is initialised by
/// `depth` nested `i32.add`: written as bytes, since text this deep is slow.
pub(super) fn nested_const_module(depth: usize) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module); // type 0: () -> ()
    section(3, &[1, 0], &mut module); // one function of type 0
    section(5, &[1, 0, 1], &mut module); // memory, min 1 page
    let mut global = vec![1, 0x7f, 0, 0x41, 1]; // i32, immutable, i32.const 1
    for _ in 0..depth {
        global.extend_from_slice(&[0x41, 1, 0x6a]); // i32.const 1; i32.add
    }
    global.push(0x0b);
    section(6, &global, &mut module);
    let mut exports = vec![2];
    for (name, kind) in [(&b"memory"[..], 2u8), (&b"_start"[..], 0u8)] {
        leb(name.len(), &mut exports);
        exports.extend_from_slice(name);
        exports.extend_from_slice(&[kind, 0]);
    }
    section(7, &exports, &mut module);
    section(10, &[1, 2, 0, 0x0b], &mut module); // one body: no locals, end
    module
}

/// Boots `specs` (each with its own limits) on `platform`, with the message
/// budget set if given, and runs them to the end.
fn run_on(
    specs: &[(Spec<'_>, ServiceLimits)],
    supervisor: Option<&str>,
    platform: &Arc<TestPlatform>,
    budget: Option<usize>,
) -> (String, RunSummary) {
    let modules: Vec<Vec<u8>> = specs
        .iter()
        .map(|(spec, _)| wat::parse_str(&spec.wat).unwrap())
        .collect();
    let bundle = Bundle {
        kernel: KernelSettings {
            system_name: "test".into(),
            exit_when_idle: true,
            inject_fault: None,
        },
        services: specs
            .iter()
            .zip(&modules)
            .map(|((spec, limits), module)| ServiceImage {
                name: spec.name,
                module,
                limits: *limits,
                provides: spec.provides.to_vec(),
                uses: spec.uses.to_vec(),
                supervisor: supervisor == Some(spec.name),
                restart: RestartPolicy::default(),
                args: Vec::new(),
                env: Vec::new(),
                grants: Default::default(),
            })
            .collect(),
    };
    let bytes = bundle::encode(&bundle).unwrap();
    let (mut kernel, _) = Kernel::boot(&bytes, platform.clone()).unwrap();
    if let Some(budget) = budget {
        kernel.set_message_budget(budget);
    }
    let summary = kernel.run();
    drop(kernel);
    let console = platform.console.lock().unwrap().clone();
    (console, summary)
}

/// [`run_on`] a platform whose heap is the calling thread's
/// [`crate::test_allocator::FiniteHeap`] of `heap_bytes`, with the message
/// budget out of the way so that the heap alone stops what services queue.
fn run_on_finite_heap(
    specs: &[(Spec<'_>, ServiceLimits)],
    supervisor: Option<&str>,
    heap_bytes: usize,
) -> (String, RunSummary) {
    let platform = Arc::new(TestPlatform {
        finite_heap: true,
        ..TestPlatform::default()
    });
    // The console's growth is the test's, not the kernel's.
    platform.console.lock().unwrap().reserve(1 << 20);
    let heap = crate::test_allocator::FiniteHeap::new(heap_bytes);
    let result = run_on(specs, supervisor, &platform, Some(usize::MAX));
    drop(heap);
    result
}

/// Grows its memory a page at a time until refused, then logs the pages it got.
fn grower() -> String {
    probe(
        "",
        "(loop $grow
            (br_if $grow (i32.ge_s (memory.grow (i32.const 1)) (i32.const 0))))
         (call $report (memory.size))",
    )
}

/// Sends 4 KiB messages on handle 1 until refused; logs how many went and why
/// it stopped.
fn flooder() -> String {
    probe(
        "",
        "(drop (call $sleep (i64.const 100000000)))
         (loop $flood
            (local.set $r (call $send (i32.const 1) (i32.const 0) (i32.const 4096)))
            (if (i32.ge_s (local.get $r) (i32.const 0)) (then
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $flood))))
         (call $report (local.get $i))
         (call $report (local.get $r))",
    )
}

/// Sleeps while the others squeeze the heap, then drains its queue and logs
/// how many messages it got.
fn sink() -> String {
    probe(
        "",
        "(drop (call $sleep (i64.const 1000000000)))
         (loop $drain
            (local.set $r (call $receive (i32.const 1) (i32.const 0) (i32.const 4096) (i64.const 0) (i32.const 200)))
            (if (i32.ge_s (local.get $r) (i32.const 0)) (then
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $drain))))
         (call $report (local.get $i))",
    )
}

#[test]
fn a_driver_that_acknowledges_without_receiving_gets_one_notification() {
    // Before: one more notification queued per acknowledgement, without bound.
    let module = wat::parse_str(
        r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (import "atoll" "irq_ack" (func $irq_ack (param i32) (result i32)))
            (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
            (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "notifications: ?")
            (func (export "_start") (local $i i32) (local $n i32)
                (loop $ack
                    (drop (call $irq_ack (i32.const 5)))
                    (drop (call $sleep (i64.const 1000)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $ack (i32.lt_u (local.get $i) (i32.const 50))))
                (loop $drain
                    (if (i32.ge_s (call $receive (i32.const 1) (i32.const 100) (i32.const 16)
                            (i64.const 0) (i32.const 200)) (i32.const 0)) (then
                        (local.set $n (i32.add (local.get $n) (i32.const 1)))
                        (br $drain))))
                (i32.store8 (i32.const 15) (i32.add (i32.const 48) (local.get $n)))
                (drop (call $log (i32.const 0) (i32.const 16)))))"#,
    )
    .unwrap();
    let bundle = bundle::encode(&Bundle {
        kernel: KernelSettings {
            system_name: "test".into(),
            exit_when_idle: true,
            inject_fault: None,
        },
        services: vec![ServiceImage {
            name: "driver",
            module: &module,
            limits: LIMITS,
            provides: vec!["dev"],
            uses: vec![],
            supervisor: false,
            restart: RestartPolicy::default(),
            args: vec![],
            env: vec![],
            grants: atoll_abi::driver::Grants {
                irqs: vec![5],
                ..Default::default()
            },
        }],
    })
    .unwrap();
    let platform = Arc::new(TestPlatform {
        refire: true,
        ..TestPlatform::default()
    });
    let (mut kernel, _) = Kernel::boot(&bundle, platform.clone()).unwrap();
    let summary = kernel.run();
    let console = platform.console.lock().unwrap().clone();
    assert_eq!(summary.faulted, 0, "{console}");
    assert_eq!(
        lines_of(&console, "driver"),
        ["notifications: 1"],
        "{console}"
    );
}

/// A service that ends at once.
const ENDS_AT_ONCE: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Iterations of a counting loop (kept at address 0) after `slices` slices,
/// with `random_get` over `random_bytes` first (none if 0).
fn iterations_after(random_bytes: u32, slices: usize) -> u32 {
    let module = wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
            (memory (export "memory") 32)
            (func (export "_start")
                (if (i32.ne (i32.const {random_bytes}) (i32.const 0)) (then
                    (drop (call $random (i32.const 64) (i32.const {random_bytes})))))
                (loop $count
                    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
                    (br $count))))"#
    ))
    .unwrap();
    let limits = ServiceLimits {
        memory_bytes: 4 << 20,
        ..LIMITS
    };
    let mut service = load_alone(&module, limits).unwrap();
    for _ in 0..slices {
        assert_eq!(service.run_slice(0, true), SliceOutcome::Preempted);
    }
    let counter = service
        .read_memory(crate::guest::GuestSlice::new(0, 4), 4)
        .unwrap();
    u32::from_le_bytes(counter.try_into().unwrap())
}

/// A valid service with `functions` empty functions, a passive element
/// segment of `items` references to function 0, and `globals` i32 globals.
fn shaped_module(functions: usize, items: usize, globals: usize) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    let mut declared = Vec::new();
    leb(functions.max(1), &mut declared);
    declared.resize(declared.len() + functions.max(1), 0);
    section(3, &declared, &mut module);
    section(5, &[1, 0, 1], &mut module);
    if globals > 0 {
        let mut body = Vec::new();
        leb(globals, &mut body);
        for _ in 0..globals {
            body.extend_from_slice(&[0x7f, 0, 0x41, 0, 0x0b]);
        }
        section(6, &body, &mut module);
    }
    let mut exports = vec![2];
    for (name, kind) in [(&b"memory"[..], 2u8), (&b"_start"[..], 0u8)] {
        leb(name.len(), &mut exports);
        exports.extend_from_slice(name);
        exports.extend_from_slice(&[kind, 0]);
    }
    section(7, &exports, &mut module);
    if items > 0 {
        // One passive segment (flags 1), elemkind funcref (0), `items` x func 0.
        let mut body = vec![1, 1, 0];
        leb(items, &mut body);
        body.resize(body.len() + items, 0);
        section(9, &body, &mut module);
    }
    let mut code = Vec::new();
    leb(functions.max(1), &mut code);
    for _ in 0..functions.max(1) {
        code.extend_from_slice(&[2, 0, 0x0b]);
    }
    section(10, &code, &mut module);
    module
}

/// A service module with `items` between its memory export and `_start`.
fn service_with(items: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) {items} (func $f) (func (export "_start")))"#
    ))
    .unwrap()
}
