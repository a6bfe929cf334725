//! Booting: bundles, services that load or are refused (by `image-builder
//! check` and by the loader alike), and entry points that end.

use super::probes::{hello, leb, nested_const_module, section, service_exports, service_with};
use super::system::{LIMITS, TestSystem};
use crate::preflight::PreflightError;
use crate::{BootError, Kernel, LoadError, Platform, RunSummary, ServiceState};
use alloc::sync::Arc;
use atoll_abi::bundle::DecodeError;

#[test]
fn hello_logs_with_its_name_and_system_becomes_ready_once() {
    let (system, summary) = TestSystem::new()
        .service("hello", hello("hi there"))
        .service("second", hello("me too"))
        .run();
    assert_eq!(system.lines_of("hello"), ["hi there"]);
    assert_eq!(system.lines_of("second"), ["me too"]);
    assert_eq!(system.state_of("hello"), Some(ServiceState::Exited));
    assert_eq!(system.state_of("second"), Some(ServiceState::Exited));
    let console = system.console();
    assert_eq!(
        console
            .matches("atoll: system ready (2 services)\n")
            .count(),
        1,
        "{console}"
    );
    assert_eq!(
        summary,
        RunSummary {
            exited: 2,
            faulted: 0,
            failed_to_load: 0,
            blocked: 0,
        }
    );
}

#[test]
fn a_trapping_service_faults_alone() {
    let trap = r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;
    let (system, summary) = TestSystem::new()
        .service("bad", trap)
        .service("hello", hello("fine"))
        .run();
    assert!(
        matches!(system.state_of("bad"), Some(ServiceState::Faulted(_))),
        "{}",
        system.console()
    );
    assert_eq!(system.state_of("hello"), Some(ServiceState::Exited));
    assert_eq!(system.lines_of("hello"), ["fine"]);
    assert_eq!(
        summary,
        RunSummary {
            exited: 1,
            faulted: 1,
            failed_to_load: 0,
            blocked: 0,
        }
    );
}

