//! Memory: a service's own limit, and the kernel heap running low while
//! services grow and queue messages.

use super::platform::TestPlatform;
use super::probes::{code, holder, probe};
use super::system::{LIMITS, TestSystem};
use atoll_abi::Error;
use atoll_abi::bundle::ServiceLimits;

#[test]
fn memory_growth_past_the_limit_fails_inside_the_service() {
    // memory.grow returns -1 past the limit; the service sees it and goes on.
    let wat = r#"(module
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "refused")
        (func (export "_start")
            (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1))
                (then (drop (call $log (i32.const 0) (i32.const 7)))))))"#;
    let (system, summary) = TestSystem::new().service("grower", wat).run();
    assert_eq!(system.lines_of("grower"), ["refused"]);
    assert_eq!(summary.exited, 1);
}

#[test]
fn memory_growth_is_refused_when_the_kernel_heap_runs_low() {
    // Room to load (reserve, stack headroom, the code claimed by a lazily
    // translated program, its one page), not to grow by another.
    let grower = probe("", "(call $report (memory.grow (i32.const 1)))");
    let code = crate::preflight::compile_cost(&wat::parse_str(&grower).unwrap());
    let heap = crate::heap::KERNEL_HEAP_RESERVE
        + crate::heap::INTERPRETER_STACK_BYTES
        + code
        + 65_536
        + 30_000;
    let (system, summary) = TestSystem::new()
        .service("grower", grower)
        .limits(ServiceLimits {
            memory_bytes: 64 << 20,
            ..LIMITS
        })
        .platform(TestPlatform::new().heap_available(heap))
        .run();
    assert_eq!(system.lines_of("grower"), ["-1"], "{}", system.console());
    assert_eq!(summary.exited, 1);
}

#[test]
fn a_start_function_failing_on_a_growth_the_heap_refused_is_out_of_memory() {
    // The start function traps when its memory cannot grow: the kernel heap
    // refused, so loading fails for want of memory, not for the module's
    // fault (a supervisor or the host may try again).
    let module = r#"(module
        (memory (export "memory") 1)
        (func $s (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable)))
        (start $s)
        (func (export "_start")))"#;
    // Room to load (reserve, stack headroom, its one page), not to grow by
    // another (admitted at twice the memory, as it moves).
    let heap = crate::heap::KERNEL_HEAP_RESERVE + crate::heap::INTERPRETER_STACK_BYTES + 100_000;
    let system = TestSystem::new()
        .service("grower", module)
        .limits(ServiceLimits {
            memory_bytes: 64 << 20,
            ..LIMITS
        });
    let small = system.load_alone_on(TestPlatform::new().heap_available(heap));
    assert!(
        matches!(small, Err(crate::LoadError::OutOfMemory)),
        "{:?}",
        small.err()
    );
    // With room, the same module loads.
    assert!(system.load_alone().is_ok());
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
    let mut system = TestSystem::new();
    for index in 0..12 {
        system = system.service(&format!("grower{index}"), grower());
    }
    system = system
        .service("sink", sink())
        .provides("sink")
        .limits(ServiceLimits {
            queue_depth: 1024,
            ..LIMITS
        });
    let flooders = ["flood1", "flood2", "flood3"];
    for name in flooders {
        system = system.service(name, flooder()).uses("sink");
    }
    // The reserve, every interpreter's stack headroom, and 11 MiB: less than
    // the growers want (12 x 1 MiB), so they squeeze it.
    let services = 12 + 1 + flooders.len();
    let heap = crate::heap::KERNEL_HEAP_RESERVE
        + services * crate::heap::INTERPRETER_STACK_BYTES
        + (11 << 20);
    let (console, summary) = system.run_within_heap(heap);
    assert_eq!(summary.faulted, 0, "{console}");
    assert_eq!(summary.failed_to_load, 0, "{console}");
    let mut sent = 0;
    let mut refused_by_heap = 0;
    for name in flooders {
        let lines = super::system::lines_of(&console, name);
        let [count, reason] = lines.as_slice() else {
            panic!("{name}: {lines:?}\n{console}");
        };
        sent += count.parse::<u32>().unwrap();
        if *reason == code(Error::OutOfMemory) {
            refused_by_heap += 1;
        } else {
            assert_eq!(*reason, code(Error::QueueFull), "{console}");
        }
    }
    assert!(refused_by_heap > 0, "the heap never ran out: {console}");
    // Nothing queued was lost: the sink gets every message that was accepted.
    assert_eq!(
        super::system::lines_of(&console, "sink"),
        [sent.to_string()],
        "{console}"
    );
}

