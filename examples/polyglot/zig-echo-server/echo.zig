//! zig-echo-server: serves the echo protocol (wasm-services/protocols, `echo`)
//! on the `echo-zig` endpoint, written in Zig against sdk/zig/atoll.zig.
//!
//! Request:  0 = Echo(String), 1 = Ping(u64).
//! Response: 0 = Echo(String), 1 = Pong(u64).
//! A request that does not decode is answered Echo("error: malformed request"),
//! so a caller never waits for ever.

const atoll = @import("atoll");
const postcard = atoll.postcard;

const endpoint = "echo-zig";
const malformed = "error: malformed request";

// Message buffers live in static memory: nothing is allocated.
var request_buf: [atoll.max_message_len]u8 = undefined;
var response_buf: [atoll.max_message_len]u8 = undefined;

export fn _start() void {
    atoll.log("zig-echo-server: serving " ++ endpoint) catch {};
    const handle = atoll.lookup(endpoint) catch {
        atoll.log("no `" ++ endpoint ++ "` endpoint to serve") catch {};
        return;
    };
    while (true) {
        // With no timeout, receive fails only on a lasting fault (a bad
        // handle): stop rather than spin.
        const message = atoll.receive(handle, &request_buf, atoll.forever) catch {
            atoll.log("receive failed") catch {};
            return;
        };
        // A message from `send` expects no reply.
        if (message.token == 0) continue;
        const response = respond(message.bytes) catch encodeMalformed();
        atoll.reply(message.token, response) catch |err| switch (err) {
            // The caller's buffer is too small: answer empty rather than
            // leave it waiting.
            error.BufferTooSmall => atoll.reply(message.token, "") catch {},
            else => {},
        };
    }
}

/// Decodes one request and encodes its response into `response_buf`.
fn respond(request: []const u8) !([]const u8) {
    var reader = postcard.Reader{ .bytes = request };
    var writer = postcard.Writer{ .buf = &response_buf };
    switch (try reader.varint()) {
        0 => {
            const text = try reader.string();
            try reader.finish();
            try writer.varint(0);
            try writer.string(text);
        },
        1 => {
            const number = try reader.varint();
            try reader.finish();
            try writer.varint(1);
            try writer.varint(number);
        },
        else => return error.Malformed,
    }
    return writer.written();
}

/// Response::Echo("error: malformed request").
fn encodeMalformed() []const u8 {
    var writer = postcard.Writer{ .buf = &response_buf };
    // Cannot fail: the buffer is far longer than this message.
    writer.varint(0) catch {};
    writer.string(malformed) catch {};
    return writer.written();
}
