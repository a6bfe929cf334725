//! atoll.zig: Zig bindings for the Atoll kernel ABI (docs/abi.md).
//!
//! `raw` declares every host function of import module `atoll` with its exact
//! Wasm signature; `Error` holds the fixed error codes; the rest are thin
//! helpers (log a slice, look up an endpoint, receive, reply, call) and the
//! little of postcard that protocols need (varints and strings).
//! `sdk/abi/tests/zig_as_bindings.rs` checks the declarations, codes and
//! limits against the `atoll-abi` crate, so keep one declaration per line.
//!
//! Build a service for wasm32-freestanding; see sdk/zig/README.md.

const std = @import("std");

// --- Host functions ------------------------------------------------------------

/// The host functions, as the kernel exports them. On wasm32 a pointer and a
/// `usize` are i32, so each line is the ABI's signature exactly.
pub const raw = struct {
    pub extern "atoll" fn log(ptr: [*]const u8, len: usize) i32;
    pub extern "atoll" fn lookup(name_ptr: [*]const u8, name_len: usize) i32;
    pub extern "atoll" fn send(handle: i32, ptr: [*]const u8, len: usize) i32;
    pub extern "atoll" fn call(handle: i32, ptr: [*]const u8, len: usize, reply_ptr: [*]u8, reply_cap: usize) i32;
    pub extern "atoll" fn receive(handle: i32, ptr: [*]u8, cap: usize, timeout_ns: i64, info_ptr: [*]u8) i32;
    pub extern "atoll" fn reply(token: u32, ptr: [*]const u8, len: usize) i32;
    pub extern "atoll" fn reply_receive(token: u32, reply_ptr: [*]const u8, reply_len: usize, status_ptr: *i32, handle: i32, ptr: [*]u8, cap: usize, timeout_ns: i64, info_ptr: [*]u8) i32;
    pub extern "atoll" fn sleep(ns: i64) i32;
    pub extern "atoll" fn time() i64;
    pub extern "atoll" fn control(op: i32, name_ptr: [*]const u8, name_len: usize) i32;
    pub extern "atoll" fn swap(name_ptr: [*]const u8, name_len: usize, module_ptr: [*]const u8, module_len: usize) i32;
    // Drivers only: each needs a grant in system.toml (docs/abi.md).
    pub extern "atoll" fn port_in(port: i32, width: i32) i64;
    pub extern "atoll" fn port_out(port: i32, width: i32, value: u32) i32;
    pub extern "atoll" fn irq_ack(irq: i32) i32;
    pub extern "atoll" fn dma_alloc(len: usize) i32;
    pub extern "atoll" fn dma_address(handle: i32) i64;
    pub extern "atoll" fn dma_read(handle: i32, offset: usize, ptr: [*]u8, len: usize) i32;
    pub extern "atoll" fn dma_write(handle: i32, offset: usize, ptr: [*]const u8, len: usize) i32;
    pub extern "atoll" fn dma_free(handle: i32) i32;
    pub extern "atoll" fn pci_read(address: i32, offset: i32) i64;
    pub extern "atoll" fn pci_write(address: i32, offset: i32, value: u32) i32;
    // A postcard record about the system (kind 0) or service `index` (kind 1).
    pub extern "atoll" fn info(kind: i32, index: i32, ptr: [*]u8, cap: usize) i32;
    // The service's postcard start-up record (args, env, WASI preopens, ...).
    pub extern "atoll" fn startup(ptr: [*]u8, cap: usize) i32;
};

// --- Error codes and limits ----------------------------------------------------

/// The negative codes host functions return. Numbers never change.
pub const Error = enum(i32) {
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
};

/// The same codes as a Zig error set (`error.NotFound`, ...), built from
/// `Error` so the two cannot differ, plus `Unknown` for a code newer than
/// these bindings.
pub const Failure = blk: {
    const fields = @typeInfo(Error).@"enum".fields;
    var errors: [fields.len + 1]std.builtin.Type.Error = undefined;
    for (fields, 0..) |field, i| errors[i] = .{ .name = field.name };
    errors[fields.len] = .{ .name = "Unknown" };
    const final = errors;
    break :blk @Type(.{ .error_set = &final });
};

/// A host function's result: the value when non-negative, else its error.
pub fn check(code: i32) Failure!u32 {
    if (code >= 0) return @intCast(code);
    inline for (@typeInfo(Error).@"enum".fields) |field| {
        if (code == field.value) return @field(Failure, field.name);
    }
    return error.Unknown;
}

/// The longest text `log` prints, in bytes.
pub const max_log_len: usize = 1024;
/// The longest message `send`, `call` and `reply` carry, in bytes.
pub const max_message_len: usize = 4096;
/// The size of the record `receive` writes at `info_ptr`: little-endian u32s,
/// the reply token (0 for a message from `send`) and the sender's id.
pub const receive_info_len: usize = 8;
/// Where the reply token lies in that record.
pub const receive_info_token_offset: usize = 0;
/// Where the sender's id lies in that record.
pub const receive_info_sender_offset: usize = 4;
/// The largest module `swap` takes, in bytes.
pub const max_module_len: usize = 16777216;

/// Hot-swap state handoff: the exports the kernel looks for (docs/abi.md,
/// "Hot swap"): `() -> i64`, `(len: i32) -> i32`, `(ptr: i32, len: i32) -> ()`.
pub const state_save_export = "atoll_state_save";
pub const state_alloc_export = "atoll_state_alloc";
pub const state_restore_export = "atoll_state_restore";
/// The most state a swap carries, in bytes.
pub const max_state_len: usize = 1048576;