#[test]
fn a_lazy_program_keeps_its_code_bound_free_while_it_lives() {
    use crate::loader::{Program, Translation};
    let platform: alloc::sync::Arc<dyn crate::Platform> =
        alloc::sync::Arc::new(TestPlatform::new());
    let heap = crate::heap::Heap::new(platform);
    let bytes = wat::parse_str(probe("", "(call $report (i32.const 1))")).unwrap();
    let code = crate::heap::compile_cost(&bytes);
    let before = heap.kept_free();
    let lazy = Program::compile_with_shim(&bytes, &LIMITS, &heap, Translation::Lazy, None).unwrap();
    assert_eq!(heap.kept_free(), before + code);
    // An eager program's code exists once it is compiled: nothing to keep.
    let eager =
        Program::compile_with_shim(&bytes, &LIMITS, &heap, Translation::Eager, None).unwrap();
    assert_eq!(heap.kept_free(), before + code);
    drop((lazy, eager));
    assert_eq!(heap.kept_free(), before);
}

#[test]
fn small_messages_queued_after_large_ones_hold_about_what_the_budget_counts() {
    // Found by review: a 1-byte message queued in the 4 KiB buffer of a
    // large message taken before was charged 41 bytes against the message
    // budget while it held 4 KiB, so queues could hold many times the
    // budget. Now a spare buffer serves only a message it fits closely, and
    // the budget counts buffers' capacity. The client sends `big` 4,000
    // bytes (handed straight over: `big` waits in `receive`), then calls it
    // with 4,000 more (queued, as `big` is not waiting; taken and answered:
    // its buffer becomes spare), and sends 1 byte to `sink` (which never
    // receives), in turn; what 270 more rounds leave held must be about 270
    // small messages, not 270 large buffers (about 1.1 MB).
    let held = |rounds: u32| -> isize {
        let client = probe(
            "",
            &format!(
                "(loop $each
                    (drop (call $send (i32.const 1) (i32.const 4096) (i32.const 4000)))
                    (drop (call $call (i32.const 1) (i32.const 4096) (i32.const 4000) (i32.const 0) (i32.const 16)))
                    (drop (call $send (i32.const 2) (i32.const 0) (i32.const 1)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $each (i32.lt_u (local.get $i) (i32.const {rounds}))))"
            ),
        );
        let big = probe(
            "",
            "(loop $each
                (drop (call $receive (i32.const 1) (i32.const 10000) (i32.const 4096) (i64.const -1) (i32.const 200)))
                (drop (call $reply (call $token) (i32.const 0) (i32.const 0)))
                (br $each))",
        );
        // Waits for ever in a call nobody answers: its queue stays.
        let sink = probe(
            "",
            "(drop (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 16)))",
        );
        let mut system = TestSystem::new()
            .service("big", big)
            .provides("big")
            .service("hold", holder())
            .provides("hold")
            .service("sink", sink)
            .provides("sink")
            .uses("hold")
            .limits(ServiceLimits {
                queue_depth: 1024,
                ..LIMITS
            })
            .service("client", client)
            .uses("big")
            .uses("sink")
            .boot();
        system.platform.reserve_console(1 << 20);
        system.run();
        assert_eq!(system.state_of("client"), Some(crate::ServiceState::Exited));
        assert!(
            matches!(
                system.state_of("sink"),
                Some(crate::ServiceState::Blocked(crate::Wait::Reply { .. }))
            ),
            "{}",
            system.console()
        );
        crate::test_allocator::live_bytes()
    };
    let (few, many) = (held(30), held(300));
    assert!(
        many - few < 100 * 1024,
        "270 more rounds left {} more bytes held",
        many - few
    );
}
