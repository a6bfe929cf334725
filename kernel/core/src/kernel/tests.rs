//! Host tests of the kernel core, with services written in WAT.

use super::*;
use alloc::string::String;
use alloc::vec;
use atoll_abi::Error;
use atoll_abi::bundle::{Bundle, ServiceImage, ServiceLimits};
use std::sync::Mutex;

/// A platform that records the console and counts time in steps.
#[derive(Default)]
struct TestPlatform {
    console: Mutex<String>,
    clock: Mutex<u64>,
}

impl Platform for TestPlatform {
    fn now_ns(&self) -> u64 {
        let mut clock = self.clock.lock().unwrap();
        *clock += 1000;
        *clock
    }
    fn console_write(&self, text: &str) {
        self.console.lock().unwrap().push_str(text);
    }
}

const LIMITS: ServiceLimits = ServiceLimits {
    memory_bytes: 1 << 20,
    fuel_slice: 1000,
};

fn bundle(services: &[(&str, &[u8], ServiceLimits)]) -> Vec<u8> {
    let bundle = Bundle {
        kernel: KernelSettings {
            system_name: "test".into(),
            exit_when_idle: true,
            inject_fault: None,
        },
        services: services
            .iter()
            .map(|(name, module, limits)| ServiceImage {
                name,
                module,
                limits: *limits,
            })
            .collect(),
    };
    bundle::encode(&bundle).unwrap()
}

/// Boots the given `(name, wat)` services, runs them to the end, returns the console.
fn run_wat(services: &[(&str, &str)]) -> (String, RunSummary) {
    let modules: Vec<Vec<u8>> = services
        .iter()
        .map(|(_, wat)| wat::parse_str(wat).unwrap())
        .collect();
    let images: Vec<(&str, &[u8], ServiceLimits)> = services
        .iter()
        .zip(&modules)
        .map(|((name, _), module)| (*name, module.as_slice(), LIMITS))
        .collect();
    run_images(&images)
}

fn run_images(images: &[(&str, &[u8], ServiceLimits)]) -> (String, RunSummary) {
    let platform = Arc::new(TestPlatform::default());
    let (mut kernel, settings) = Kernel::boot(&bundle(images), platform.clone()).unwrap();
    assert!(settings.exit_when_idle);
    let summary = kernel.run();
    let console = platform.console.lock().unwrap().clone();
    (console, summary)
}

/// A service that logs `text` and returns.
fn hello(text: &str) -> String {
    format!(
        r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "{text}")
            (func (export "_start") (drop (call $log (i32.const 16) (i32.const {len})))))"#,
        len = text.len()
    )
}

/// A service that calls `log(ptr, len)` and then logs `got -N` for the result
/// code -N (single digit).
fn log_probe(ptr: i32, len: i32) -> String {
    format!(
        r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "got -0")
            (data (i32.const 32) "\ff\fe")
            (func (export "_start")
                (i32.store8 (i32.const 5)
                    (i32.sub (i32.const 48) (call $log (i32.const {ptr}) (i32.const {len}))))
                (drop (call $log (i32.const 0) (i32.const 6)))))"#
    )
}

#[test]
fn hello_logs_with_its_name_and_system_becomes_ready_once() {
    let (console, summary) =
        run_wat(&[("hello", &hello("hi there")), ("second", &hello("me too"))]);
    assert!(console.contains("[hello] hi there\n"), "{console}");
    assert!(console.contains("[second] me too\n"), "{console}");
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
            failed_to_load: 0
        }
    );
}

#[test]
fn log_rejects_bad_buffers_with_error_codes() {
    let cases = [
        (65_530, 10, Error::OutOfBounds),
        (-4, 8, Error::OutOfBounds),
        (0, -1, Error::TooLarge),
        (0, atoll_abi::MAX_LOG_LEN as i32 + 1, Error::TooLarge),
        (32, 2, Error::InvalidUtf8),
    ];
    for (ptr, len, error) in cases {
        let (console, summary) = run_wat(&[("probe", &log_probe(ptr, len))]);
        assert!(
            console.contains(&format!("[probe] got {}\n", error.code())),
            "{ptr},{len}: {console}"
        );
        assert_eq!(summary.exited, 1);
    }
}

