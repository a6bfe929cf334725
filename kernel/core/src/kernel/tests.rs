//! Host tests of the kernel core, with services written in WAT.

use super::*;
use alloc::string::String;
use alloc::vec;
use atoll_abi::Error;
use atoll_abi::bundle::{Bundle, ServiceImage, ServiceLimits};
use atoll_abi::supervision::RestartPolicy;
use std::sync::Mutex;

/// A platform that records the console and counts time in steps.
#[derive(Default)]
struct TestPlatform {
    console: Mutex<String>,
    clock: Mutex<u64>,
    /// Heap the platform reports as available (`None`: unlimited).
    heap: Option<usize>,
    /// Report what the thread's [`crate::test_allocator::FiniteHeap`] leaves.
    finite_heap: bool,
    /// Interrupt lines unmasked by `irq_ack`; each fires once, after it is
    /// (every time it is, with `refire`: a device that keeps asking).
    unmasked: Mutex<Vec<u8>>,
    refire: bool,
    /// What the kernel wrote to the host control channel.
    control: Mutex<String>,
    /// What the host sends on the control channel, read by the kernel.
    control_input: Mutex<Vec<u8>>,
    fired: Mutex<Vec<u8>>,
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
    fn wait_until(&self, deadline_ns: u64) {
        let mut clock = self.clock.lock().unwrap();
        *clock = (*clock).max(deadline_ns);
    }
    fn heap_available(&self) -> usize {
        if self.finite_heap {
            return crate::test_allocator::available();
        }
        self.heap.unwrap_or(usize::MAX)
    }
    fn control_write(&self, text: &str) {
        self.control.lock().unwrap().push_str(text);
    }
    fn control_read(&self, buffer: &mut [u8]) -> usize {
        let mut input = self.control_input.lock().unwrap();
        let count = input.len().min(buffer.len());
        buffer[..count].copy_from_slice(&input[..count]);
        input.drain(..count);
        count
    }
    fn irq_unmask(&self, irq: u8) {
        self.unmasked.lock().unwrap().push(irq);
    }
    fn take_interrupts(&self) -> u16 {
        let unmasked = if self.refire {
            // Masked again as it fires; fires again once acknowledged.
            std::mem::take(&mut *self.unmasked.lock().unwrap())
        } else {
            self.unmasked.lock().unwrap().clone()
        };
        let mut fired = self.fired.lock().unwrap();
        let mut lines = 0;
        for irq in unmasked {
            if self.refire || !fired.contains(&irq) {
                fired.push(irq);
                lines |= 1 << irq;
            }
        }
        lines
    }
}

