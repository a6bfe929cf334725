;; Divides by zero (the divisor comes from memory, so no compiler folds it).
(module
  (memory (export "memory") 1)
  (func (export "_start") (drop (i32.div_s (i32.const 7) (i32.load (i32.const 0))))))
