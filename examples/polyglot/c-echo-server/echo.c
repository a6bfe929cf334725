/*
 * c-echo-server: serves the echo protocol (wasm-services/protocols, `echo`)
 * on the `echo-c` endpoint, written in C against sdk/c.
 *
 * Request:  0 = Echo(String), 1 = Ping(u64).
 * Response: 0 = Echo(String), 1 = Pong(u64).
 * A request that does not decode is logged and answered
 * Echo("error: malformed request"), so a caller never waits for ever.
 */
#include "atoll.h"
#include "atoll_postcard.h"

#define ENDPOINT "echo-c"
#define MALFORMED "error: malformed request"

/* Message buffers live in static memory: nothing is allocated. */
static uint8_t request[ATOLL_MAX_MESSAGE_LEN];
static uint8_t response[ATOLL_MAX_MESSAGE_LEN];

/* Logs `text` followed by a decimal number, as one line. */
static void log_number(const char *text, uint32_t number) {
    char line[128];
    size_t len = 0;
    while (*text != '\0' && len < sizeof line - 10) {
        line[len++] = *text++;
    }
    char digits[10];
    size_t count = 0;
    do {
        digits[count++] = (char)('0' + number % 10);
        number /= 10;
    } while (number != 0);
    while (count > 0) {
        line[len++] = digits[--count];
    }
    atoll_log(line, len);
}

/* Decodes one request and encodes its response into `out`; false if the
 * request does not decode (wrong variant, truncated, trailing bytes, text
 * that is not UTF-8). */
static bool respond(const uint8_t *message, size_t len, atoll_pc_writer *out) {
    atoll_pc_reader in;
    atoll_pc_reader_init(&in, message, len);
    switch (atoll_pc_read_variant(&in)) {
    case 0: { /* Echo(String) -> Echo(String) */
        const char *text;
        size_t text_len;
        if (!atoll_pc_read_str(&in, &text, &text_len) || !atoll_pc_reader_done(&in)) {
            return false;
        }
        atoll_pc_write_variant(out, 0);
        atoll_pc_write_bytes(out, text, text_len);
        break;
    }
    case 1: { /* Ping(u64) -> Pong(u64) */
        uint64_t number = atoll_pc_read_u64(&in);
        if (!atoll_pc_reader_done(&in)) {
            return false;
        }
        atoll_pc_write_variant(out, 1);
        atoll_pc_write_u64(out, number);
        break;
    }
    default: /* also an empty or truncated message (the reader's error) */
        return false;
    }
    return !out->error;
}

void _start(void) {
    atoll_log_str("c-echo-server: serving " ENDPOINT);
    int32_t handle = atoll_lookup_str(ENDPOINT);
    if (atoll_is_error(handle)) {
        atoll_log_str("c-echo-server: no `" ENDPOINT "` endpoint to serve");
        return;
    }
    for (;;) {
        struct atoll_receive_info info;
        int32_t len = atoll_receive(handle, request, sizeof request, ATOLL_FOREVER, &info);
        if (atoll_is_error(len)) {
            /* With no timeout, receive fails only on a lasting fault (a bad
             * handle): stop rather than spin. */
            atoll_log_str("c-echo-server: receive failed");
            return;
        }
        /* A message from `send` expects no reply. */
        if (info.token == 0) {
            continue;
        }
        atoll_pc_writer out;
        atoll_pc_writer_init(&out, response, sizeof response);
        if (!respond(request, (size_t)len, &out)) {
            log_number("c-echo-server: malformed request from service ", info.sender);
            atoll_pc_writer_init(&out, response, sizeof response);
            atoll_pc_write_variant(&out, 0);
            atoll_pc_write_str(&out, MALFORMED);
        }
        int32_t result = atoll_reply(info.token, response, out.len);
        if (result == ATOLL_ERR_BUFFER_TOO_SMALL) {
            /* The caller's buffer cannot hold the answer: answer empty (its
             * decoder fails) rather than leave it waiting. */
            atoll_reply(info.token, response, 0);
        }
    }
}