const LIMITS: ServiceLimits = ServiceLimits {
    memory_bytes: 1 << 20,
    fuel_slice: 1000,
    queue_depth: 4,
    swap_probation_ms: 2000,
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
                provides: vec![],
                uses: vec![],
                supervisor: false,
                restart: RestartPolicy::default(),
                args: Vec::new(),
                env: Vec::new(),
                grants: Default::default(),
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

// ---------------------------------------------------------------------------
// IPC, capabilities and blocking, with probe services written in WAT.

/// A service with every host function imported, `data` at address 0, and a
/// `$report` helper that logs an i32 in decimal. `body` is the entry point's body;
/// locals `$h`, `$r`, `$i` (i32) and `$t` (i64) are free to use.
fn probe(data: &str, body: &str) -> String {
    format!(
        r#"(module
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (import "atoll" "lookup" (func $lookup (param i32 i32) (result i32)))
        (import "atoll" "send" (func $send (param i32 i32 i32) (result i32)))
        (import "atoll" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
        (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
        (import "atoll" "time" (func $time (result i64)))
        (import "atoll" "control" (func $control (param i32 i32 i32) (result i32)))
        (import "atoll" "swap" (func $swap (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "{data}")
        (func $report (param $v i32) (local $p i32) (local $neg i32) (local $n i32)
            (local.set $p (i32.const 2016))
            (local.set $neg (i32.lt_s (local.get $v) (i32.const 0)))
            (local.set $n (select (i32.sub (i32.const 0) (local.get $v)) (local.get $v) (local.get $neg)))
            (loop $digits
                (local.set $p (i32.sub (local.get $p) (i32.const 1)))
                (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
                (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
                (br_if $digits (local.get $n)))
            (if (local.get $neg) (then
                (local.set $p (i32.sub (local.get $p) (i32.const 1)))
                (i32.store8 (local.get $p) (i32.const 45))))
            (drop (call $log (local.get $p) (i32.sub (i32.const 2016) (local.get $p)))))
        ;; the reply token of the last message received with info at 200
        (func $token (result i32) (i32.load (i32.const 200)))
        (func (export "_start") (local $h i32) (local $r i32) (local $i i32) (local $t i64)
            {body}))"#
    )
}

/// A service image with capabilities.
struct Spec<'a> {
    name: &'a str,
    wat: String,
    provides: &'a [&'a str],
    uses: &'a [&'a str],
}

fn run_specs(specs: &[Spec<'_>]) -> (String, RunSummary) {
    run_supervised(specs, None)
}

/// [`run_specs`] with `supervisor` (a service name) as the system's supervisor.
fn run_supervised(specs: &[Spec<'_>], supervisor: Option<&str>) -> (String, RunSummary) {
    run_with(specs, supervisor, None)
}

/// [`run_supervised`], with the kernel's message budget set if given.
fn run_with(
    specs: &[Spec<'_>],
    supervisor: Option<&str>,
    budget: Option<usize>,
) -> (String, RunSummary) {
    let modules: Vec<Vec<u8>> = specs
        .iter()
        .map(|spec| wat::parse_str(&spec.wat).unwrap())
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
            .map(|(spec, module)| ServiceImage {
                name: spec.name,
                module,
                limits: LIMITS,
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
    let platform = Arc::new(TestPlatform::default());
    let (mut kernel, _) =
        Kernel::boot(&bundle::encode(&bundle).unwrap(), platform.clone()).unwrap();
    if let Some(budget) = budget {
        kernel.set_message_budget(budget);
    }
    let summary = kernel.run();
    let console = platform.console.lock().unwrap().clone();
    (console, summary)
}

/// The lines service `name` logged, without the prefix.
fn lines_of(console: &str, name: &str) -> Vec<String> {
    let prefix = format!("[{name}] ");
    console
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(String::from)
        .collect()
}

/// An echo server on handle 1: replies to every call with the request, forever.
fn echo_server() -> String {
    probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (if (i32.ge_s (local.get $r) (i32.const 0))
                (then (drop (call $reply (call $token) (i32.const 100) (local.get $r)))))
            (br $serve))",
    )
}

// ---------------------------------------------------------------------------
// Supervision: reports to the supervisor, restart and stop through `control`.

/// A server on handle 1 that logs each message and traps on one starting with
/// `!`; calls are answered with the message.
fn fragile_server() -> String {
    probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (if (i32.eq (i32.load8_u (i32.const 100)) (i32.const 33)) (then unreachable))
            (drop (call $log (i32.const 100) (local.get $r)))
            (if (call $token) (then (drop (call $reply (call $token) (i32.const 100) (local.get $r)))))
            (br $serve))",
    )
}

/// A supervisor (handle 1: its event endpoint) that answers every report with
/// `control(op, "svc")` and logs the result.
fn supervisor(op: i32) -> String {
    probe(
        "svc",
        &format!(
            "(loop $events
                (local.set $r (call $receive (i32.const 1) (i32.const 400) (i32.const 512) (i64.const -1) (i32.const 200)))
                (call $report (i32.load (i32.const 204)))  ;; sender: the kernel
                (call $report (call $control (i32.const {op}) (i32.const 0) (i32.const 3)))
                (br $events))"
        ),
    )
}

// ---------------------------------------------------------------------------
// Hot swap: state handoff, rollback, and the request stream around it.

/// A counting server of `version`: each call is answered with the byte
/// `version * 100 + count`. It hands its count on through the state exports,
/// and, if `poison`, traps as soon as it starts.
fn counter(version: u32, poison: bool) -> String {
    let start = if poison { "unreachable" } else { "" };
    format!(
        r#"(module
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (global $count (mut i32) (i32.const 0))
        (func (export "atoll_state_save") (result i64)
            (i32.store (i32.const 500) (global.get $count))
            (i64.or (i64.shl (i64.const 500) (i64.const 32)) (i64.const 4)))
        (func (export "atoll_state_alloc") (param i32) (result i32) (i32.const 600))
        (func (export "atoll_state_restore") (param i32 i32)
            (global.set $count (i32.load (local.get 0))))
        (func (export "_start") (local $r i32)
            {start}
            (loop $serve
                (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
                (global.set $count (i32.add (global.get $count) (i32.const 1)))
                (i32.store8 (i32.const 300) (i32.add (i32.const {base}) (global.get $count)))
                (drop (call $reply (i32.load (i32.const 200)) (i32.const 300) (i32.const 1)))
                (br $serve))))"#,
        base = version * 100 % 256,
    )
}

/// WAT data-string escapes of `bytes`.
fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\{byte:02x}")).collect()
}

/// A supervisor that, for each message from a service (not the kernel),
/// swaps `svc` to the next of `modules` (in turn) and replies with the result.
fn swapper(modules: &[Vec<u8>]) -> String {
    let mut data = String::from("(data (i32.const 0) \"svc\")");
    let mut offsets = Vec::new();
    let mut at = 4096;
    for module in modules {
        data.push_str(&format!("(data (i32.const {at}) \"{}\")", escaped(module)));
        offsets.push((at, module.len()));
        at += module.len() + 16;
    }
    let mut choose = String::new();
    for (index, (offset, len)) in offsets.iter().enumerate() {
        choose.push_str(&format!(
            "(if (i32.eq (local.get $i) (i32.const {index})) (then (local.set $r (call $swap (i32.const 0) (i32.const 3) (i32.const {offset}) (i32.const {len})))))"
        ));
    }
    let count = modules.len();
    format!(
        r#"(module
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
        (import "atoll" "swap" (func $swap (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 4)
        {data}
        (func (export "_start") (local $r i32) (local $i i32)
            (loop $events
                (drop (call $receive (i32.const 1) (i32.const 1000) (i32.const 1024) (i64.const -1) (i32.const 200)))
                (if (i32.ne (i32.load (i32.const 204)) (i32.const -1)) (then
                    {choose}
                    (local.set $i (i32.rem_u (i32.add (local.get $i) (i32.const 1)) (i32.const {count})))
                    (i32.store (i32.const 300) (local.get $r))
                    (drop (call $reply (i32.load (i32.const 200)) (i32.const 300) (i32.const 4)))))
                (br $events))))"#
    )
}

/// A client that calls `svc` `rounds` times per swap for `swaps` swaps, each
/// swap requested from the supervisor (handle 2) between rounds, and reports
/// every answer, and every swap result.
fn swap_client(rounds: u32, swaps: u32) -> String {
    probe(
        "",
        &format!(
            "(loop $swaps
                (local.set $i (i32.const 0))
                (loop $calls
                    (local.set $r (call $call (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 8)))
                    (call $report (select (i32.load8_u (i32.const 300)) (local.get $r) (i32.ge_s (local.get $r) (i32.const 0))))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $calls (i32.lt_u (local.get $i) (i32.const {rounds}))))
                (local.set $h (i32.add (local.get $h) (i32.const 1)))
                (if (i32.le_u (local.get $h) (i32.const {swaps})) (then
                    (drop (call $call (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 400) (i32.const 8)))
                    (call $report (i32.load (i32.const 400)))
                    (br $swaps))))"
        ),
    )
}

fn run_swaps(modules: &[Vec<u8>], rounds: u32, swaps: u32) -> (String, RunSummary) {
    run_supervised(
        &[
            Spec {
                name: "sup",
                wat: swapper(modules),
                provides: &["sup"],
                uses: &[],
            },
            Spec {
                name: "svc",
                wat: counter(1, false),
                provides: &["svc"],
                uses: &[],
            },
            Spec {
                name: "client",
                wat: swap_client(rounds, swaps),
                provides: &[],
                uses: &["svc", "sup"],
            },
        ],
        Some("sup"),
    )
}

/// A platform that samples this thread's live heap bytes at every console line.
struct SamplingPlatform {
    samples: Mutex<Vec<isize>>,
    clock: Mutex<u64>,
}

impl Platform for SamplingPlatform {
    fn now_ns(&self) -> u64 {
        let mut clock = self.clock.lock().unwrap();
        *clock += 1000;
        *clock
    }
    fn console_write(&self, _text: &str) {
        let live = crate::test_allocator::live_bytes();
        let mut samples = self.samples.lock().unwrap();
        // Preallocated: recording a sample never allocates.
        if samples.len() < samples.capacity() {
            samples.push(live);
        }
    }
    fn wait_until(&self, deadline_ns: u64) {
        let mut clock = self.clock.lock().unwrap();
        *clock = (*clock).max(deadline_ns);
    }
}

// --- WASI preview1 ----------------------------------------------------------

/// A WASI service: `body` runs in `_start`; `$report` logs `r=NN` for a
/// two-digit value; `$write` writes the 9 bytes at 100 ("out line\n") to `fd`.
fn wasi_probe(body: &str) -> String {
    wasi_probe_with("", body)
}

/// [`wasi_probe`] with more imports.
fn wasi_probe_with(imports: &str, body: &str) -> String {
    format!(
        r#"(module
            {imports}
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "\64\00\00\00\09\00\00\00")
            (data (i32.const 100) "out line\0a")
            (data (i32.const 120) "r=00")
            (func $report (param $value i32)
                (i32.store8 (i32.const 122) (i32.add (i32.const 48) (i32.div_u (local.get $value) (i32.const 10))))
                (i32.store8 (i32.const 123) (i32.add (i32.const 48) (i32.rem_u (local.get $value) (i32.const 10))))
                (drop (call $log (i32.const 120) (i32.const 4))))
            (func $write (param $fd i32) (result i32)
                (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 50)))
            (func (export "_start") {body}))"#
    )
}

