//! WASI preview1: output, exit status, stubs, bad pointers, arguments and
//! environment, clocks, stdin through the console service, and imports.

use super::probes::probe;
use super::system::{LIMITS, TestSystem};
use crate::{LoadError, ServiceState};

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
    let (system, summary) = TestSystem::new()
        .service(
            "w",
            wasi_probe(
                "(call $report (call $write (i32.const 1)))
                 (call $report (call $write (i32.const 2)))
                 (call $report (i32.load (i32.const 50)))
                 (call $report (call $write (i32.const 0)))
                 (call $report (call $write (i32.const 7)))
                 (call $exit (i32.const 5))
                 unreachable",
            ),
        )
        .run();
    // fd_write returns 0 and stores 9 written; stdin and fd 7 are EBADF (8).
    assert_eq!(
        system.lines_of("w"),
        [
            "out line", "r=00", "out line", "r=00", "r=09", "r=08", "r=08"
        ]
    );
    assert_eq!(system.state_of("w"), Some(ServiceState::Exited));
    assert_eq!(summary.exited, 1);
    assert_eq!(summary.faulted, 0);
    // The status is only in the kernel's report.
    let console = system.console();
    assert!(
        console.contains("atoll: service w exited with status 5\n"),
        "{console}"
    );
}

/// A WASI function that stays a stub.
const ADVISE: &str = r#"(import "wasi_snapshot_preview1" "fd_advise" (func $fd_advise (param i32 i64 i64 i32) (result i32)))"#;

#[test]
fn wasi_stubs_return_errno_log_once_and_the_service_goes_on() {
    let (system, summary) = TestSystem::new()
        .service(
            "s",
            wasi_probe_with(
                ADVISE,
                "(call $report (call $fd_advise (i32.const 1) (i64.const 0) (i64.const 1) (i32.const 0)))
                 (call $report (call $fd_advise (i32.const 1) (i64.const 0) (i64.const 1) (i32.const 0)))
                 (call $report (call $fd_advise (i32.const 9) (i64.const 0) (i64.const 1) (i32.const 0)))",
            ),
        )
        .run();
    // ENOSYS (52) for stdout, EBADF (8) for a descriptor that does not exist.
    assert_eq!(system.lines_of("s"), ["r=52", "r=52", "r=08"]);
    assert_eq!(system.state_of("s"), Some(ServiceState::Exited));
    assert_eq!(summary.faulted, 0);
    let console = system.console();
    assert_eq!(
        console.matches("WASI fd_advise is not supported").count(),
        1,
        "{console}"
    );
}

#[test]
fn wasi_bad_pointers_are_efault_not_a_fault() {
    let (system, summary) = TestSystem::new()
        .service(
            "p",
            wasi_probe(
                // iovec array outside memory; nwritten outside memory; argc
                // pointer outside memory; a negative subscription count.
                "(call $report (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 50)))
                 (call $report (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const -4)))
                 (call $report (call $args_sizes (i32.const -8) (i32.const 200)))
                 (call $report (call $poll (i32.const 0) (i32.const 200) (i32.const -1) (i32.const 60)))",
            ),
        )
        .run();
    // EFAULT (21) three times, EINVAL (28) for the count.
    assert_eq!(system.lines_of("p"), ["r=21", "r=21", "r=21", "r=28"]);
    assert_eq!(system.state_of("p"), Some(ServiceState::Exited));
    assert_eq!(summary.faulted, 0);
}

