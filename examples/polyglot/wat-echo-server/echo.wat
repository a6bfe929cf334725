;; wat-echo-server: serves the echo protocol (wasm-services/protocols, `echo`)
;; on the `echo-wat` endpoint, in hand-written WebAssembly text.
;;
;; Request:  0 = Echo(String) = [0, varint len, UTF-8 bytes]
;;           1 = Ping(u64)    = [1, varint n]
;; Response: 0 = Echo(String), 1 = Pong(u64), encoded the same way, so the
;; answer to a well-formed request is the request itself: the server checks
;; the request (variant, varints, lengths, UTF-8, no trailing bytes) and sends
;; its bytes back. Anything else is answered Echo("error: malformed request"),
;; so a caller never waits for ever.
(module
  ;; The host functions used, declared as in sdk/wat/atoll-imports.wat.
  (import "atoll" "log" (func $atoll_log (param i32 i32) (result i32)))
  (import "atoll" "lookup" (func $atoll_lookup (param i32 i32) (result i32)))
  (import "atoll" "receive" (func $atoll_receive (param i32 i32 i32 i64 i32) (result i32)))
  (import "atoll" "reply" (func $atoll_reply (param i32 i32 i32) (result i32)))

  ;; Memory map (one page):
  ;;   0..8       receive's record: reply token, sender id (little-endian u32s)
  ;;   16..       constant text (the data segments below)
  ;;   1024..5120 the request buffer (MAX_MESSAGE_LEN = 4096 bytes)
  (memory (export "memory") 1)
  (data (i32.const 16) "echo-wat")                           ;; 8 bytes
  (data (i32.const 32) "wat-echo-server: serving echo-wat")  ;; 33 bytes
  (data (i32.const 80) "no `echo-wat` endpoint to serve")    ;; 31 bytes
  (data (i32.const 128) "receive failed")                    ;; 14 bytes
  ;; Response::Echo("error: malformed request"): variant 0, length 24, text.
  (data (i32.const 160) "\00\18error: malformed request")    ;; 26 bytes

  ;; The value of the last varint read by $varint.
  (global $value (mut i64) (i64.const 0))

  (func (export "_start")
    (local $handle i32) (local $len i32) (local $token i32)
    (drop (call $atoll_log (i32.const 32) (i32.const 33)))
    (local.set $handle (call $atoll_lookup (i32.const 16) (i32.const 8)))
    (if (i32.lt_s (local.get $handle) (i32.const 0))
      (then
        (drop (call $atoll_log (i32.const 80) (i32.const 31)))
        (return)))
    (loop $serve
      ;; Wait for ever. Then receive fails only on a lasting fault (a bad
      ;; handle): stop rather than spin.
      (local.set $len (call $atoll_receive (local.get $handle)
        (i32.const 1024) (i32.const 4096) (i64.const -1) (i32.const 0)))
      (if (i32.lt_s (local.get $len) (i32.const 0))
        (then
          (drop (call $atoll_log (i32.const 128) (i32.const 14)))
          (return)))
      ;; Token 0: the message came from `send` and expects no reply.
      (local.set $token (i32.load (i32.const 0)))
      (if (local.get $token)
        (then
          (if (call $well_formed (i32.const 1024) (i32.add (i32.const 1024) (local.get $len)))
            (then (call $answer (local.get $token) (i32.const 1024) (local.get $len)))
            (else (call $answer (local.get $token) (i32.const 160) (i32.const 26))))))
      (br $serve)))

  ;; Replies; if the caller's buffer is too small (BufferTooSmall, -12), answers
  ;; empty instead rather than leave it waiting.
  (func $answer (param $token i32) (param $ptr i32) (param $len i32)
    (if (i32.eq (call $atoll_reply (local.get $token) (local.get $ptr) (local.get $len))
                (i32.const -12))
      (then (drop (call $atoll_reply (local.get $token) (i32.const 0) (i32.const 0))))))

  ;; Whether the bytes $p..$end are exactly one echo Request.
  (func $well_formed (param $p i32) (param $end i32) (result i32)
    (local.set $p (call $varint (local.get $p) (local.get $end)))
    (if (i32.eqz (local.get $p)) (then (return (i32.const 0))))
    ;; Ping(u64): one varint, then nothing.
    (if (i64.eq (global.get $value) (i64.const 1))
      (then
        (local.set $p (call $varint (local.get $p) (local.get $end)))
        (return (i32.and (i32.ne (local.get $p) (i32.const 0))
                         (i32.eq (local.get $p) (local.get $end))))))
    ;; Echo(String): a length that is exactly the rest, then UTF-8.
    (if (i64.eq (global.get $value) (i64.const 0))
      (then
        (local.set $p (call $varint (local.get $p) (local.get $end)))
        (if (i32.eqz (local.get $p)) (then (return (i32.const 0))))
        (if (i64.ne (global.get $value)
                    (i64.extend_i32_u (i32.sub (local.get $end) (local.get $p))))
          (then (return (i32.const 0))))
        (return (call $utf8 (local.get $p) (local.get $end)))))
    ;; Any other variant.
    (i32.const 0))

  ;; Reads an unsigned LEB128 varint of at most 64 bits (10 bytes) at $p,
  ;; before $end, into $value. Returns the position after it, or 0 if it is
  ;; malformed (0 is never a position in the request buffer).
  (func $varint (param $p i32) (param $end i32) (result i32)
    (local $byte i32) (local $shift i64)
    (global.set $value (i64.const 0))
    (loop $next
      (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const 0))))
      (local.set $byte (i32.load8_u (local.get $p)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      ;; The tenth byte holds only bit 63 (so it also ends the varint).
      (if (i32.and (i64.eq (local.get $shift) (i64.const 63))
                   (i32.gt_u (local.get $byte) (i32.const 1)))
        (then (return (i32.const 0))))
      (global.set $value (i64.or (global.get $value)
        (i64.shl (i64.extend_i32_u (i32.and (local.get $byte) (i32.const 0x7f)))
                 (local.get $shift))))
      (local.set $shift (i64.add (local.get $shift) (i64.const 7)))
      (br_if $next (i32.and (local.get $byte) (i32.const 0x80))))
    (local.get $p))

  ;; Whether $p..$end is well-formed UTF-8 (no overlong forms, surrogates or
  ;; code points past U+10FFFF), as Rust's `str` requires.
  (func $utf8 (param $p i32) (param $end i32) (result i32)
    (local $lead i32) (local $next i32) (local $more i32) (local $point i32) (local $min i32)
    (block $done
      (loop $char
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $lead (i32.load8_u (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $char (i32.lt_u (local.get $lead) (i32.const 0x80)))
        ;; The lead byte gives the number of continuation bytes and the
        ;; smallest code point that needs that many.
        (if (i32.lt_u (local.get $lead) (i32.const 0xc2)) (then (return (i32.const 0))))
        (if (i32.lt_u (local.get $lead) (i32.const 0xe0))
          (then (local.set $more (i32.const 1))
                (local.set $point (i32.and (local.get $lead) (i32.const 0x1f)))
                (local.set $min (i32.const 0x80)))
          (else (if (i32.lt_u (local.get $lead) (i32.const 0xf0))
            (then (local.set $more (i32.const 2))
                  (local.set $point (i32.and (local.get $lead) (i32.const 0x0f)))
                  (local.set $min (i32.const 0x800)))
            (else (if (i32.lt_u (local.get $lead) (i32.const 0xf5))
              (then (local.set $more (i32.const 3))
                    (local.set $point (i32.and (local.get $lead) (i32.const 0x07)))
                    (local.set $min (i32.const 0x10000)))
              (else (return (i32.const 0))))))))
        (loop $continuation
          (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const 0))))
          (local.set $next (i32.load8_u (local.get $p)))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (if (i32.ne (i32.and (local.get $next) (i32.const 0xc0)) (i32.const 0x80))
            (then (return (i32.const 0))))
          (local.set $point (i32.or (i32.shl (local.get $point) (i32.const 6))
                                    (i32.and (local.get $next) (i32.const 0x3f))))
          (local.set $more (i32.sub (local.get $more) (i32.const 1)))
          (br_if $continuation (local.get $more)))
        (if (i32.lt_u (local.get $point) (local.get $min)) (then (return (i32.const 0))))
        (if (i32.and (i32.ge_u (local.get $point) (i32.const 0xd800))
                     (i32.le_u (local.get $point) (i32.const 0xdfff)))
          (then (return (i32.const 0))))
        (br_if $char (i32.le_u (local.get $point) (i32.const 0x10ffff)))
        (return (i32.const 0))))
    (i32.const 1))
)