#[test]
fn services_that_cannot_load_are_reported_and_skipped() {
    let wat = |text: &str| wat::parse_str(text).unwrap();
    type Expected = fn(&LoadError) -> bool;
    let cases: [(&str, Vec<u8>, Expected); 8] = [
        ("garbage", vec![0u8, 1, 2, 3], |error| {
            matches!(error, LoadError::Compile(_))
        }),
        (
            "unknown-import",
            wat(
                r#"(module (import "atoll" "nope" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            |error| {
                matches!(error, LoadError::UnknownImports(imports)
                    if imports == &[("atoll".into(), "nope".into())])
            },
        ),
        (
            "other-module",
            wat(
                r#"(module (import "env" "log" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            |error| {
                matches!(error, LoadError::UnknownImports(imports)
                    if imports == &[("env".into(), "log".into())])
            },
        ),
        (
            "wrong-signature",
            wat(
                r#"(module (import "atoll" "log" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            |error| matches!(error, LoadError::ImportSignature(module, name) if module == "atoll" && name == "log"),
        ),
        (
            "no-entry",
            wat(r#"(module (memory (export "memory") 1))"#),
            |error| matches!(error, LoadError::MissingEntryPoint),
        ),
        (
            "no-memory",
            wat(r#"(module (func (export "_start")))"#),
            |error| matches!(error, LoadError::MissingMemory),
        ),
        (
            "too-big",
            wat(r#"(module (memory (export "memory") 32) (func (export "_start")))"#),
            |error| {
                matches!(
                    error,
                    LoadError::MemoryAboveLimit {
                        initial_bytes: 0x20_0000,
                        limit_bytes: 0x10_0000
                    }
                )
            },
        ),
        (
            "start-loops",
            wat(
                r#"(module (memory (export "memory") 1) (func $s (loop $l (br $l))) (start $s) (func (export "_start")))"#,
            ),
            |error| matches!(error, LoadError::Instantiate(_)),
        ),
    ];
    let good = wat(&hello("ok"));
    assert!(crate::loader::validate(&good, &LIMITS).is_ok());
    for (name, module, expected) in cases {
        let system = TestSystem::new().module(name, module.clone());
        let Err(error) = system.load_alone() else {
            panic!("{name} loaded");
        };
        assert!(expected(&error), "{name}: {error:?}");
        if name != "start-loops" {
            assert!(crate::loader::validate(&module, &LIMITS).is_err(), "{name}");
        }
        let (system, summary) = system.module("hello", good.clone()).run();
        let console = system.console();
        // Reported with the loader's reason, and left out of the system.
        assert!(
            console.contains(&format!("atoll: service {name} failed to load: {error}\n")),
            "{name}: {console}"
        );
        assert_eq!(system.state_of(name), None, "{name}");
        assert_eq!(system.lines_of("hello"), ["ok"], "{name}: {console}");
        assert_eq!(
            summary,
            RunSummary {
                exited: 1,
                faulted: 0,
                failed_to_load: 1,
                blocked: 0,
            }
        );
    }
}

#[test]
fn malformed_bundles_are_boot_errors() {
    let platform: Arc<dyn Platform> = Arc::new(super::platform::TestPlatform::new());
    assert_eq!(
        Kernel::boot(b"short", platform.clone()).err(),
        Some(BootError::Bundle(DecodeError::Truncated))
    );
    let mut bytes = TestSystem::new().bundle();
    bytes.truncate(bytes.len() - 1);
    assert_eq!(
        Kernel::boot(&bytes, platform).err(),
        Some(BootError::Bundle(DecodeError::Malformed))
    );
}

#[test]
fn an_empty_system_is_ready_at_once() {
    let (system, summary) = TestSystem::new().run();
    let console = system.console();
    assert!(
        console.contains("atoll: system ready (0 services)"),
        "{console}"
    );
    assert_eq!(system.kernel.service_states().len(), 0);
    assert_eq!(summary, RunSummary::default());
}

#[test]
fn kernel_calls_tail_called_from_start_end_the_service_cleanly() {
    // `return_call` from `_start` to a host function that suspends: before,
    // "faulted: suspended in a kernel call".
    let exit = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (return_call $exit (i32.const 7))))"#;
    let sleeper = r#"(module
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (memory (export "memory") 1)
        (func $body (result i32) (return_call $sleep (i64.const 1000)))
        (func (export "_start") (drop (call $body))))"#;
    let tail_sleeper = r#"(module
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start") (return_call $sleep2))
        (func $sleep2 (drop (call $sleep (i64.const 1000)))))"#;
    let (system, summary) = TestSystem::new()
        .wasi_shim(super::wasi::test_shim())
        .service("exit", exit)
        .service("sleeper", sleeper)
        .service("tail-sleeper", tail_sleeper)
        .run();
    let console = system.console();
    assert_eq!(summary.faulted, 0, "{console}");
    assert_eq!(summary.exited, 3, "{console}");
    for name in ["exit", "sleeper", "tail-sleeper"] {
        assert_eq!(system.state_of(name), Some(ServiceState::Exited), "{name}");
    }
    // The exit status is only in the kernel's report.
    assert!(
        console.contains("atoll: service exit exited with status 7"),
        "{console}"
    );
}

// Module checks: `validate` (image-builder check) and the loader agree.

#[test]
fn nested_constant_expressions_are_refused_before_the_interpreter_recurses() {
    // 300,000 levels overflowed even the host's 8 MiB stack; 20,000 the kernel's.
    let deep = nested_const_module(300_000);
    let shallow = nested_const_module(4);
    let too_long = |result: Result<_, LoadError>| {
        matches!(
            result,
            Err(LoadError::Preflight(PreflightError::ConstExprTooLong {
                section: "global"
            }))
        )
    };
    assert!(crate::loader::validate(&shallow, &LIMITS).is_ok());
    assert!(too_long(crate::loader::validate(&deep, &LIMITS).map(drop)));
    let system = TestSystem::new().module("deep", deep);
    assert!(too_long(system.load_alone().map(drop)));
    let (system, summary) = system.service("hello", hello("still here")).run();
    let console = system.console();
    assert_eq!(summary.failed_to_load, 1, "{console}");
    assert_eq!(summary.exited, 1, "{console}");
    assert_eq!(system.state_of("deep"), None);
    assert_eq!(system.lines_of("hello"), ["still here"], "{console}");
}

