// atoll.ts: AssemblyScript bindings for the Atoll kernel ABI (docs/abi.md).
//
// The `@external` declarations are every host function of import module
// `atoll` with its exact Wasm signature (usize, i32 and u32 are i32 on wasm32);
// `ErrorCode` holds the fixed error codes; the rest are thin helpers (log a
// string, look up an endpoint, receive into an inbox) and the little of
// postcard that protocols need (varints and strings), working on raw linear
// memory so that a server allocates nothing per message (with `--runtime stub`
// nothing is ever freed). `sdk/abi/tests/zig_as_bindings.rs` checks the
// declarations, codes and limits against the `atoll-abi` crate, so keep one
// declaration per line.
//
// Host functions return a non-negative value on success and a negative
// `ErrorCode` on failure; so do the helpers that wrap them.

// --- Host functions ------------------------------------------------------------

@external("atoll", "log") export declare function log(ptr: usize, len: i32): i32;
@external("atoll", "lookup") export declare function lookup(namePtr: usize, nameLen: i32): i32;
@external("atoll", "send") export declare function send(handle: i32, ptr: usize, len: i32): i32;
@external("atoll", "call") export declare function call(handle: i32, ptr: usize, len: i32, replyPtr: usize, replyCap: i32): i32;
@external("atoll", "receive") export declare function receive(handle: i32, ptr: usize, cap: i32, timeoutNs: i64, infoPtr: usize): i32;
@external("atoll", "reply") export declare function reply(token: u32, ptr: usize, len: i32): i32;
@external("atoll", "reply_receive") export declare function reply_receive(token: u32, replyPtr: usize, replyLen: i32, statusPtr: usize, handle: i32, ptr: usize, cap: i32, timeoutNs: i64, infoPtr: usize): i32;
@external("atoll", "sleep") export declare function sleep(ns: i64): i32;
@external("atoll", "time") export declare function time(): i64;
@external("atoll", "control") export declare function control(op: i32, namePtr: usize, nameLen: i32): i32;
@external("atoll", "swap") export declare function swap(namePtr: usize, nameLen: i32, modulePtr: usize, moduleLen: i32): i32;
// Drivers only: each needs a grant in system.toml (docs/abi.md).
@external("atoll", "port_in") export declare function port_in(port: i32, width: i32): i64;
@external("atoll", "port_out") export declare function port_out(port: i32, width: i32, value: u32): i32;
@external("atoll", "irq_ack") export declare function irq_ack(irq: i32): i32;
@external("atoll", "dma_alloc") export declare function dma_alloc(len: i32): i32;
@external("atoll", "dma_address") export declare function dma_address(handle: i32): i64;
@external("atoll", "dma_read") export declare function dma_read(handle: i32, offset: i32, ptr: usize, len: i32): i32;
@external("atoll", "dma_write") export declare function dma_write(handle: i32, offset: i32, ptr: usize, len: i32): i32;
@external("atoll", "dma_free") export declare function dma_free(handle: i32): i32;
@external("atoll", "pci_read") export declare function pci_read(address: i32, offset: i32): i64;
@external("atoll", "pci_write") export declare function pci_write(address: i32, offset: i32, value: u32): i32;
// A postcard record about the system (kind 0) or service `index` (kind 1).
@external("atoll", "info") export declare function info(kind: i32, index: i32, ptr: usize, cap: i32): i32;
// The service's postcard start-up record (args, env, WASI preopens, ...).
@external("atoll", "startup") export declare function startup(ptr: usize, cap: i32): i32;

// --- Error codes and limits ----------------------------------------------------

/** The negative codes host functions return. Numbers never change. */
export enum ErrorCode {
  InvalidArgument = -1,
  OutOfBounds = -2,
  TooLarge = -3,
  InvalidUtf8 = -4,
  NoMemory = -5,
  BadHandle = -6,
  NotFound = -7,
  QueueFull = -8,
  WouldBlock = -9,
  TimedOut = -10,
  PeerGone = -11,
  BufferTooSmall = -12,
  NotPermitted = -13,
  InvalidModule = -14,
  OutOfMemory = -15,
}

