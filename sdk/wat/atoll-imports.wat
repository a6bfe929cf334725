;; atoll-imports.wat: the Atoll host functions as WebAssembly text imports.
;; Paste the (import ...) lines at the top of a service's (module ...).
;; Rendered from the atoll-abi crate by sdk/abi/tests/c_header.rs; do not
;; edit. To update: ATOLL_BLESS=1 cargo test -p atoll-abi --test c_header
;; See docs/abi.md for what each function does.

;; log(ptr: i32, len: i32) -> i32: writes UTF-8 text to the console as one line; 0 or an error
(import "atoll" "log" (func $atoll_log (param i32 i32) (result i32)))
;; lookup(name_ptr: i32, name_len: i32) -> i32: the handle (> 0) of the endpoint called `name`, or an error
(import "atoll" "lookup" (func $atoll_lookup (param i32 i32) (result i32)))
;; send(handle: i32, ptr: i32, len: i32) -> i32: queues a copy of the message, never blocks; 0 or an error
(import "atoll" "send" (func $atoll_send (param i32 i32 i32) (result i32)))
;; call(handle: i32, ptr: i32, len: i32, reply_ptr: i32, reply_cap: i32) -> i32: sends and blocks until the reply; the reply's length or an error
(import "atoll" "call" (func $atoll_call (param i32 i32 i32 i32 i32) (result i32)))
;; receive(handle: i32, ptr: i32, cap: i32, timeout_ns: i64, info_ptr: i32) -> i32: takes the oldest message (timeout < 0: for ever, 0: no wait); its length or an error
(import "atoll" "receive" (func $atoll_receive (param i32 i32 i32 i64 i32) (result i32)))
;; reply(token: i32, ptr: i32, len: i32) -> i32: answers the call `token` names, once; 0 or an error
(import "atoll" "reply" (func $atoll_reply (param i32 i32 i32) (result i32)))
;; reply_receive(token: i32, reply_ptr: i32, reply_len: i32, status_ptr: i32, handle: i32, ptr: i32, cap: i32, timeout_ns: i64, info_ptr: i32) -> i32: `reply` (none for token 0; its result at `status_ptr`), then `receive`; what `receive` returns
(import "atoll" "reply_receive" (func $atoll_reply_receive (param i32 i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
;; sleep(ns: i64) -> i32: blocks for at least `ns` nanoseconds (0 yields); 0
(import "atoll" "sleep" (func $atoll_sleep (param i64) (result i32)))
;; time() -> i64: nanoseconds since boot on the monotonic clock
(import "atoll" "time" (func $atoll_time (result i64)))
;; control(op: i32, name_ptr: i32, name_len: i32) -> i32: supervisor only: stops, starts or restarts a service; 0 or an error
(import "atoll" "control" (func $atoll_control (param i32 i32 i32) (result i32)))
;; swap(name_ptr: i32, name_len: i32, module_ptr: i32, module_len: i32) -> i32: supervisor only: replaces a service with a new module; 0 or an error
(import "atoll" "swap" (func $atoll_swap (param i32 i32 i32 i32) (result i32)))
;; port_in(port: i32, width: i32) -> i64: reads a granted I/O port (width 1, 2 or 4); the value or an error
(import "atoll" "port_in" (func $atoll_port_in (param i32 i32) (result i64)))
;; port_out(port: i32, width: i32, value: i32) -> i32: writes the low `width` bytes of `value` to a granted I/O port; 0 or an error
(import "atoll" "port_out" (func $atoll_port_out (param i32 i32 i32) (result i32)))
;; irq_ack(irq: i32) -> i32: unmasks a granted interrupt line; 0 or an error
(import "atoll" "irq_ack" (func $atoll_irq_ack (param i32) (result i32)))
;; dma_alloc(len: i32) -> i32: allocates a zeroed DMA buffer from the `dma-kib` budget; its handle (> 0) or an error
(import "atoll" "dma_alloc" (func $atoll_dma_alloc (param i32) (result i32)))
;; dma_address(handle: i32) -> i64: the physical address of a DMA buffer, or an error
(import "atoll" "dma_address" (func $atoll_dma_address (param i32) (result i64)))
;; dma_read(handle: i32, offset: i32, ptr: i32, len: i32) -> i32: copies from a DMA buffer into memory; 0 or an error
(import "atoll" "dma_read" (func $atoll_dma_read (param i32 i32 i32 i32) (result i32)))
;; dma_write(handle: i32, offset: i32, ptr: i32, len: i32) -> i32: copies from memory into a DMA buffer; 0 or an error
(import "atoll" "dma_write" (func $atoll_dma_write (param i32 i32 i32 i32) (result i32)))
;; dma_free(handle: i32) -> i32: returns a DMA buffer to the budget; 0 or an error
(import "atoll" "dma_free" (func $atoll_dma_free (param i32) (result i32)))
;; pci_read(address: i32, offset: i32) -> i64: reads a granted PCI function's config register; the value or an error
(import "atoll" "pci_read" (func $atoll_pci_read (param i32 i32) (result i64)))
;; pci_write(address: i32, offset: i32, value: i32) -> i32: writes the command register of a PCI function granted by name (I/O, memory, bus-master, INTx-disable bits only); 0 or an error
(import "atoll" "pci_write" (func $atoll_pci_write (param i32 i32 i32) (result i32)))
;; info(kind: i32, index: i32, ptr: i32, cap: i32) -> i32: writes a postcard record about the system or a service; its length or an error
(import "atoll" "info" (func $atoll_info (param i32 i32 i32 i32) (result i32)))
;; startup(ptr: i32, cap: i32) -> i32: writes the service's postcard start-up record if it fits; its length or an error
(import "atoll" "startup" (func $atoll_startup (param i32 i32) (result i32)))

;; Error codes, returned as negative i32 results (numbers never change):
;;   -1  InvalidArgument  invalid argument
;;   -2  OutOfBounds      buffer outside the caller's memory
;;   -3  TooLarge         buffer too large
;;   -4  InvalidUtf8      text is not UTF-8
;;   -5  NoMemory         service exports no memory
;;   -6  BadHandle        bad handle
;;   -7  NotFound         no such endpoint granted
;;   -8  QueueFull        queue full
;;   -9  WouldBlock       no message waiting
;;  -10  TimedOut         timed out
;;  -11  PeerGone         peer has stopped
;;  -12  BufferTooSmall   buffer too small
;;  -13  NotPermitted     operation not permitted on this handle
;;  -14  InvalidModule    invalid module
;;  -15  OutOfMemory      kernel memory exhausted
;;
;; Limits (bytes): MAX_MESSAGE_LEN 4096, MAX_LOG_LEN 1024, RECEIVE_INFO_LEN 8, WASM_PAGE_SIZE 65536.
;; Largest module `swap` takes: MAX_MODULE_LEN 16777216; most state a swap carries: MAX_STATE_LEN 1048576.
;; The receive info record, little-endian u32s: token at 0 (reply token; 0 for a message from `send`); sender at 4 (sender's id; KERNEL_SENDER (0xffffffff) for the kernel);
;; Hot-swap state handoff exports: atoll_state_save () -> i64; atoll_state_alloc (len: i32) -> i32; atoll_state_restore (ptr: i32, len: i32) -> ();
;; info service states (the byte after the name): ready 0, running 1, receiving 2, calling 3, sleeping 4, exited 5, faulted 6, stopped 7.
;; control ops: stop 1, start 2, restart 3, trace on 4, trace off 5.
;; info kinds: system 0, service 1, endpoint 2, trace 3.
