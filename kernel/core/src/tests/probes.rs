//! Probe services shared by several topics: WAT text, and modules written as
//! bytes where text would be too slow or cannot say it.
//!
//! What is not here: probes only one topic uses (they sit in its file).

use atoll_abi::Error;

/// A result code as a probe service reports it.
pub(crate) fn code(error: Error) -> String {
    error.code().to_string()
}

/// A service that logs `text` and returns.
pub(crate) fn hello(text: &str) -> String {
    format!(
        r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "{text}")
            (func (export "_start") (drop (call $log (i32.const 16) (i32.const {len})))))"#,
        len = text.len()
    )
}

/// A service that ends at once.
pub(crate) const ENDS_AT_ONCE: &str =
    r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// A service with every host function imported, `data` at address 0, and a
/// `$report` helper that logs an i32 in decimal. `body` is the entry point's body;
/// locals `$h`, `$r`, `$i` (i32) and `$t` (i64) are free to use.
pub(crate) fn probe(data: &str, body: &str) -> String {
    format!(
        r#"(module
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (import "atoll" "lookup" (func $lookup (param i32 i32) (result i32)))
        (import "atoll" "send" (func $send (param i32 i32 i32) (result i32)))
        (import "atoll" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "reply" (func $reply (param i32 i32 i32) (result i32)))
        (import "atoll" "reply_receive" (func $reply_receive (param i32 i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
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

/// A client that calls the server on handle 1 `calls` times with 8 bytes and
/// logs how many replies came back whole and right.
pub(crate) fn counting_client(calls: u32) -> String {
    probe(
        "abcdefgh",
        &format!(
            "(loop $again
                (i64.store (i32.const 300) (i64.const 0))
                (if (i32.eq (call $call (i32.const 1) (i32.const 0) (i32.const 8) (i32.const 300) (i32.const 64)) (i32.const 8))
                    (then (if (i64.eq (i64.load (i32.const 300)) (i64.load (i32.const 0)))
                        (then (local.set $r (i32.add (local.get $r) (i32.const 1)))))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $again (i32.lt_u (local.get $i) (i32.const {calls}))))
             (call $report (local.get $r))"
        ),
    )
}

/// An echo server on handle 1: replies to every call with the request, forever.
pub(crate) fn echo_server() -> String {
    probe(
        "",
        "(loop $serve
            (local.set $r (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (if (i32.ge_s (local.get $r) (i32.const 0))
                (then (drop (call $reply (call $token) (i32.const 100) (local.get $r)))))
            (br $serve))",
    )
}

/// A server on handle 1 that takes every call and never answers.
pub(crate) fn holder() -> String {
    probe(
        "",
        "(loop $take
            (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200)))
            (br $take))",
    )
}

/// WAT data-string escapes of `bytes`.
pub(crate) fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\{byte:02x}")).collect()
}

/// A service module with `items` between its memory export and `_start`.
pub(crate) fn service_with(items: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) {items} (func $f) (func (export "_start")))"#
    ))
    .unwrap()
}

/// `value` as unsigned LEB128.
pub(crate) fn leb(mut value: usize, out: &mut Vec<u8>) {
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

/// Appends section `id` with `body` to a module.
pub(crate) fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// The export section of a module whose memory 0 and function 0 are
/// `memory` and `_start`.
pub(crate) fn service_exports(out: &mut Vec<u8>) {
    let mut exports = vec![2];
    for (name, kind) in [(&b"memory"[..], 2u8), (&b"_start"[..], 0u8)] {
        leb(name.len(), &mut exports);
        exports.extend_from_slice(name);
        exports.extend_from_slice(&[kind, 0]);
    }
    section(7, &exports, out);
}

/// A valid service (memory, `_start`) whose one global is initialised by
/// `depth` nested `i32.add`: written as bytes, since text this deep is slow.
pub(crate) fn nested_const_module(depth: usize) -> Vec<u8> {
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
    service_exports(&mut module);
    section(10, &[1, 2, 0, 0x0b], &mut module); // one body: no locals, end
    module
}