/** The longest text `log` prints, in bytes. */
export const MAX_LOG_LEN: i32 = 1024;
/** The longest message `send`, `call` and `reply` carry, in bytes. */
export const MAX_MESSAGE_LEN: i32 = 4096;
/** The size of the record `receive` writes at `infoPtr`: little-endian u32s,
 * the reply token (0 for a message from `send`) and the sender's id. */
export const RECEIVE_INFO_LEN: i32 = 8;
/** Where the reply token lies in that record. */
export const RECEIVE_INFO_TOKEN_OFFSET: i32 = 0;
/** Where the sender's id lies in that record. */
export const RECEIVE_INFO_SENDER_OFFSET: i32 = 4;
/** The largest module `swap` takes, in bytes. */
export const MAX_MODULE_LEN: i32 = 16777216;

/** Hot-swap state handoff: the exports the kernel looks for (docs/abi.md,
 * "Hot swap"): `() -> i64`, `(len: i32) -> i32`, `(ptr: i32, len: i32) -> ()`. */
// @lazy: compiled only where read, so a service that never reads them
// carries no copy. An AssemblyScript service exports the functions by
// these names from its entry file.
@lazy
export const STATE_SAVE_EXPORT: string = "atoll_state_save";
@lazy
export const STATE_ALLOC_EXPORT: string = "atoll_state_alloc";
@lazy
export const STATE_RESTORE_EXPORT: string = "atoll_state_restore";
/** The most state a swap carries, in bytes. */
export const MAX_STATE_LEN: i32 = 1048576;

/** A server's handler export (docs/abi.md, "Handlers"):
 * `(received: i32, reply_cap: i32) -> i64`, returning its answer's `(ptr << 32) | len`,
 * `HANDLER_DEFERRED` or `HANDLER_DECLINED`. */
@lazy
export const HANDLER_EXPORT: string = "atoll_handle";
export const HANDLER_DEFERRED: i64 = -2;
export const HANDLER_DECLINED: i64 = -1;

/** A service's state in its `info` record (the byte after its name).
 * Numbers never change. */
export enum ServiceState {
  Ready = 0,
  Running = 1,
  Receiving = 2,
  Calling = 3,
  Sleeping = 4,
  Exited = 5,
  Faulted = 6,
  Stopped = 7,
}

/** `receive` timeouts, in nanoseconds: wait for ever, or not at all. */
export const FOREVER: i64 = -1;
export const NO_WAIT: i64 = 0;

// --- Helpers -------------------------------------------------------------------

// UTF-8 text for `log` and `lookup` is encoded here, not on the heap.
const scratch: usize = memory.data(MAX_LOG_LEN);

/** Encodes `text` as UTF-8 into `scratch`; its length, or `TooLarge`. */
function encode(text: string): i32 {
  if (String.UTF8.byteLength(text) > MAX_LOG_LEN) return ErrorCode.TooLarge;
  return <i32>String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, scratch, false, String.UTF8.ErrorMode.REPLACE);
}

/** Writes `text` as one console line. 0, or a negative `ErrorCode`. */
export function logText(text: string): i32 {
  const len = encode(text);
  return len < 0 ? len : log(scratch, len);
}

/** The handle (> 0) of the endpoint called `name` that this service provides
 * or uses, or a negative `ErrorCode`. */
export function lookupName(name: string): i32 {
  const len = encode(name);
  return len < 0 ? len : lookup(scratch, len);
}

/** A receive buffer of `MAX_MESSAGE_LEN` bytes on one endpoint, and the record
 * of the last message taken into it. Allocated once, reused for every message. */
export class Inbox {
  /** The message bytes (the first `length` of them). */
  readonly buffer: usize = heap.alloc(MAX_MESSAGE_LEN + RECEIVE_INFO_LEN);
  /** The last message's length. */
  length: i32 = 0;
  /** The last message's reply token; 0 if it came from `send` (no reply due). */
  token: u32 = 0;
  /** The last message's sender id. */
  sender: u32 = 0;

  constructor(readonly handle: i32) {}

  /** Takes the oldest message, waiting at most `timeoutNs`. Its length, or a
   * negative `ErrorCode`. */
  receive(timeoutNs: i64 = FOREVER): i32 {
    const info = this.buffer + MAX_MESSAGE_LEN;
    const len = receive(this.handle, this.buffer, MAX_MESSAGE_LEN, timeoutNs, info);
    if (len < 0) return len;
    this.length = len;
    this.token = load<u32>(info + RECEIVE_INFO_TOKEN_OFFSET);
    this.sender = load<u32>(info + RECEIVE_INFO_SENDER_OFFSET);
    return len;
  }
}