#[test]
fn wasi_fd_write_prints_and_proc_exit_reports_the_status() {
    let (console, summary) = run_wat(&[(
        "w",
        &wasi_probe(
            "(call $report (call $write (i32.const 1)))
             (call $report (call $write (i32.const 2)))
             (call $report (i32.load (i32.const 50)))
             (call $report (call $write (i32.const 0)))
             (call $report (call $write (i32.const 7)))
             (call $exit (i32.const 5))
             unreachable",
        ),
    )]);
    assert_eq!(console.matches("[w] out line\n").count(), 2, "{console}");
    // fd_write returns 0 and stores 9 written; stdin and fd 7 are EBADF (8).
    assert!(
        console.contains("[w] r=00\n[w] out line\n[w] r=00\n[w] r=09\n[w] r=08\n[w] r=08\n"),
        "{console}"
    );
    assert!(
        console.contains("service w exited with status 5"),
        "{console}"
    );
    assert_eq!(summary.exited, 1);
    assert_eq!(summary.faulted, 0);
}

#[test]
fn wasi_stubs_return_errno_log_once_and_the_service_goes_on() {
    let (console, summary) = run_wat(&[(
        "s",
        &wasi_probe(
            "(call $report (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 1) (i32.const 60)))
             (call $report (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 1) (i32.const 60)))
             (call $report (call $fd_seek (i32.const 9) (i64.const 0) (i32.const 1) (i32.const 60)))",
        ),
    )]);
    // ENOSYS (52) for stdout, EBADF (8) for a descriptor that does not exist.
    assert!(
        console.contains("[s] r=52\n[s] r=52\n[s] r=08\n"),
        "{console}"
    );
    assert_eq!(
        console.matches("WASI fd_seek is not supported").count(),
        1,
        "{console}"
    );
    assert!(console.contains("service s exited\n"), "{console}");
    assert_eq!(summary.faulted, 0);
}

