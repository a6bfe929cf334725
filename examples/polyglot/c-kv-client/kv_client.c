/*
 * c-kv-client: a C client of the Rust kv-server (wasm-services/protocols,
 * `kv`) on the `kv` endpoint, written against sdk/c.
 *
 * Request:  0 = Get { key }, 1 = Put { key, value: i64 }, 2 = Add { key,
 *           delta: i64 }, 3 = Remove { key }, 4 = Len.
 * Response: 0 = Value(Option<i64>), 1 = Len(u32), 2 = Error(KeyTooLong | Full).
 *
 * Makes four calls, checks each answer, logs
 * `c-kv-client: all replies correct` or `c-kv-client: FAILED: <what>`, and
 * returns from _start.
 */
#include "atoll.h"
#include "atoll_postcard.h"

/* kv::Request and kv::Response variant indexes. */
enum { KV_GET = 0, KV_PUT = 1, KV_ADD = 2 };
enum { KV_VALUE = 0 };

/* What a step expects back: any Value (Put answers the previous value),
 * Value(None), or Value(Some(value)). */
enum expect { ANY_VALUE, NONE, SOME };

struct step {
    const char *what; /* the step, as the failure line names it */
    uint32_t op;      /* KV_GET, KV_PUT or KV_ADD */
    const char *key;
    int64_t arg; /* Put's value or Add's delta */
    enum expect expect;
    int64_t value; /* for SOME */
};

static const struct step steps[] = {
    {"Put(\"c-key\", -42)", KV_PUT, "c-key", -42, ANY_VALUE, 0},
    {"Get(\"c-key\") = Value(Some(-42))", KV_GET, "c-key", 0, SOME, -42},
    {"Add(\"c-key\", 50) = Value(Some(8))", KV_ADD, "c-key", 50, SOME, 8},
    {"Get(\"absent\") = Value(None)", KV_GET, "absent", 0, NONE, 0},
};

static uint8_t request[256];
static uint8_t reply[256];

/* Logs `c-kv-client: FAILED: <what>: <why>` as one line. */
static void fail(const char *what, const char *why) {
    static char line[ATOLL_MAX_LOG_LEN];
    const char *parts[] = {"c-kv-client: FAILED: ", what, ": ", why};
    size_t len = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        for (const char *c = parts[i]; *c != '\0' && len < sizeof line; c++) {
            line[len++] = *c;
        }
    }
    atoll_log(line, len);
}

/* Makes one call and checks its answer; logs and returns false if wrong. */
static bool run(int32_t handle, const struct step *step) {
    atoll_pc_writer out;
    atoll_pc_writer_init(&out, request, sizeof request);
    atoll_pc_write_variant(&out, step->op);
    atoll_pc_write_str(&out, step->key);
    if (step->op == KV_PUT || step->op == KV_ADD) {
        atoll_pc_write_i64(&out, step->arg);
    }
    if (out.error) {
        fail(step->what, "request does not fit");
        return false;
    }

    int32_t len = atoll_call(handle, request, out.len, reply, sizeof reply);
    if (atoll_is_error(len)) {
        fail(step->what, atoll_error_description(len));
        return false;
    }

    atoll_pc_reader in;
    atoll_pc_reader_init(&in, reply, (size_t)len);
    if (atoll_pc_read_variant(&in) != KV_VALUE) {
        fail(step->what, in.error ? "malformed reply" : "answered Len or Error");
        return false;
    }
    bool some = atoll_pc_read_option(&in);
    int64_t value = some ? atoll_pc_read_i64(&in) : 0;
    if (!atoll_pc_reader_done(&in)) {
        fail(step->what, "malformed reply");
        return false;
    }
    bool right = step->expect == ANY_VALUE ||
                 (step->expect == NONE && !some) ||
                 (step->expect == SOME && some && value == step->value);
    if (!right) {
        fail(step->what, "wrong value");
    }
    return right;
}

void _start(void) {
    int32_t handle = atoll_lookup_str("kv");
    if (atoll_is_error(handle)) {
        fail("lookup(\"kv\")", atoll_error_description(handle));
        return;
    }
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (!run(handle, &steps[i])) {
            return;
        }
    }
    atoll_log_str("c-kv-client: all replies correct");
}