#[test]
fn wasi_args_and_environment_come_from_the_image() {
    let (system, _) = TestSystem::new()
        .service(
            "a",
            wasi_probe(
                // argc and buffer size at 60/64; argv at 300, strings at 400; environ
                // at 500, strings at 600. Log argv[1] and the environment string.
                "(call $report (call $args_sizes (i32.const 60) (i32.const 64)))
                 (call $report (i32.load (i32.const 60)))
                 (call $report (i32.load (i32.const 64)))
                 (call $report (call $args_get (i32.const 300) (i32.const 400)))
                 (drop (call $log (i32.load (i32.const 304)) (i32.const 5)))
                 (call $report (call $environ_get (i32.const 500) (i32.const 600)))
                 (drop (call $log (i32.load (i32.const 500)) (i32.const 5)))",
            ),
        )
        .wasi(&["a", "first"], &["K=v"])
        .run();
    // 2 args, "a\0first\0" is 8 bytes; "K=v\0" and the zero after it (NULs
    // are logged escaped).
    assert_eq!(
        system.lines_of("a"),
        [
            "r=00",
            "r=02",
            "r=08",
            "r=00",
            "first",
            "r=00",
            "K=v\\x00\\x00"
        ]
    );
}

#[test]
fn wasi_poll_oneoff_sleeps_on_a_clock() {
    let (system, _) = TestSystem::new()
        .service(
            "z",
            wasi_probe(
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
        )
        .run();
    // ESUCCESS, one event, carrying the userdata 0x77 (119, logged as 119 - 100).
    assert_eq!(system.lines_of("z"), ["r=00", "r=01", "r=19"]);
}

#[test]
fn unknown_or_mistyped_wasi_imports_fail_to_load() {
    let unknown = |error: &LoadError, module: &str, name: &str| {
        matches!(error, LoadError::UnknownImports(imports)
            if imports == &[(module.to_string(), name.to_string())])
    };
    let teleport = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_teleport" (func (param i32) (result i32)))
            (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let error = crate::loader::validate(&teleport, &LIMITS).unwrap_err();
    assert!(
        unknown(&error, "wasi_snapshot_preview1", "fd_teleport"),
        "{error:?}"
    );
    let mistyped = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
            (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let error = crate::loader::validate(&mistyped, &LIMITS).unwrap_err();
    assert!(
        matches!(&error, LoadError::ImportSignature(module, name)
            if module == "wasi_snapshot_preview1" && name == "fd_write"),
        "{error:?}"
    );
    let printf = wat::parse_str(
        r#"(module (import "env" "printf" (func (param i32) (result i32)))
            (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let error = crate::loader::validate(&printf, &LIMITS).unwrap_err();
    assert!(unknown(&error, "env", "printf"), "{error:?}");
    let (system, summary) = TestSystem::new().module("printf", printf).run();
    assert_eq!(summary.failed_to_load, 1);
    assert_eq!(system.state_of("printf"), None);
    let info = crate::loader::validate(&wat::parse_str(wasi_probe("")).unwrap(), &LIMITS).unwrap();
    assert!(info.uses_wasi);
    assert!(info.wasi_stubs.is_empty(), "fd_seek is implemented");
    let advise = wasi_probe_with(ADVISE, "");
    let info = crate::loader::validate(&wat::parse_str(advise).unwrap(), &LIMITS).unwrap();
    assert_eq!(info.wasi_stubs, ["fd_advise"]);
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
    let (system, summary) = TestSystem::new()
        .service("console", console)
        .provides("console")
        .service("reader", reader)
        .uses("console")
        .run();
    assert_eq!(system.lines_of("console"), ["1", "100"]);
    // ESUCCESS, 3 bytes, "hi\n" (the terminal's \r made \n, 10), then EAGAIN (6).
    assert_eq!(
        system.lines_of("reader"),
        ["r=00", "r=03", "hi", "r=10", "r=06"]
    );
    assert_eq!(summary.faulted, 0, "{}", system.console());
}

#[test]
fn wasi_files_go_to_the_preopens_file_service_and_a_lost_one_is_eio() {
    // A fake file service: answers an Open with Entry("f", 5 bytes), a
    // Read with Data("hello"), takes a third request and ends unanswered.
    let files = probe(
        r"\00\01f\05\00\00\02\05hello",
        "(local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (i32.load8_u (i32.const 100)))   ;; Open
         (drop (call $reply (call $token) (i32.const 0) (i32.const 6)))
         (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (i32.load8_u (i32.const 100)))   ;; Read
         (drop (call $reply (call $token) (i32.const 6) (i32.const 7)))
         (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
         (call $report (i32.load8_u (i32.const 100)))",
    );
    let program = wasi_probe_with(
        r#"(import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $prestat_name (param i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"#,
        // iovec at 8: 100 bytes at 400; results at 60; the path "f" at 300.
        "(i32.store (i32.const 8) (i32.const 400))
         (i32.store (i32.const 12) (i32.const 100))
         (i32.store8 (i32.const 300) (i32.const 102))
         (call $report (call $prestat (i32.const 3) (i32.const 60)))
         (call $report (i32.load (i32.const 64)))
         (call $report (call $prestat (i32.const 4) (i32.const 60)))
         (call $report (call $prestat_name (i32.const 3) (i32.const 400) (i32.const 8)))
         (drop (call $log (i32.const 400) (i32.const 5)))
         (call $report (call $open (i32.const 3) (i32.const 0) (i32.const 300) (i32.const 1)
             (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 60)))
         (call $report (i32.load (i32.const 60)))
         (call $report (call $fd_read (i32.const 4) (i32.const 8) (i32.const 1) (i32.const 60)))
         (call $report (i32.load (i32.const 60)))
         (drop (call $log (i32.const 400) (i32.const 5)))
         (call $report (call $fd_read (i32.const 4) (i32.const 8) (i32.const 1) (i32.const 60)))
         (call $report (call $fd_read (i32.const 4) (i32.const 8) (i32.const 1) (i32.const 60)))",
    );
    let (system, summary) = TestSystem::new()
        .service("files", files)
        .provides("fs")
        .service("program", program)
        .uses("fs")
        .preopen("/data", "fs", "/", false)
        .run();
    assert_eq!(system.lines_of("files"), ["0", "2", "2"]);
    // The preopen (5 bytes, "/data"), no descriptor 4; the file opened as
    // 4 and read; the read the service took with it is EIO (29), and so is
    // every later one.
    assert_eq!(
        system.lines_of("program"),
        [
            "r=00", "r=05", "r=08", "r=00", "/data", "r=00", "r=04", "r=00", "r=05", "hello",
            "r=29", "r=29"
        ]
    );
    assert_eq!(summary.faulted, 0, "{}", system.console());
}

#[test]
fn wasi_output_reaches_the_console_as_whole_lines() {
    // "out line\n" written as "out " (4 bytes) then "line\n" (5), then a
    // last line without its newline, printed when the program ends.
    let (system, summary) = TestSystem::new()
        .service(
            "w",
            wasi_probe(
                "(i32.store (i32.const 4) (i32.const 4))
                 (drop (call $write (i32.const 1)))
                 (i32.store (i32.const 0) (i32.const 104))
                 (i32.store (i32.const 4) (i32.const 5))
                 (drop (call $write (i32.const 1)))
                 (i32.store (i32.const 0) (i32.const 100))
                 (i32.store (i32.const 4) (i32.const 3))
                 (drop (call $write (i32.const 2)))",
            ),
        )
        .run();
    assert_eq!(system.lines_of("w"), ["out line", "out"]);
    assert_eq!(summary.faulted, 0);
}

#[test]
fn sock_accept_refuses_flags_other_than_nonblock_before_asking_the_network() {
    // The TCP/IP service never answers: a refused accept must not wait on it.
    let (system, _) = TestSystem::new()
        .service("net", probe("", "(drop (call $sleep (i64.const 1000000000)))"))
        .provides("net")
        .service(
            "w",
            wasi_probe_with(
                r#"(import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))"#,
                "(call $report (call $accept (i32.const 3) (i32.const 1) (i32.const 60)))
                 (call $report (call $accept (i32.const 3) (i32.const 65540) (i32.const 60)))
                 (call $report (call $accept (i32.const 4) (i32.const 0) (i32.const 60)))",
            ),
        )
        .uses("net")
        .listen("net", 8080)
        .run();
    // APPEND (1) and a flag past 16 bits: EINVAL (28); fd 4 is not open: EBADF (8).
    assert_eq!(system.lines_of("w"), ["r=28", "r=28", "r=08"]);
}