#[test]
fn a_spinning_service_is_preempted_and_others_run() {
    let spin = r#"(module
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "done")
        (func (export "_start") (local $i i32)
            (loop $again
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const 200000))))
            (drop (call $log (i32.const 0) (i32.const 4)))))"#;
    let (console, summary) = run_wat(&[("spinner", spin), ("hello", &hello("still here"))]);
    let hello_at = console.find("[hello] still here").unwrap();
    let spinner_at = console.find("[spinner] done").unwrap();
    assert!(hello_at < spinner_at, "{console}");
    assert_eq!(summary.exited, 2);
}

#[test]
fn a_trapping_service_faults_alone() {
    let trap = r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;
    let (console, summary) = run_wat(&[("bad", trap), ("hello", &hello("fine"))]);
    assert!(console.contains("atoll: service bad faulted:"), "{console}");
    assert!(console.contains("[hello] fine"), "{console}");
    assert_eq!(
        summary,
        RunSummary {
            exited: 1,
            faulted: 1,
            failed_to_load: 0
        }
    );
}

#[test]
fn services_that_cannot_load_are_reported_and_skipped() {
    let wat = |text: &str| wat::parse_str(text).unwrap();
    let cases = [
        ("garbage", vec![0u8, 1, 2, 3], "invalid module"),
        (
            "unknown-import",
            wat(
                r#"(module (import "atoll" "nope" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            "imports unknown function `atoll::nope`",
        ),
        (
            "other-module",
            wat(
                r#"(module (import "env" "log" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            "imports unknown function `env::log`",
        ),
        (
            "wrong-signature",
            wat(
                r#"(module (import "atoll" "log" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            "imports `atoll::log` with a signature other than the ABI's",
        ),
        (
            "no-entry",
            wat(r#"(module (memory (export "memory") 1))"#),
            "no exported `_start",
        ),
        (
            "no-memory",
            wat(r#"(module (func (export "_start")))"#),
            "no exported memory",
        ),
        (
            "too-big",
            wat(r#"(module (memory (export "memory") 32) (func (export "_start")))"#),
            "cannot instantiate",
        ),
        (
            "start-loops",
            wat(
                r#"(module (memory (export "memory") 1) (func $s (loop $l (br $l))) (start $s) (func (export "_start")))"#,
            ),
            "cannot instantiate",
        ),
    ];
    let good = wat(&hello("ok"));
    assert!(crate::service::validate(&good).is_ok());
    for (name, module, message) in &cases {
        let (console, summary) = run_images(&[(name, module, LIMITS), ("hello", &good, LIMITS)]);
        assert!(
            console.contains(&format!("atoll: service {name} failed to load: {message}")),
            "{name}: {console}"
        );
        if !name.starts_with("too-big") && !name.starts_with("start-loops") {
            assert!(crate::service::validate(module).is_err(), "{name}");
        }
        assert!(
            console.contains("atoll: system ready (1 services)"),
            "{console}"
        );
        assert_eq!(
            summary,
            RunSummary {
                exited: 1,
                faulted: 0,
                failed_to_load: 1
            }
        );
    }
}

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
    let (console, summary) = run_wat(&[("grower", wat)]);
    assert!(console.contains("[grower] refused"), "{console}");
    assert_eq!(summary.exited, 1);
}

#[test]
fn malformed_bundles_are_boot_errors() {
    let platform: Arc<dyn Platform> = Arc::new(TestPlatform::default());
    assert_eq!(
        Kernel::boot(b"short", platform.clone()).err(),
        Some(BootError::Bundle(DecodeError::Truncated))
    );
    let mut bytes = bundle(&[]);
    bytes.truncate(bytes.len() - 1);
    assert_eq!(
        Kernel::boot(&bytes, platform).err(),
        Some(BootError::Bundle(DecodeError::Malformed))
    );
}

#[test]
fn an_empty_system_is_ready_at_once() {
    let (console, summary) = run_images(&[]);
    assert!(
        console.contains("atoll: system ready (0 services)"),
        "{console}"
    );
    assert_eq!(summary, RunSummary::default());
}
