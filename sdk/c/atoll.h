/*
 * atoll.h: C and C++ bindings for the Atoll kernel ABI (docs/abi.md).
 *
 * Declares every host function of import module `atoll` with its exact Wasm
 * signature, the fixed error codes and the ABI limits, plus a few small
 * conveniences. The block between the BEGIN/END GENERATED markers is
 * rendered from the `atoll-abi` crate by sdk/abi/tests/c_header.rs, which
 * fails when it differs; never edit it by hand, run
 *     ATOLL_BLESS=1 cargo test -p atoll-abi --test c_header
 * instead. Everything outside the block is written by hand.
 *
 * Freestanding: needs only the compiler's own <stdint.h>, <stddef.h> and
 * <stdbool.h>, no libc. Build for wasm32 (see sdk/c/README.md):
 *     clang --target=wasm32 -ffreestanding -mbulk-memory -nostdlib -O2 ...
 * For postcard (the wire format of typed protocols) see atoll_postcard.h.
 */
#ifndef ATOLL_H
#define ATOLL_H

#if !defined(__wasm32__)
#error "atoll.h is for wasm32 services: compile with clang --target=wasm32"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define ATOLL_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
extern "C" {
#else
#define ATOLL_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Pointers and size_t are 32 bits on wasm32: both are Wasm i32s, as the ABI
 * wants for every (ptr, len) pair. */
ATOLL_STATIC_ASSERT(sizeof(void *) == 4 && sizeof(size_t) == 4, "wasm32 only");

/* BEGIN GENERATED FROM sdk/abi */
/* Rendered from the atoll-abi crate; do not edit. To update:
 *     ATOLL_BLESS=1 cargo test -p atoll-abi --test c_header */

/* Module names and limits. */
#define ATOLL_IMPORT_MODULE "atoll"
#define ATOLL_ENTRY_POINT "_start"
#define ATOLL_MEMORY_EXPORT "memory"
#define ATOLL_WASM_PAGE_SIZE 65536u
#define ATOLL_MAX_LOG_LEN 1024u
#define ATOLL_MAX_MESSAGE_LEN 4096u
#define ATOLL_RECEIVE_INFO_LEN 8u
#define ATOLL_RECEIVE_INFO_TOKEN_OFFSET 0u
#define ATOLL_RECEIVE_INFO_SENDER_OFFSET 4u
#define ATOLL_DEFAULT_QUEUE_DEPTH 16u
#define ATOLL_MAX_QUEUE_DEPTH 1024u
#define ATOLL_MAX_MODULE_LEN 16777216u
#define ATOLL_MAX_STATE_LEN 1048576u
#define ATOLL_KERNEL_SENDER 0xffffffffu
/* `control` operations. */
#define ATOLL_CONTROL_STOP 1
#define ATOLL_CONTROL_START 2
#define ATOLL_CONTROL_RESTART 3
#define ATOLL_CONTROL_TRACE_ON 4
#define ATOLL_CONTROL_TRACE_OFF 5
/* `info` kinds. */
#define ATOLL_INFO_SYSTEM 0
#define ATOLL_INFO_SERVICE 1
#define ATOLL_INFO_ENDPOINT 2
#define ATOLL_INFO_TRACE 3
/* Hot-swap state handoff: the exports the kernel looks for. */
#define ATOLL_STATE_SAVE_EXPORT "atoll_state_save" /* () -> i64 */
#define ATOLL_STATE_ALLOC_EXPORT "atoll_state_alloc" /* (len: i32) -> i32 */
#define ATOLL_STATE_RESTORE_EXPORT "atoll_state_restore" /* (ptr: i32, len: i32) -> () */
/* Handlers: the export a call switched to a server may go to, and what
 * it returns besides `(ptr << 32) | len` (docs/abi.md, "Handlers"). */
#define ATOLL_HANDLER_EXPORT "atoll_handle" /* (received: i32, reply_cap: i32) -> i64 */
#define ATOLL_HANDLER_DEFERRED ((int64_t)-2)
#define ATOLL_HANDLER_DECLINED ((int64_t)-1)

/* The record `receive` writes at `info_ptr`, little-endian (as wasm32
 * is), so this struct is that record. */
struct atoll_receive_info {
    uint32_t token; /* reply token; 0 for a message from `send` */
    uint32_t sender; /* sender's id; KERNEL_SENDER (0xffffffff) for the kernel */
};
ATOLL_STATIC_ASSERT(sizeof(struct atoll_receive_info) == ATOLL_RECEIVE_INFO_LEN, "receive info size");
ATOLL_STATIC_ASSERT(offsetof(struct atoll_receive_info, token) == ATOLL_RECEIVE_INFO_TOKEN_OFFSET, "receive info token");
ATOLL_STATIC_ASSERT(offsetof(struct atoll_receive_info, sender) == ATOLL_RECEIVE_INFO_SENDER_OFFSET, "receive info sender");

/* A service's state in its `info` record (the byte after its name).
 * Numbers never change; new states get new numbers. */
enum atoll_service_state {
    ATOLL_SERVICE_READY = 0,
    ATOLL_SERVICE_RUNNING = 1,
    ATOLL_SERVICE_RECEIVING = 2,
    ATOLL_SERVICE_CALLING = 3,
    ATOLL_SERVICE_SLEEPING = 4,
    ATOLL_SERVICE_EXITED = 5,
    ATOLL_SERVICE_FAULTED = 6,
    ATOLL_SERVICE_STOPPED = 7,
};

/* The lowercase word `ps` shows for a service state. */
static inline const char *atoll_service_state_name(uint32_t state) {
    switch (state) {
    case ATOLL_SERVICE_READY: return "ready";
    case ATOLL_SERVICE_RUNNING: return "running";
    case ATOLL_SERVICE_RECEIVING: return "receiving";
    case ATOLL_SERVICE_CALLING: return "calling";
    case ATOLL_SERVICE_SLEEPING: return "sleeping";
    case ATOLL_SERVICE_EXITED: return "exited";
    case ATOLL_SERVICE_FAULTED: return "faulted";
    case ATOLL_SERVICE_STOPPED: return "stopped";
    default: return "unknown";
    }
}

/* Error codes: host functions return them as negative results.
 * Numbers never change; new codes get new numbers. */
enum atoll_error {
    ATOLL_ERR_INVALID_ARGUMENT = -1, /* invalid argument */
    ATOLL_ERR_OUT_OF_BOUNDS = -2, /* buffer outside the caller's memory */
    ATOLL_ERR_TOO_LARGE = -3, /* buffer too large */
    ATOLL_ERR_INVALID_UTF8 = -4, /* text is not UTF-8 */
    ATOLL_ERR_NO_MEMORY = -5, /* service exports no memory */
    ATOLL_ERR_BAD_HANDLE = -6, /* bad handle */
    ATOLL_ERR_NOT_FOUND = -7, /* no such endpoint granted */
    ATOLL_ERR_QUEUE_FULL = -8, /* queue full */
    ATOLL_ERR_WOULD_BLOCK = -9, /* no message waiting */
    ATOLL_ERR_TIMED_OUT = -10, /* timed out */
    ATOLL_ERR_PEER_GONE = -11, /* peer has stopped */
    ATOLL_ERR_BUFFER_TOO_SMALL = -12, /* buffer too small */
    ATOLL_ERR_NOT_PERMITTED = -13, /* operation not permitted on this handle */
    ATOLL_ERR_INVALID_MODULE = -14, /* invalid module */
    ATOLL_ERR_OUT_OF_MEMORY = -15, /* kernel memory exhausted */
};

/* A short lowercase description of a host function's result. */
static inline const char *atoll_error_description(int32_t code) {
    switch (code) {
    case ATOLL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case ATOLL_ERR_OUT_OF_BOUNDS: return "buffer outside the caller's memory";
    case ATOLL_ERR_TOO_LARGE: return "buffer too large";
    case ATOLL_ERR_INVALID_UTF8: return "text is not UTF-8";
    case ATOLL_ERR_NO_MEMORY: return "service exports no memory";
    case ATOLL_ERR_BAD_HANDLE: return "bad handle";
    case ATOLL_ERR_NOT_FOUND: return "no such endpoint granted";
    case ATOLL_ERR_QUEUE_FULL: return "queue full";
    case ATOLL_ERR_WOULD_BLOCK: return "no message waiting";
    case ATOLL_ERR_TIMED_OUT: return "timed out";
    case ATOLL_ERR_PEER_GONE: return "peer has stopped";
    case ATOLL_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case ATOLL_ERR_NOT_PERMITTED: return "operation not permitted on this handle";
    case ATOLL_ERR_INVALID_MODULE: return "invalid module";
    case ATOLL_ERR_OUT_OF_MEMORY: return "kernel memory exhausted";
    default: return code >= 0 ? "ok" : "unknown error";
    }
}

/* Host functions (import module "atoll"). */
/* log(ptr: i32, len: i32) -> i32: writes UTF-8 text to the console as one line; 0 or an error */
__attribute__((import_module("atoll"), import_name("log")))
int32_t atoll_log(const char *ptr, size_t len);
/* lookup(name_ptr: i32, name_len: i32) -> i32: the handle (> 0) of the endpoint called `name`, or an error */
__attribute__((import_module("atoll"), import_name("lookup")))
int32_t atoll_lookup(const char *name_ptr, size_t name_len);
/* send(handle: i32, ptr: i32, len: i32) -> i32: queues a copy of the message, never blocks; 0 or an error */
__attribute__((import_module("atoll"), import_name("send")))
int32_t atoll_send(int32_t handle, const void *ptr, size_t len);
/* call(handle: i32, ptr: i32, len: i32, reply_ptr: i32, reply_cap: i32) -> i32: sends and blocks until the reply; the reply's length or an error */
__attribute__((import_module("atoll"), import_name("call")))
int32_t atoll_call(int32_t handle, const void *ptr, size_t len, void *reply_ptr, size_t reply_cap);
/* receive(handle: i32, ptr: i32, cap: i32, timeout_ns: i64, info_ptr: i32) -> i32: takes the oldest message (timeout < 0: for ever, 0: no wait); its length or an error */
__attribute__((import_module("atoll"), import_name("receive")))
int32_t atoll_receive(int32_t handle, void *ptr, size_t cap, int64_t timeout_ns, struct atoll_receive_info *info_ptr);
/* reply(token: i32, ptr: i32, len: i32) -> i32: answers the call `token` names, once; 0 or an error */
__attribute__((import_module("atoll"), import_name("reply")))
int32_t atoll_reply(uint32_t token, const void *ptr, size_t len);
/* reply_receive(token: i32, reply_ptr: i32, reply_len: i32, status_ptr: i32, handle: i32, ptr: i32, cap: i32, timeout_ns: i64, info_ptr: i32) -> i32: `reply` (none for token 0; its result at `status_ptr`), then `receive`; what `receive` returns */
__attribute__((import_module("atoll"), import_name("reply_receive")))
int32_t atoll_reply_receive(uint32_t token, const void *reply_ptr, size_t reply_len, int32_t *status_ptr, int32_t handle, void *ptr, size_t cap, int64_t timeout_ns, struct atoll_receive_info *info_ptr);
/* sleep(ns: i64) -> i32: blocks for at least `ns` nanoseconds (0 yields); 0 */
__attribute__((import_module("atoll"), import_name("sleep")))
int32_t atoll_sleep(int64_t ns);
/* time() -> i64: nanoseconds since boot on the monotonic clock */
__attribute__((import_module("atoll"), import_name("time")))
int64_t atoll_time(void);
/* control(op: i32, name_ptr: i32, name_len: i32) -> i32: supervisor only: stops, starts or restarts a service; 0 or an error */
__attribute__((import_module("atoll"), import_name("control")))
int32_t atoll_control(int32_t op, const char *name_ptr, size_t name_len);
/* swap(name_ptr: i32, name_len: i32, module_ptr: i32, module_len: i32) -> i32: supervisor only: replaces a service with a new module; 0 or an error */
__attribute__((import_module("atoll"), import_name("swap")))
int32_t atoll_swap(const char *name_ptr, size_t name_len, const void *module_ptr, size_t module_len);
/* port_in(port: i32, width: i32) -> i64: reads a granted I/O port (width 1, 2 or 4); the value or an error */
__attribute__((import_module("atoll"), import_name("port_in")))
int64_t atoll_port_in(int32_t port, int32_t width);
/* port_out(port: i32, width: i32, value: i32) -> i32: writes the low `width` bytes of `value` to a granted I/O port; 0 or an error */
__attribute__((import_module("atoll"), import_name("port_out")))
int32_t atoll_port_out(int32_t port, int32_t width, uint32_t value);
/* irq_ack(irq: i32) -> i32: unmasks a granted interrupt line; 0 or an error */
__attribute__((import_module("atoll"), import_name("irq_ack")))
int32_t atoll_irq_ack(int32_t irq);
/* dma_alloc(len: i32) -> i32: allocates a zeroed DMA buffer from the `dma-kib` budget; its handle (> 0) or an error */
__attribute__((import_module("atoll"), import_name("dma_alloc")))
int32_t atoll_dma_alloc(size_t len);
/* dma_address(handle: i32) -> i64: the physical address of a DMA buffer, or an error */
__attribute__((import_module("atoll"), import_name("dma_address")))
int64_t atoll_dma_address(int32_t handle);
/* dma_read(handle: i32, offset: i32, ptr: i32, len: i32) -> i32: copies from a DMA buffer into memory; 0 or an error */
__attribute__((import_module("atoll"), import_name("dma_read")))
int32_t atoll_dma_read(int32_t handle, size_t offset, void *ptr, size_t len);
/* dma_write(handle: i32, offset: i32, ptr: i32, len: i32) -> i32: copies from memory into a DMA buffer; 0 or an error */
__attribute__((import_module("atoll"), import_name("dma_write")))
int32_t atoll_dma_write(int32_t handle, size_t offset, const void *ptr, size_t len);
/* dma_free(handle: i32) -> i32: returns a DMA buffer to the budget; 0 or an error */
__attribute__((import_module("atoll"), import_name("dma_free")))
int32_t atoll_dma_free(int32_t handle);
/* pci_read(address: i32, offset: i32) -> i64: reads a granted PCI function's config register; the value or an error */
__attribute__((import_module("atoll"), import_name("pci_read")))
int64_t atoll_pci_read(int32_t address, int32_t offset);
/* pci_write(address: i32, offset: i32, value: i32) -> i32: writes the command register of a PCI function granted by name (I/O, memory, bus-master, INTx-disable bits only); 0 or an error */
__attribute__((import_module("atoll"), import_name("pci_write")))
int32_t atoll_pci_write(int32_t address, int32_t offset, uint32_t value);
/* info(kind: i32, index: i32, ptr: i32, cap: i32) -> i32: writes a postcard record about the system or a service; its length or an error */
__attribute__((import_module("atoll"), import_name("info")))
int32_t atoll_info(int32_t kind, int32_t index, void *ptr, size_t cap);
/* startup(ptr: i32, cap: i32) -> i32: writes the service's postcard start-up record if it fits; its length or an error */
__attribute__((import_module("atoll"), import_name("startup")))
int32_t atoll_startup(void *ptr, size_t cap);
/* END GENERATED */

/* --- Conveniences --------------------------------------------------------- */

/* `receive` timeouts, in nanoseconds: wait for ever, or not at all. */
#define ATOLL_FOREVER ((int64_t)-1)
#define ATOLL_NO_WAIT ((int64_t)0)

/* Exports a function under `name`, without a linker flag. */
#define ATOLL_EXPORT(name) __attribute__((export_name(name), used))

/* Hot-swap state handoff (docs/abi.md, "Hot swap"): put one before each of
 * `int64_t save(void)`, `int32_t alloc(int32_t len)` and
 * `void restore(int32_t ptr, int32_t len)`. */
#define ATOLL_EXPORT_STATE_SAVE ATOLL_EXPORT(ATOLL_STATE_SAVE_EXPORT)
#define ATOLL_EXPORT_STATE_ALLOC ATOLL_EXPORT(ATOLL_STATE_ALLOC_EXPORT)
#define ATOLL_EXPORT_STATE_RESTORE ATOLL_EXPORT(ATOLL_STATE_RESTORE_EXPORT)

/* A server's handler (docs/abi.md, "Handlers"): put it before
 * `int64_t handle(int32_t received, int32_t reply_cap)`. */
#define ATOLL_EXPORT_HANDLER ATOLL_EXPORT(ATOLL_HANDLER_EXPORT)

/* The length of a NUL-terminated string. A loop of our own: there is no
 * libc, and -ffreestanding keeps the compiler from calling `strlen`. */
static inline size_t atoll_strlen(const char *text) {
    size_t len = 0;
    while (text[len] != '\0') {
        len++;
    }
    return len;
}

/* Logs a NUL-terminated string as one console line. */
static inline int32_t atoll_log_str(const char *text) {
    return atoll_log(text, atoll_strlen(text));
}

/* The handle of the endpoint called `name` (NUL-terminated), or an error. */
static inline int32_t atoll_lookup_str(const char *name) {
    return atoll_lookup(name, atoll_strlen(name));
}

/* True when a host function's result is one of the error codes. */
static inline bool atoll_is_error(int32_t result) {
    return result < 0;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATOLL_H */
