;; A console driver preempted between setting and clearing DLAB, as far as the
;; kernel can tell: it sets DLAB on COM1 (line control, 0x3fb), logs through
;; the kernel while it is set, then clears it. The kernel's log bytes must
;; reach the transmit register, not the divisor latch.
(module
  (import "atoll" "log" (func $log (param i32 i32) (result i32)))
  (import "atoll" "port_out" (func $port_out (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "written while DLAB was set")
  (data (i32.const 32) "DLAB cleared")
  (func (export "_start")
    ;; 8N1 with DLAB on.
    (if (i32.ne (call $port_out (i32.const 0x3fb) (i32.const 1) (i32.const 0x83)) (i32.const 0))
      (then unreachable))
    (drop (call $log (i32.const 0) (i32.const 26)))
    (drop (call $port_out (i32.const 0x3fb) (i32.const 1) (i32.const 0x03)))
    (drop (call $log (i32.const 32) (i32.const 12)))))