/// A server's handler export (docs/abi.md, "Handlers"):
/// `(received: i32, reply_cap: i32) -> i64`, returning its answer's `(ptr << 32) | len`,
/// `handler_deferred` or `handler_declined`.
pub const handler_export = "atoll_handle";
pub const handler_deferred: i64 = -2;
pub const handler_declined: i64 = -1;

/// A service's state in its `info` record (the byte after its name).
/// Numbers never change.
pub const ServiceState = enum(u8) {
    Ready = 0,
    Running = 1,
    Receiving = 2,
    Calling = 3,
    Sleeping = 4,
    Exited = 5,
    Faulted = 6,
    Stopped = 7,
};

/// `receive` timeouts, in nanoseconds: wait for ever, or not at all.
pub const forever: i64 = -1;
pub const no_wait: i64 = 0;

// --- Helpers -------------------------------------------------------------------

/// Writes `text` (UTF-8, at most `max_log_len` bytes) as one console line.
pub fn log(text: []const u8) Failure!void {
    _ = try check(raw.log(text.ptr, text.len));
}

/// The handle of the endpoint called `name` that this service provides or uses.
pub fn lookup(name: []const u8) Failure!i32 {
    return @intCast(try check(raw.lookup(name.ptr, name.len)));
}

/// Queues `message` on `handle`'s endpoint; never blocks.
pub fn send(handle: i32, message: []const u8) Failure!void {
    _ = try check(raw.send(handle, message.ptr, message.len));
}

/// Sends `message` and waits for the reply, which is written into `reply_buf`;
/// returns the reply's part of it.
pub fn call(handle: i32, message: []const u8, reply_buf: []u8) Failure![]u8 {
    const len = try check(raw.call(handle, message.ptr, message.len, reply_buf.ptr, reply_buf.len));
    return reply_buf[0..len];
}

/// One message taken by `receive`.
pub const Message = struct {
    /// The message, inside the buffer given to `receive`.
    bytes: []u8,
    /// The reply token, or 0 if the message came from `send` (no reply due).
    token: u32,
    /// The sending service's id.
    sender: u32,
};

/// Takes the oldest message of an endpoint this service provides into `buf`,
/// waiting at most `timeout_ns` (`forever`, `no_wait` or a duration).
pub fn receive(handle: i32, buf: []u8, timeout_ns: i64) Failure!Message {
    var info: [receive_info_len]u8 = undefined;
    const len = try check(raw.receive(handle, buf.ptr, buf.len, timeout_ns, &info));
    return .{
        .bytes = buf[0..len],
        .token = std.mem.readInt(u32, info[receive_info_token_offset..][0..4], .little),
        .sender = std.mem.readInt(u32, info[receive_info_sender_offset..][0..4], .little),
    };
}

/// Answers the call that `receive` handed out `token` for.
pub fn reply(token: u32, message: []const u8) Failure!void {
    _ = try check(raw.reply(token, message.ptr, message.len));
}

/// Blocks for at least `ns` nanoseconds; `sleep(0)` yields.
pub fn sleep(ns: i64) void {
    _ = raw.sleep(ns);
}

/// Nanoseconds since boot.
pub fn time() i64 {
    return raw.time();
}

// --- Postcard (docs/abi.md, "Typed messages") ------------------------------------

/// The parts of postcard that protocols use: unsigned LEB128 varints, strings
/// (varint length, then UTF-8) and enums (varint variant index, then fields).
pub const postcard = struct {
    pub const DecodeError = error{Malformed};
    pub const EncodeError = error{NoSpace};

    /// Decodes values from the front of `bytes`.
    pub const Reader = struct {
        bytes: []const u8,
        pos: usize = 0,

        /// An unsigned varint of at most 64 bits (10 bytes).
        pub fn varint(self: *Reader) DecodeError!u64 {
            var value: u64 = 0;
            var i: u6 = 0;
            while (i < 10) : (i += 1) {
                if (self.pos >= self.bytes.len) return error.Malformed;
                const byte = self.bytes[self.pos];
                self.pos += 1;
                // The tenth byte holds only bit 63.
                if (i == 9 and byte > 1) return error.Malformed;
                value |= @as(u64, byte & 0x7f) << (7 * i);
                if (byte & 0x80 == 0) return value;
            }
            return error.Malformed;
        }

        /// A string: its varint length, then that many bytes of UTF-8.
        pub fn string(self: *Reader) DecodeError![]const u8 {
            const len = try self.varint();
            if (len > self.bytes.len - self.pos) return error.Malformed;
            const text = self.bytes[self.pos..][0..@intCast(len)];
            if (!std.unicode.utf8ValidateSlice(text)) return error.Malformed;
            self.pos += text.len;
            return text;
        }

        /// Fails unless every byte has been read (one message is one value).
        pub fn finish(self: *const Reader) DecodeError!void {
            if (self.pos != self.bytes.len) return error.Malformed;
        }
    };

    /// Encodes values into `buf`.
    pub const Writer = struct {
        buf: []u8,
        len: usize = 0,

        pub fn varint(self: *Writer, value: u64) EncodeError!void {
            var rest = value;
            while (true) {
                if (self.len >= self.buf.len) return error.NoSpace;
                const low: u8 = @truncate(rest & 0x7f);
                rest >>= 7;
                self.buf[self.len] = if (rest == 0) low else low | 0x80;
                self.len += 1;
                if (rest == 0) return;
            }
        }

        pub fn string(self: *Writer, text: []const u8) EncodeError!void {
            try self.varint(text.len);
            if (text.len > self.buf.len - self.len) return error.NoSpace;
            @memcpy(self.buf[self.len..][0..text.len], text);
            self.len += text.len;
        }

        /// The bytes written so far.
        pub fn written(self: *const Writer) []const u8 {
            return self.buf[0..self.len];
        }
    };
};