#[test]
fn check_and_loader_refuse_the_same_memories_tables_and_segments() {
    // Before: `validate` (image-builder check) passed all of these, and the
    // kernel refused them at boot, one with wasmi's Debug text of a table.
    let limit = u64::from(LIMITS.memory_bytes);
    let cases: Vec<(&str, Vec<u8>, LoadError)> = vec![
        (
            "two-memories",
            service_with("(memory 1)"),
            LoadError::TooManyMemories(2),
        ),
        (
            "two-tables",
            service_with("(table 1 funcref) (table 1 funcref)"),
            LoadError::TooManyTables(2),
        ),
        (
            "big-memory",
            wat::parse_str(r#"(module (memory (export "memory") 17) (func (export "_start")))"#)
                .unwrap(),
            LoadError::MemoryAboveLimit {
                initial_bytes: 17 * 65536,
                limit_bytes: limit,
            },
        ),
        (
            "big-table",
            service_with("(table 100001 funcref)"),
            LoadError::TableAboveLimit { initial: 100_001 },
        ),
        (
            "data-past-the-end",
            service_with(r#"(data (i32.const 100) "x") (data (i32.const 65535) "ab")"#),
            LoadError::DataOutOfBounds {
                segment: 1,
                offset: 65535,
                end: 65537,
                memory_bytes: 65536,
            },
        ),
        (
            "data-at-a-computed-offset",
            service_with(r#"(data (i32.add (i32.const 65000) (i32.const 600)) "x")"#),
            LoadError::DataOutOfBounds {
                segment: 0,
                offset: 65600,
                end: 65601,
                memory_bytes: 65536,
            },
        ),
        (
            "elements-past-the-end",
            service_with("(table 2 funcref) (elem (i32.const 1) func $f $f)"),
            LoadError::ElementOutOfBounds {
                segment: 0,
                offset: 1,
                end: 3,
                table_size: 2,
            },
        ),
    ];
    // These variants hold no wasmi values: their Debug text is their fields.
    let fields = |error: &LoadError| format!("{error:?}");
    for (name, module, expected) in cases {
        let checked = crate::loader::validate(&module, &LIMITS).unwrap_err();
        assert_eq!(fields(&checked), fields(&expected), "{name}");
        let system = TestSystem::new().module(name, module);
        let Err(loaded) = system.load_alone() else {
            panic!("{name} loaded");
        };
        assert_eq!(fields(&loaded), fields(&expected), "{name}");
        let (system, summary) = system.service("hello", hello("still here")).run();
        let console = system.console();
        assert_eq!(summary.failed_to_load, 1, "{name}: {console}");
        assert_eq!(summary.exited, 1, "{name}: {console}");
        assert_eq!(system.state_of(name), None, "{name}");
        assert!(
            console.contains(&format!(
                "atoll: service {name} failed to load: {expected}\n"
            )),
            "{name}: {console}"
        );
    }
    // What fits exactly passes both.
    for module in [
        service_with(
            r#"(data (i32.const 65534) "ab") (table 2 funcref) (elem (i32.const 0) func $f $f)"#,
        ),
        wat::parse_str(r#"(module (memory (export "memory") 16) (func (export "_start")))"#)
            .unwrap(),
        service_with("(table 100000 funcref)"),
    ] {
        crate::loader::validate(&module, &LIMITS).unwrap();
        let (system, summary) = TestSystem::new().module("fits", module).run();
        assert_eq!(summary.failed_to_load, 0, "{}", system.console());
        assert_eq!(system.state_of("fits"), Some(ServiceState::Exited));
    }
}

#[test]
fn every_unknown_import_is_named() {
    let module = wat::parse_str(
        r#"(module
            (import "env" "open_door" (func))
            (import "atoll" "log" (func (param i32 i32) (result i32)))
            (import "atoll" "teleport" (func))
            (import "env" "table" (table 1 funcref))
            (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let refused = crate::loader::validate(&module, &LIMITS).unwrap_err();
    let LoadError::UnknownImports(imports) = &refused else {
        panic!("{refused:?}");
    };
    let names: Vec<(&str, &str)> = imports
        .iter()
        .map(|(module, name)| (module.as_str(), name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("env", "open_door"),
            ("atoll", "teleport"),
            ("env", "table")
        ]
    );
    // The kernel's own message names them all.
    assert_eq!(
        refused.to_string(),
        "imports unknown functions `env::open_door`, `atoll::teleport`, `env::table`"
    );
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
    service_exports(&mut module);
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

#[test]
fn compile_cost_bounds_hostile_shapes() {
    // Before, the admitted cost was 8 bytes per module byte: 200,000 empty
    // functions (800 KB) took 42 MB, far past the admitted 6.6 MB and the
    // whole reserve. Each load here runs on a heap of exactly what is
    // admitted (plus a page of memory and slack): more would abort.
    for (functions, items, globals) in [(200_000, 0, 0), (1, 1_000_000, 0), (1, 0, 200_000)] {
        let module = shaped_module(functions, items, globals);
        let admitted = crate::preflight::compile_cost(&module);
        let system = TestSystem::new().module("alone", module);
        let limit = crate::test_allocator::FiniteHeap::new(admitted + (1 << 20));
        let service = system.load_alone();
        drop(limit);
        assert!(service.is_ok(), "{functions} {items} {globals}");
    }
}

#[test]
fn a_module_that_reached_a_wasmi_unreachable_is_refused_not_a_panic() {
    // Found by the module fuzzer (tests/fuzz): wasmi 2.0.0's translator
    // reached `unreachable!()` on it (an integer store with address and value
    // in its one register), a kernel panic at load or swap. The vendored
    // wasmi (vendor/wasmi/ATOLL.md) refuses it with a compile error.
    let module = include_bytes!("findings/wasmi-store-unreachable.wasm");
    let refused = crate::loader::validate(module, &LIMITS);
    assert!(matches!(refused, Err(LoadError::Compile(_))), "{refused:?}");
}

#[test]
fn a_service_reads_its_startup_record_its_length_first() {
    // `startup(0, 0)` gives the length; a buffer one byte short gets the
    // length and nothing written; one outside memory `OutOfBounds`.
    let service = r#"(module
        (import "atoll" "startup" (func $startup (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start") (local $len i32)
            (local.set $len (call $startup (i32.const 0) (i32.const 0)))
            (i32.store (i32.const 0) (local.get $len))
            (i32.store (i32.const 4)
                (call $startup (i32.const 64) (i32.sub (local.get $len) (i32.const 1))))
            (i32.store (i32.const 8) (call $startup (i32.const 65530) (local.get $len)))
            (i32.store (i32.const 12) (call $startup (i32.const 1024) (local.get $len)))))"#;
    let (system, summary) = TestSystem::new()
        .service("s", service)
        .wasi(&["s", "-v"], &["A=1"])
        .run();
    assert_eq!(
        (summary.exited, summary.faulted),
        (1, 0),
        "{}",
        system.console()
    );
    let words = system.kernel.memory_of("s", 0, 16).unwrap();
    let word =
        |index: usize| i32::from_le_bytes(words[index * 4..index * 4 + 4].try_into().unwrap());
    let len = word(0);
    assert!(len > 0);
    assert_eq!(word(1), len);
    assert_eq!(system.kernel.memory_of("s", 64, 4).unwrap(), [0; 4]);
    assert_eq!(word(2), atoll_abi::Error::OutOfBounds.code());
    assert_eq!(word(3), len);
    let record = system.kernel.memory_of("s", 1024, len).unwrap();
    let startup: atoll_abi::startup::Startup = postcard::from_bytes(&record).unwrap();
    assert_eq!(
        (startup.args, startup.env),
        (vec!["s".to_string(), "-v".into()], vec!["A=1".into()])
    );
}