// --- Postcard (docs/abi.md, "Typed messages") ------------------------------------

/** Decodes postcard values from `length` bytes at `ptr`. A failed read sets
 * `failed` and returns 0; check `finish()` once at the end. */
export class Reader {
  ptr: usize = 0;
  end: usize = 0;
  failed: bool = false;
  /** Where the last `string()` read starts. */
  textPtr: usize = 0;

  /** Starts reading the `length` bytes at `ptr`. */
  reset(ptr: usize, length: i32): void {
    this.ptr = ptr;
    this.end = ptr + <usize>length;
    this.failed = false;
  }

  /** An unsigned varint of at most 64 bits (10 bytes). */
  varint(): u64 {
    let value: u64 = 0;
    for (let i: u64 = 0; i < 10; i++) {
      if (this.ptr >= this.end) break;
      const byte = <u64>load<u8>(this.ptr++);
      // The tenth byte holds only bit 63.
      if (i == 9 && byte > 1) break;
      value |= (byte & 0x7f) << (7 * i);
      if ((byte & 0x80) == 0) return value;
    }
    this.failed = true;
    return 0;
  }

  /** A string: its varint length, then that many bytes of UTF-8. Returns the
   * length; the bytes start at `textPtr`. */
  string(): i32 {
    const len = this.varint();
    if (this.failed || len > <u64>(this.end - this.ptr) || !validUtf8(this.ptr, <usize>len)) {
      this.failed = true;
      return 0;
    }
    this.textPtr = this.ptr;
    this.ptr += <usize>len;
    return <i32>len;
  }

  /** True if every read succeeded and every byte was read (one message is one value). */
  finish(): bool {
    return !this.failed && this.ptr == this.end;
  }
}

/** Encodes postcard values into `capacity` bytes at `ptr`. A write that does
 * not fit sets `failed`. */
export class Writer {
  ptr: usize = 0;
  length: i32 = 0;
  capacity: i32 = 0;
  failed: bool = false;

  /** Starts writing at `ptr`, at most `capacity` bytes. */
  reset(ptr: usize, capacity: i32): void {
    this.ptr = ptr;
    this.capacity = capacity;
    this.length = 0;
    this.failed = false;
  }

  varint(value: u64): void {
    do {
      const low = <u8>(value & 0x7f);
      value >>= 7;
      this.byte(value == 0 ? low : low | 0x80);
    } while (value != 0);
  }

  /** A string of `length` UTF-8 bytes at `text`. */
  string(text: usize, length: i32): void {
    this.varint(<u64>length);
    if (this.failed || length > this.capacity - this.length) {
      this.failed = true;
      return;
    }
    memory.copy(this.ptr + <usize>this.length, text, <usize>length);
    this.length += length;
  }

  private byte(value: u8): void {
    if (this.length >= this.capacity) {
      this.failed = true;
      return;
    }
    store<u8>(this.ptr + <usize>this.length, value);
    this.length++;
  }
}

/** Whether the `length` bytes at `ptr` are well-formed UTF-8 (no overlong
 * forms, surrogates or code points past U+10FFFF), as Rust's `str` requires. */
export function validUtf8(ptr: usize, length: usize): bool {
  const end = ptr + length;
  while (ptr < end) {
    const lead = <u32>load<u8>(ptr++);
    if (lead < 0x80) continue;
    let more: i32, point: u32, min: u32;
    if (lead < 0xc2) return false;
    else if (lead < 0xe0) { more = 1; point = lead & 0x1f; min = 0x80; }
    else if (lead < 0xf0) { more = 2; point = lead & 0x0f; min = 0x800; }
    else if (lead < 0xf5) { more = 3; point = lead & 0x07; min = 0x10000; }
    else return false;
    for (; more > 0; more--) {
      if (ptr >= end) return false;
      const next = <u32>load<u8>(ptr++);
      if ((next & 0xc0) != 0x80) return false;
      point = (point << 6) | (next & 0x3f);
    }
    if (point < min || (point >= 0xd800 && point <= 0xdfff) || point > 0x10ffff) return false;
  }
  return true;
}