#[test]
fn wasi_bad_pointers_are_efault_not_a_fault() {
    let (console, summary) = run_wat(&[(
        "p",
        &wasi_probe(
            // iovec array outside memory; nwritten outside memory; argc
            // pointer outside memory; a negative subscription count.
            "(call $report (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 50)))
             (call $report (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const -4)))
             (call $report (call $args_sizes (i32.const -8) (i32.const 200)))
             (call $report (call $poll (i32.const 0) (i32.const 200) (i32.const -1) (i32.const 60)))",
        ),
    )]);
    assert!(
        console.contains("[p] r=21\n[p] r=21\n[p] r=21\n[p] r=28\n"),
        "{console}"
    );
    assert_eq!(summary.faulted, 0);
}

#[test]
fn wasi_args_and_environment_come_from_the_image() {
    let module = wat::parse_str(wasi_probe(
        // argc and buffer size at 60/64; argv at 300, strings at 400; environ
        // at 500, strings at 600. Log argv[1] and the environment string.
        "(call $report (call $args_sizes (i32.const 60) (i32.const 64)))
         (call $report (i32.load (i32.const 60)))
         (call $report (i32.load (i32.const 64)))
         (call $report (call $args_get (i32.const 300) (i32.const 400)))
         (drop (call $log (i32.load (i32.const 304)) (i32.const 5)))
         (call $report (call $environ_get (i32.const 500) (i32.const 600)))
         (drop (call $log (i32.load (i32.const 500)) (i32.const 5)))",
    ))
    .unwrap();
    let bundle = bundle::encode(&Bundle {
        kernel: KernelSettings {
            system_name: "test".into(),
            exit_when_idle: true,
            inject_fault: None,
        },
        services: vec![ServiceImage {
            name: "a",
            module: &module,
            limits: LIMITS,
            provides: vec![],
            uses: vec![],
            supervisor: false,
            restart: RestartPolicy::default(),
            args: vec!["a", "first"],
            env: vec!["K=v"],
            grants: Default::default(),
        }],
    })
    .unwrap();
    let platform = Arc::new(TestPlatform::default());
    let (mut kernel, _) = Kernel::boot(&bundle, platform.clone()).unwrap();
    kernel.run();
    let console = platform.console.lock().unwrap().clone();
    // 2 args, "a\0first\0" is 8 bytes. (NULs are logged escaped.)
    assert!(
        console
            .contains("[a] r=00\n[a] r=02\n[a] r=08\n[a] r=00\n[a] first\n[a] r=00\n[a] K=v\\x00"),
        "{console}"
    );
}

