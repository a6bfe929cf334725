;; Grows its memory one page at a time until refused, reports how far it got,
;; then writes past what it has (a trap).
(module
  (import "atoll" "log" (func $log (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "refused at page 0000")
  (func (export "_start") (local $pages i32) (local $n i32) (local $p i32)
    (loop $grow
      (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1))
        (then (br $grow))))
    (local.set $n (memory.size))
    ;; four decimal digits of the page count at offsets 16..20
    (local.set $p (i32.const 20))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (i32.gt_u (local.get $p) (i32.const 16))))
    (drop (call $log (i32.const 0) (i32.const 20)))
    (i32.store (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))))
