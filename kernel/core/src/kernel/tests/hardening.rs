//! Host tests of the hardening review's findings: each hostile input that
//! once brought the kernel down, and what the kernel does with it now.

use super::*;

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

#[test]
fn nested_constant_expressions_are_refused_before_the_interpreter_recurses() {
    // 300,000 levels overflowed even the host's 8 MiB stack; 20,000 the kernel's.
    let deep = nested_const_module(300_000);
    let shallow = nested_const_module(4);
    assert!(crate::service::validate(&shallow).is_ok());
    assert!(matches!(
        crate::service::validate(&deep),
        Err(crate::LoadError::Preflight(_))
    ));
    let hello = wat::parse_str(hello("still here")).unwrap();
    let (console, summary) = run_images(&[
        ("deep", deep.as_slice(), LIMITS),
        ("hello", hello.as_slice(), LIMITS),
    ]);
    assert_eq!(summary.failed_to_load, 1, "{console}");
    assert_eq!(summary.exited, 1, "{console}");
    assert!(
        console.contains("service deep failed to load: invalid module: a constant expression in the global section has more than 128 operators"),
        "{console}"
    );
    assert!(console.contains("[hello] still here"), "{console}");
}

#[test]
fn a_hot_swap_to_nested_constant_expressions_is_refused() {
    // 20,000 levels (60 KB) double-faulted the kernel at swap time.
    let deep = nested_const_module(20_000);
    let (console, _) = run_swaps(&[deep], 1, 1);
    let refused = Error::InvalidModule.code().to_string();
    assert_eq!(
        lines_of(&console, "client"),
        ["101", refused.as_str(), "102"],
        "{console}"
    );
    assert!(
        console.contains("swap of svc refused: invalid module: a constant expression"),
        "{console}"
    );
}

/// Boots `specs` (each with its own limits) on a platform whose heap is the
/// calling thread's [`crate::test_allocator::FiniteHeap`], with the message
/// budget out of the way so that the heap alone stops what services queue.
fn run_on_finite_heap(
    specs: &[(Spec<'_>, ServiceLimits)],
    supervisor: Option<&str>,
    heap_bytes: usize,
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
    let platform = Arc::new(TestPlatform {
        finite_heap: true,
        ..TestPlatform::default()
    });
    let console_capacity = 1 << 20;
    platform.console.lock().unwrap().reserve(console_capacity);
    let heap = crate::test_allocator::FiniteHeap::new(heap_bytes);
    let (mut kernel, _) = Kernel::boot(&bytes, platform.clone()).unwrap();
    kernel.set_message_budget(usize::MAX);
    let summary = kernel.run();
    drop(kernel);
    drop(heap);
    let console = platform.console.lock().unwrap().clone();
    (console, summary)
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
fn a_squeezed_heap_refuses_queued_messages_instead_of_failing() {
    // Twelve services grow their memories as far as the heap lets them, then
    // three flood a server that does not read: before the kernel admitted
    // what it queues, this aborted with "memory allocation failed".
    let big = ServiceLimits {
        queue_depth: 1024,
        ..LIMITS
    };
    let growers: Vec<String> = (0..12).map(|index| format!("grower{index}")).collect();
    let mut specs: Vec<(Spec<'_>, ServiceLimits)> = growers
        .iter()
        .map(|name| {
            (
                Spec {
                    name,
                    wat: grower(),
                    provides: &[],
                    uses: &[],
                },
                LIMITS,
            )
        })
        .collect();
    specs.push((
        Spec {
            name: "sink",
            wat: sink(),
            provides: &["sink"],
            uses: &[],
        },
        big,
    ));
    for name in ["flood1", "flood2", "flood3"] {
        specs.push((
            Spec {
                name,
                wat: flooder(),
                provides: &[],
                uses: &["sink"],
            },
            LIMITS,
        ));
    }
    let (console, summary) = run_on_finite_heap(&specs, None, 52 << 20);
    assert_eq!(summary.faulted, 0, "{console}");
    assert_eq!(summary.failed_to_load, 0, "{console}");
    let mut sent = 0;
    let mut refused_by_heap = 0;
    for name in ["flood1", "flood2", "flood3"] {
        let lines = lines_of(&console, name);
        let [count, code] = lines.as_slice() else {
            panic!("{name}: {lines:?}\n{console}");
        };
        sent += count.parse::<u32>().unwrap();
        if code == &Error::OutOfMemory.code().to_string() {
            refused_by_heap += 1;
        } else {
            assert_eq!(code, &Error::QueueFull.code().to_string(), "{console}");
        }
    }
    assert!(refused_by_heap > 0, "the heap never ran out: {console}");
    // Nothing queued was lost: the sink gets every message that was accepted.
    assert_eq!(lines_of(&console, "sink"), [sent.to_string()], "{console}");
}
