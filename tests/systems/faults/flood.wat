;; Sends to the echo endpoint as fast as it can, for ever, ignoring refusals.
(module
  (import "atoll" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $again
      (drop (call $send (i32.const 1) (i32.const 0) (i32.const 64)))
      (br $again))))