#[test]
fn wasi_poll_oneoff_sleeps_on_a_clock() {
    let (console, _) = run_wat(&[(
        "z",
        &wasi_probe(
            // One relative monotonic clock subscription of 5 ms at 200
            // (userdata 0x77, tag 0 clock, id 1, timeout 5e6); events at 300.
            "(i64.store (i32.const 200) (i64.const 0x77))
             (i32.store8 (i32.const 208) (i32.const 0))
             (i32.store (i32.const 216) (i32.const 1))
             (i64.store (i32.const 224) (i64.const 5000000))
             (call $report (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 60)))
             (call $report (i32.load (i32.const 60)))
             (call $report (i32.sub (i32.load8_u (i32.const 300)) (i32.const 100)))",
        ),
    )]);
    // ESUCCESS, one event, carrying the userdata 0x77 (119, logged as 119 - 100).
    assert!(
        console.contains("[z] r=00\n[z] r=01\n[z] r=19\n"),
        "{console}"
    );
}

#[test]
fn unknown_or_mistyped_wasi_imports_fail_to_load() {
    for (module, expected) in [
        (
            r#"(module (import "wasi_snapshot_preview1" "fd_teleport" (func (param i32) (result i32)))
                (memory (export "memory") 1) (func (export "_start")))"#,
            "imports unknown function `wasi_snapshot_preview1::fd_teleport`",
        ),
        (
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
                (memory (export "memory") 1) (func (export "_start")))"#,
            "imports `wasi_snapshot_preview1::fd_write` with a signature other than the ABI's",
        ),
        (
            r#"(module (import "env" "printf" (func (param i32) (result i32)))
                (memory (export "memory") 1) (func (export "_start")))"#,
            "imports unknown function `env::printf`",
        ),
    ] {
        let error =
            crate::service::validate(&wat::parse_str(module).unwrap(), &LIMITS).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
    let info = crate::service::validate(&wat::parse_str(wasi_probe("")).unwrap(), &LIMITS).unwrap();
    assert!(info.uses_wasi);
    assert_eq!(info.wasi_stubs, ["fd_seek"]);
}

