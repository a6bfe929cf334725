// as-echo-server: serves the echo protocol (wasm-services/protocols, `echo`)
// on the `echo-as` endpoint, written in AssemblyScript against
// sdk/assemblyscript/atoll.ts.
//
// Request:  0 = Echo(String), 1 = Ping(u64).
// Response: 0 = Echo(String), 1 = Pong(u64).
// A request that does not decode is answered Echo("error: malformed request"),
// so a caller never waits for ever.

import {
  ErrorCode, FOREVER, Inbox, MAX_MESSAGE_LEN, Reader, Writer, logText, lookupName, reply,
} from "../../../sdk/assemblyscript/atoll";

const ENDPOINT = "echo-as";

// The malformed-request answer, as UTF-8 bytes in static memory.
const MALFORMED = memory.data<u8>([
  0x65, 0x72, 0x72, 0x6f, 0x72, 0x3a, 0x20, 0x6d, 0x61, 0x6c, 0x66, 0x6f, // "error: malfo"
  0x72, 0x6d, 0x65, 0x64, 0x20, 0x72, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, // "rmed request"
]);
const MALFORMED_LEN: i32 = 24;

export function _start(): void {
  logText("as-echo-server: serving " + ENDPOINT);
  const handle = lookupName(ENDPOINT);
  if (handle < 0) {
    logText("no `" + ENDPOINT + "` endpoint to serve");
    return;
  }
  // Allocated once: the loop below allocates nothing.
  const inbox = new Inbox(handle);
  const reader = new Reader();
  const writer = new Writer();
  const response = heap.alloc(MAX_MESSAGE_LEN);
  while (true) {
    // With no timeout, receive fails only on a lasting fault (a bad handle):
    // stop rather than spin.
    if (inbox.receive(FOREVER) < 0) {
      logText("receive failed");
      return;
    }
    // A message from `send` expects no reply.
    if (inbox.token == 0) continue;
    reader.reset(inbox.buffer, inbox.length);
    writer.reset(response, MAX_MESSAGE_LEN);
    respond(reader, writer);
    if (!reader.finish() || writer.failed) {
      writer.reset(response, MAX_MESSAGE_LEN);
      writer.varint(0);
      writer.string(MALFORMED, MALFORMED_LEN);
    }
    // The caller's buffer is too small: answer empty rather than leave it waiting.
    if (reply(inbox.token, response, writer.length) == ErrorCode.BufferTooSmall) {
      reply(inbox.token, response, 0);
    }
  }
}

/** Decodes one request from `reader` and encodes its response into `writer`;
 * the caller checks `reader.finish()`. */
function respond(reader: Reader, writer: Writer): void {
  const variant = reader.varint();
  if (variant == 0) {
    const len = reader.string();
    writer.varint(0);
    writer.string(reader.textPtr, len);
  } else if (variant == 1) {
    const number = reader.varint();
    writer.varint(1);
    writer.varint(number);
  } else {
    reader.failed = true;
  }
}
