;; The fault-injection campaign's victim (image-builder chaos, docs/reliability.md).
;;
;; An echo server on its first endpoint: a call's message comes back as its
;; answer. A message sent (not called) that starts with byte 1 arms a fault:
;; byte 1 is its kind, bytes 4..8 a seed. The next call it takes fires it,
;; with the caller waiting:
;;   0 unreachable   1 out-of-bounds load   2 divide by zero   3 stack exhaustion
;;   4 memory bomb (grow to the limit, then store past it)
;;   5 tell the supervisor, then sleep for ever (killed mid-call)
;;   6 tell the supervisor, then spin for ever (preempted by fuel, killed)
;;   7 oversized and garbage answers     8 capability misuse
;;   9 random host calls with random arguments
;;  10 tell the supervisor, then leave the call unanswered (swapped mid-call)
;; Kinds 7-9 check each result the kernel must give (an error code, or which
;; one) and tell the supervisor how many checks failed ("violations").
;;
;; Handles: 1 its own endpoint, 2 the supervisor's `chaos` endpoint.
;; Messages to the supervisor (8 bytes at 8192): byte 0 = 3 firing / 2 survived
;; / 5 started (at every start), byte 1 the kind (10 for started: the kind
;; that waits for it), bytes 4..8 the violations.
;; Memory: 0..4096 receive buffer, 4096..4104 receive info, 4200.. names,
;; 8192.. messages to the supervisor, 12288.. a 4 KiB buffer of garbage.
(module
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
  (import "atoll" "port_in" (func $port_in (param i32 i32) (result i64)))
  (import "atoll" "port_out" (func $port_out (param i32 i32 i32) (result i32)))
  (import "atoll" "irq_ack" (func $irq_ack (param i32) (result i32)))
  (import "atoll" "dma_alloc" (func $dma_alloc (param i32) (result i32)))
  (import "atoll" "dma_address" (func $dma_address (param i32) (result i64)))
  (import "atoll" "dma_read" (func $dma_read (param i32 i32 i32 i32) (result i32)))
  (import "atoll" "dma_write" (func $dma_write (param i32 i32 i32 i32) (result i32)))
  (import "atoll" "dma_free" (func $dma_free (param i32) (result i32)))
  (import "atoll" "pci_read" (func $pci_read (param i32 i32) (result i64)))
  (import "atoll" "pci_write" (func $pci_write (param i32 i32 i32) (result i32)))
  (import "atoll" "info" (func $info (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 4200) "victim-b")
  (data (i32.const 4216) "steady")
  (data (i32.const 4240) "VIOLATION: check 00 got 0x00000000, a result the kernel must not give")
  (data (i32.const 4320) "note to the supervisor lost: queue full")
  (global $armed (mut i32) (i32.const -1))
  (global $rng (mut i32) (i32.const 1))
  (global $zero (mut i32) (i32.const 0))
  (global $violations (mut i32) (i32.const 0))

  ;; xorshift32; never returns to 0 from a nonzero state.
  (func $rand (result i32)
    (local $x i32)
    (local.set $x (global.get $rng))
    (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
    (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
    (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
    (global.set $rng (local.get $x))
    (local.get $x))

  ;; A pointer or length: half the time near the memory's end (in bounds,
  ;; straddling it, or just past it), half the time anything.
  (func $arg (result i32)
    (if (result i32) (i32.and (call $rand) (i32.const 1))
      (then (i32.rem_u (call $rand) (i32.const 0x11000)))
      (else (call $rand))))

  ;; A handle: none (0), the supervisor's (2), one past (3), or anything.
  ;; Never 1: taking or calling its own queue would strand its callers.
  (func $handle (result i32)
    (local $h i32)
    (local.set $h (i32.rem_u (call $rand) (i32.const 4)))
    (if (result i32) (i32.eq (local.get $h) (i32.const 1))
      (then (call $rand))
      (else (local.get $h))))

  ;; Records a failed check `id` that got `got` and logs both.
  (func $violation (param $id i32) (param $got i32)
    (local $at i32) (local $digit i32)
    (global.set $violations (i32.add (global.get $violations) (i32.const 1)))
    (i32.store8 (i32.const 4257) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $id) (i32.const 10)) (i32.const 10))))
    (i32.store8 (i32.const 4258) (i32.add (i32.const 48) (i32.rem_u (local.get $id) (i32.const 10))))
    ;; eight hex digits of `got` at 4266..4274
    (local.set $at (i32.const 4274))
    (loop $hex
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (local.set $digit (i32.and (local.get $got) (i32.const 15)))
      (i32.store8 (local.get $at)
        (i32.add (local.get $digit)
          (select (i32.const 87) (i32.const 48) (i32.gt_u (local.get $digit) (i32.const 9)))))
      (local.set $got (i32.shr_u (local.get $got) (i32.const 4)))
      (br_if $hex (i32.gt_u (local.get $at) (i32.const 4266))))
    (drop (call $log (i32.const 4240) (i32.const 69))))

  ;; Check `id`: the kernel must have answered exactly `expected`.
  (func $expect (param $got i32) (param $expected i32) (param $id i32)
    (if (i32.ne (local.get $got) (local.get $expected))
      (then (call $violation (local.get $id) (local.get $got)))))

  ;; Check `id`: the kernel must have refused (a negative code).
  (func $refused (param $got i64) (param $id i32)
    (if (i64.ge_s (local.get $got) (i64.const 0))
      (then (call $violation (local.get $id) (i32.wrap_i64 (local.get $got))))))

  ;; A note to the supervisor. Its queue may be full for a moment (start
  ;; notes of a restart storm, garbage from random host calls): retry, and
  ;; say so if the note is lost (the supervisor would report a stall).
  (func $tell (param $what i32) (param $kind i32)
    (local $tries i32)
    (i32.store8 (i32.const 8192) (local.get $what))
    (i32.store8 (i32.const 8193) (local.get $kind))
    (i32.store (i32.const 8196) (global.get $violations))
    (loop $again
      (if (i32.eq (call $send (i32.const 2) (i32.const 8192) (i32.const 8)) (i32.const -8))
        (then
          (local.set $tries (i32.add (local.get $tries) (i32.const 1)))
          (if (i32.lt_u (local.get $tries) (i32.const 1000))
            (then
              (drop (call $sleep (i64.const 10000)))
              (br $again)))
          (drop (call $log (i32.const 4320) (i32.const 39)))))))

  (func $deeper (param i32) (result i32)
    (i32.add (call $deeper (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))

  ;; Kind 7: answers too long for any message, then too long for the caller's
  ;; buffer (the token stays good), then garbage. Returns 1: answered.
  (func $garbage (param $token i32) (result i32)
    (local $i i32)
    (loop $fill
      (i32.store8 (i32.add (i32.const 12288) (local.get $i)) (call $rand))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 4096))))
    (call $expect (call $reply (local.get $token) (i32.const 12288) (i32.const 5000)) (i32.const -3) (i32.const 70))
    (call $expect (call $reply (local.get $token) (i32.const 12288) (i32.const 4096)) (i32.const -12) (i32.const 71))
    (call $expect (call $send (i32.const 2) (i32.const 12288) (i32.const 4097)) (i32.const -3) (i32.const 72))
    (call $expect (call $reply (local.get $token) (i32.const 12288) (i32.const 12)) (i32.const 0) (i32.const 73))
    ;; Answered once: the token is spent.
    (call $expect (call $reply (local.get $token) (i32.const 12288) (i32.const 12)) (i32.const -6) (i32.const 74))
    (i32.const 1))

  ;; Kind 8: handles, tokens and rights it does not have.
  (func $misuse (param $token i32)
    (local $i i32)
    ;; An earlier fault's random host calls may have written over the names
    ;; (`info` records at random pointers): write them again, so that the
    ;; checks below test the right, not the name's UTF-8 (found by the
    ;; million-fault run: InvalidUtf8 is checked before the right).
    (i64.store (i32.const 4200) (i64.const 7074430889360583030)) ;; "victim-b"
    (i32.store (i32.const 4216) (i32.const 1634038899))          ;; "stea"
    (i32.store16 (i32.const 4220) (i32.const 31076))             ;; "dy"
    (call $expect (call $send (i32.const 99) (i32.const 0) (i32.const 4)) (i32.const -6) (i32.const 80))
    (call $expect (call $send (i32.const -1) (i32.const 0) (i32.const 4)) (i32.const -6) (i32.const 81))
    (call $expect (call $send (i32.const 0) (i32.const 0) (i32.const 4)) (i32.const -6) (i32.const 82))
    ;; Receiving on an endpoint it only uses.
    (call $expect (call $receive (i32.const 2) (i32.const 0) (i32.const 64) (i64.const 0) (i32.const 4096)) (i32.const -13) (i32.const 83))
    (call $expect (call $call (i32.const 42) (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 64)) (i32.const -6) (i32.const 84))
    ;; Tokens near its own: other servers' calls, or none; never its to answer.
    (local.set $i (i32.const 1))
    (loop $near
      (call $refused (i64.extend_i32_s (call $reply (i32.add (local.get $token) (local.get $i)) (i32.const 0) (i32.const 4))) (i32.const 85))
      (call $refused (i64.extend_i32_s (call $reply (i32.sub (local.get $token) (local.get $i)) (i32.const 0) (i32.const 4))) (i32.const 86))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $near (i32.le_u (local.get $i) (i32.const 8))))
    (call $refused (i64.extend_i32_s (call $reply (i32.const 0) (i32.const 0) (i32.const 4))) (i32.const 87))
    (call $refused (i64.extend_i32_s (call $reply (i32.xor (local.get $token) (i32.const 0x10000)) (i32.const 0) (i32.const 4))) (i32.const 88))
    ;; Supervisor and driver rights.
    (call $expect (call $control (i32.const 3) (i32.const 4200) (i32.const 8)) (i32.const -13) (i32.const 89))
    (call $expect (call $swap (i32.const 4200) (i32.const 8) (i32.const 0) (i32.const 64)) (i32.const -13) (i32.const 90))
    (call $refused (call $port_in (i32.const 0x3f8) (i32.const 1)) (i32.const 91))
    (call $refused (i64.extend_i32_s (call $port_out (i32.const 0xf4) (i32.const 1) (i32.const 0x11))) (i32.const 92))
    (call $refused (i64.extend_i32_s (call $irq_ack (i32.const 4))) (i32.const 93))
    (call $refused (i64.extend_i32_s (call $dma_alloc (i32.const 4096))) (i32.const 94))
    (call $refused (call $pci_read (i32.const 0) (i32.const 0)) (i32.const 95))
    (call $refused (i64.extend_i32_s (call $pci_write (i32.const 8) (i32.const 4) (i32.const 7))) (i32.const 96))
    ;; An endpoint it was not granted.
    (call $expect (call $lookup (i32.const 4216) (i32.const 6)) (i32.const -7) (i32.const 97)))

  ;; Kind 9: 24 host calls, each function and argument random. Results are
  ;; checked where the kernel has only one right answer: this service has no
  ;; grant, is not the supervisor, and holds no token but its own.
  (func $random_calls
    (local $n i32)
    (local.set $n (i32.const 24))
    (loop $next
      (block $done
        (block $c15 (block $c14 (block $c13 (block $c12 (block $c11 (block $c10
        (block $c9 (block $c8 (block $c7 (block $c6 (block $c5 (block $c4
        (block $c3 (block $c2 (block $c1 (block $c0
          (br_table $c0 $c1 $c2 $c3 $c4 $c5 $c6 $c7 $c8 $c9 $c10 $c11 $c12 $c13 $c14 $c15
            (i32.rem_u (call $rand) (i32.const 16))))
        ;; c0
        (drop (call $log (call $arg) (call $arg))) (br $done))
        ;; c1
        (drop (call $lookup (call $arg) (call $arg))) (br $done))
        ;; c2: garbage to the supervisor, or a bad handle
        (drop (call $send (call $handle) (call $arg) (call $arg))) (br $done))
        ;; c3: a random token is never this service's to answer
        (call $refused (i64.extend_i32_s (call $reply (call $rand) (call $arg) (call $arg))) (i32.const 3)) (br $done))
        ;; c4: never its own endpoint, so never a message
        (call $refused (i64.extend_i32_s (call $receive (call $handle) (call $arg) (call $arg) (i64.const 0) (call $arg))) (i32.const 4)) (br $done))
        ;; c5
        (call $expect (call $sleep (i64.extend_i32_u (i32.rem_u (call $rand) (i32.const 50000)))) (i32.const 0) (i32.const 5)) (br $done))
        ;; c6: the supervisor answers any call; a bad handle is refused
        (drop (call $call (call $handle) (call $arg) (call $arg) (call $arg) (call $arg))) (br $done))
        ;; c7
        (call $refused (i64.extend_i32_s (call $control (call $rand) (call $arg) (call $arg))) (i32.const 7)) (br $done))
        ;; c8
        (call $refused (i64.extend_i32_s (call $swap (call $arg) (call $arg) (call $arg) (call $arg))) (i32.const 8)) (br $done))
        ;; c9
        (call $refused (call $port_in (call $rand) (call $rand)) (i32.const 9))
        (call $refused (i64.extend_i32_s (call $port_out (call $rand) (call $rand) (call $rand))) (i32.const 9)) (br $done))
        ;; c10
        (call $refused (i64.extend_i32_s (call $irq_ack (call $rand))) (i32.const 10)) (br $done))
        ;; c11
        (call $refused (i64.extend_i32_s (call $dma_alloc (call $rand))) (i32.const 11))
        (call $refused (call $dma_address (call $rand)) (i32.const 11)) (br $done))
        ;; c12
        (call $refused (i64.extend_i32_s (call $dma_read (call $rand) (call $rand) (call $arg) (call $arg))) (i32.const 12))
        (call $refused (i64.extend_i32_s (call $dma_write (call $rand) (call $rand) (call $arg) (call $arg))) (i32.const 12))
        (call $refused (i64.extend_i32_s (call $dma_free (call $rand))) (i32.const 12)) (br $done))
        ;; c13
        (call $refused (call $pci_read (call $rand) (call $rand)) (i32.const 13))
        (call $refused (i64.extend_i32_s (call $pci_write (call $rand) (call $rand) (call $rand))) (i32.const 13)) (br $done))
        ;; c14
        (drop (call $info (i32.rem_u (call $rand) (i32.const 4)) (i32.rem_u (call $rand) (i32.const 16)) (call $arg) (call $arg))) (br $done))
        ;; c15
        (drop (call $time)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $next (i32.gt_s (local.get $n) (i32.const 0)))))

  ;; Fires fault `kind` while holding the call `token`. Returns 1 if it
  ;; answered the call itself.
  (func $fire (param $kind i32) (param $token i32) (result i32)
    (block $k9 (block $k8 (block $k7 (block $k6 (block $k5 (block $k4
      (block $k3 (block $k2 (block $k1 (block $k0
        (br_table $k0 $k1 $k2 $k3 $k4 $k5 $k6 $k7 $k8 $k9 $k0 (local.get $kind)))
      ;; k0
      unreachable)
      ;; k1
      (drop (i32.load (i32.const -16))) unreachable)
      ;; k2
      (drop (i32.div_u (i32.const 1) (global.get $zero))) unreachable)
      ;; k3
      (drop (call $deeper (i32.const 0))) unreachable)
      ;; k4
      (loop $grow
        (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
      (i32.store (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))
      unreachable)
      ;; k5
      (call $tell (i32.const 3) (local.get $kind))
      (drop (call $sleep (i64.const 0x7fffffffffffffff)))
      unreachable)
      ;; k6
      (call $tell (i32.const 3) (local.get $kind))
      (loop $spin (br $spin))
      unreachable)
      ;; k7
      (global.set $violations (i32.const 0))
      (drop (call $garbage (local.get $token)))
      (call $tell (i32.const 2) (local.get $kind))
      (return (i32.const 1)))
    ;; k8
    (global.set $violations (i32.const 0))
    (call $misuse (local.get $token))
    (call $tell (i32.const 2) (local.get $kind))
    (return (i32.const 0)))
    ;; k9
    (global.set $violations (i32.const 0))
    (call $random_calls)
    (call $tell (i32.const 2) (local.get $kind))
    (i32.const 0))

  (func (export "_start")
    (local $len i32) (local $token i32) (local $kind i32)
    ;; Tell the supervisor this version has started (it waits for that after
    ;; a swap: the old version may have taken messages after the request).
    (call $tell (i32.const 5) (i32.const 10))
    (loop $serve
      (local.set $len
        (call $receive (i32.const 1) (i32.const 0) (i32.const 4096) (i64.const -1) (i32.const 4096)))
      (br_if $serve (i32.lt_s (local.get $len) (i32.const 0)))
      (local.set $token (i32.load (i32.const 4096)))
      (if (i32.eqz (local.get $token))
        (then
          ;; A send: arm a fault (byte 0 = 1), or ignore it.
          (if (i32.and (i32.ge_u (local.get $len) (i32.const 8))
                       (i32.eq (i32.load8_u (i32.const 0)) (i32.const 1)))
            (then
              (global.set $armed (i32.load8_u (i32.const 1)))
              (global.set $rng (i32.or (i32.load (i32.const 4)) (i32.const 1)))))
          (br $serve)))
      (local.set $kind (global.get $armed))
      (global.set $armed (i32.const -1))
      ;; Kind 10: leave the call unanswered and wait for the next message
      ;; (the supervisor swaps this service in the middle of the call).
      (if (i32.eq (local.get $kind) (i32.const 10))
        (then
          (call $tell (i32.const 3) (local.get $kind))
          (br $serve)))
      (if (i32.ge_s (local.get $kind) (i32.const 0))
        (then
          (br_if $serve (call $fire (local.get $kind) (local.get $token)))))
      (drop (call $reply (local.get $token) (i32.const 0) (local.get $len)))
      (br $serve))))