#[test]
fn an_interrupt_reaches_its_driver_as_a_kernel_notification_once_acknowledged() {
    let module = wat::parse_str(
        r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (import "atoll" "irq_ack" (func $irq_ack (param i32) (result i32)))
            (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "irq=? len=? kernel=?")
            (func (export "_start")
                (local $len i32)
                ;; Not granted: refused, and nothing is unmasked.
                (if (i32.ne (call $irq_ack (i32.const 6)) (i32.const -13)) (then unreachable))
                (drop (call $irq_ack (i32.const 5)))
                (local.set $len (call $receive (i32.const 1) (i32.const 100) (i32.const 16)
                    (i64.const -1) (i32.const 200)))
                (i32.store8 (i32.const 4) (i32.add (i32.const 48) (i32.load8_u (i32.const 100))))
                (i32.store8 (i32.const 10) (i32.add (i32.const 48) (local.get $len)))
                (i32.store8 (i32.const 19) (i32.add (i32.const 48)
                    (i32.eq (i32.load (i32.const 204)) (i32.const -1))))
                (drop (call $log (i32.const 0) (i32.const 20)))))"#,
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
    let platform = Arc::new(TestPlatform::default());
    let (mut kernel, _) = Kernel::boot(&bundle, platform.clone()).unwrap();
    let summary = kernel.run();
    let console = platform.console.lock().unwrap().clone();
    assert!(
        console.contains("[driver] irq=5 len=1 kernel=1"),
        "{console}"
    );
    assert_eq!(*platform.unmasked.lock().unwrap(), [5]);
    assert_eq!(summary.faulted, 0, "{console}");
}

#[test]
fn wasi_stdin_comes_from_the_console_service_when_granted() {
    // A fake console: answers the first read with Input("hi\r"), the second
    // with Busy. The WASI reader logs errno and count, then the bytes.
    let console = probe(
        r"\01\03hi\0d\02",
        "(local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (i32.load8_u (i32.const 100)))   ;; Read's variant
         (call $report (i32.load8_u (i32.const 101)))   ;; max, one varint byte
         (drop (call $reply (call $token) (i32.const 0) (i32.const 5)))
         (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (drop (call $reply (call $token) (i32.const 5) (i32.const 1)))",
    );
    let reader = wasi_probe_with(
        r#"(import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))"#,
        // iovec at 8: 100 bytes at 400; nread at 60.
        "(i32.store (i32.const 8) (i32.const 400))
         (i32.store (i32.const 12) (i32.const 100))
         (call $report (call $fd_read (i32.const 0) (i32.const 8) (i32.const 1) (i32.const 60)))
         (call $report (i32.load (i32.const 60)))
         (drop (call $log (i32.const 400) (i32.const 2)))
         (call $report (i32.load8_u (i32.const 402)))
         (call $report (call $fd_read (i32.const 0) (i32.const 8) (i32.const 1) (i32.const 60)))",
    );
    let (console_log, summary) = run_specs(&[
        Spec {
            name: "console",
            wat: console,
            provides: &["console"],
            uses: &[],
        },
        Spec {
            name: "reader",
            wat: reader,
            provides: &[],
            uses: &["console"],
        },
    ]);
    assert_eq!(
        lines_of(&console_log, "console"),
        ["1", "100"],
        "{console_log}"
    );
    // ESUCCESS, 3 bytes, "hi\n" (the terminal's \r made \n, 10), then EAGAIN (6).
    assert_eq!(
        lines_of(&console_log, "reader"),
        ["r=00", "r=03", "hi", "r=10", "r=06"],
        "{console_log}"
    );
    assert_eq!(summary.faulted, 0, "{console_log}");
}

mod hardening;
