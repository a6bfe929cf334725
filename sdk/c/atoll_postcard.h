/*
 * atoll_postcard.h: the postcard wire format for C and C++ services.
 *
 * Typed Atoll protocols (wasm-services/protocols) are serde types encoded
 * with postcard; docs/abi.md ("Typed messages") describes the parts they use,
 * and this header implements exactly those:
 *   u8, bool        one byte (bool: 0 or 1)
 *   u16..u64        unsigned LEB128 varint (at most 5 bytes for u32, 10 for u64)
 *   i16..i64        zigzag, then varint
 *   str, bytes      length as a varint, then the bytes (a str must be UTF-8)
 *   enum            variant index as a varint, then the variant's fields
 *   Option<T>       one byte, 0 (None) or 1 (Some) followed by the value
 * A struct is its fields in order, with nothing around them.
 *
 * A writer fills a caller-owned buffer; a reader walks a received message.
 * Both have a sticky `error` flag: once a write does not fit, or a read finds
 * the message truncated or malformed, every later call does nothing and
 * returns 0/false, so a sequence of calls needs one check at the end.
 *
 * Header-only and freestanding (no libc); C11 or C++.
 */
#ifndef ATOLL_POSTCARD_H
#define ATOLL_POSTCARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Copies `n` bytes: one `memory.copy` with -mbulk-memory, else a loop (which
 * -ffreestanding keeps the compiler from turning into a call to `memcpy`). */
static inline void atoll_pc_copy(uint8_t *dst, const uint8_t *src, size_t n) {
#if defined(__wasm_bulk_memory__)
    __builtin_memcpy(dst, src, n);
#else
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i];
    }
#endif
}

/* True when `bytes[0..len]` is UTF-8 as Rust's `str` requires it: no
 * overlong forms, no surrogates, nothing above U+10FFFF. */
static inline bool atoll_pc_utf8_valid(const uint8_t *bytes, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t lead = bytes[i];
        size_t more;
        uint32_t code, min;
        if (lead < 0x80) {
            i++;
            continue;
        } else if ((lead & 0xe0) == 0xc0) {
            more = 1, code = lead & 0x1f, min = 0x80;
        } else if ((lead & 0xf0) == 0xe0) {
            more = 2, code = lead & 0x0f, min = 0x800;
        } else if ((lead & 0xf8) == 0xf0) {
            more = 3, code = lead & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i - 1 < more) {
            return false;
        }
        for (size_t k = 1; k <= more; k++) {
            uint8_t next = bytes[i + k];
            if ((next & 0xc0) != 0x80) {
                return false;
            }
            code = (code << 6) | (next & 0x3f);
        }
        if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
            return false;
        }
        i += 1 + more;
    }
    return true;
}

/* --- Writing --------------------------------------------------------------- */

typedef struct atoll_pc_writer {
    uint8_t *buf; /* where the encoding goes */
    size_t cap;   /* bytes available at buf */
    size_t len;   /* bytes written so far */
    bool error;   /* a write did not fit; nothing more is written */
} atoll_pc_writer;

static inline void atoll_pc_writer_init(atoll_pc_writer *w, void *buf, size_t cap) {
    w->buf = (uint8_t *)buf;
    w->cap = cap;
    w->len = 0;
    w->error = false;
}

/* Appends `n` bytes as they are (no length prefix). */
static inline void atoll_pc_write_raw(atoll_pc_writer *w, const void *data, size_t n) {
    if (w->error || w->cap - w->len < n) {
        w->error = true;
        return;
    }
    atoll_pc_copy(w->buf + w->len, (const uint8_t *)data, n);
    w->len += n;
}

static inline void atoll_pc_write_u8(atoll_pc_writer *w, uint8_t value) {
    atoll_pc_write_raw(w, &value, 1);
}

static inline void atoll_pc_write_bool(atoll_pc_writer *w, bool value) {
    atoll_pc_write_u8(w, value ? 1 : 0);
}

/* An unsigned LEB128 varint: 7 bits a byte, low bits first, the top bit set
 * on every byte but the last. */
static inline void atoll_pc_write_u64(atoll_pc_writer *w, uint64_t value) {
    uint8_t bytes[10];
    size_t n = 0;
    do {
        uint8_t byte = (uint8_t)(value & 0x7f);
        value >>= 7;
        bytes[n++] = value != 0 ? (uint8_t)(byte | 0x80) : byte;
    } while (value != 0);
    atoll_pc_write_raw(w, bytes, n);
}

static inline void atoll_pc_write_u32(atoll_pc_writer *w, uint32_t value) {
    atoll_pc_write_u64(w, value);
}

/* Zigzag maps 0, -1, 1, -2, ... to 0, 1, 2, 3, ... */
static inline void atoll_pc_write_i64(atoll_pc_writer *w, int64_t value) {
    uint64_t bits = (uint64_t)value;
    atoll_pc_write_u64(w, (bits << 1) ^ (0 - (bits >> 63)));
}

static inline void atoll_pc_write_i32(atoll_pc_writer *w, int32_t value) {
    uint32_t bits = (uint32_t)value;
    atoll_pc_write_u32(w, (bits << 1) ^ (0 - (bits >> 31)));
}

/* A byte string (or a str already known to be UTF-8): length, then bytes. */
static inline void atoll_pc_write_bytes(atoll_pc_writer *w, const void *data, size_t n) {
    atoll_pc_write_u64(w, n);
    atoll_pc_write_raw(w, data, n);
}

/* A NUL-terminated string, without its NUL. */
static inline void atoll_pc_write_str(atoll_pc_writer *w, const char *text) {
    size_t n = 0;
    while (text[n] != '\0') {
        n++;
    }
    atoll_pc_write_bytes(w, text, n);
}

/* An enum's variant index; its fields follow. */
static inline void atoll_pc_write_variant(atoll_pc_writer *w, uint32_t index) {
    atoll_pc_write_u32(w, index);
}

/* An Option's tag; for Some, the value follows. */
static inline void atoll_pc_write_option(atoll_pc_writer *w, bool some) {
    atoll_pc_write_u8(w, some ? 1 : 0);
}

/* --- Reading --------------------------------------------------------------- */

typedef struct atoll_pc_reader {
    const uint8_t *buf; /* the message */
    size_t len;         /* its length */
    size_t pos;         /* bytes read so far */
    bool error;         /* truncated or malformed; nothing more is read */
} atoll_pc_reader;

static inline void atoll_pc_reader_init(atoll_pc_reader *r, const void *buf, size_t len) {
    r->buf = (const uint8_t *)buf;
    r->len = len;
    r->pos = 0;
    r->error = false;
}

/* True when everything read so far was well formed and the whole message was
 * read (postcard would ignore trailing bytes; a strict server should not). */
static inline bool atoll_pc_reader_done(const atoll_pc_reader *r) {
    return !r->error && r->pos == r->len;
}

static inline uint8_t atoll_pc_read_u8(atoll_pc_reader *r) {
    if (r->error || r->pos >= r->len) {
        r->error = true;
        return 0;
    }
    return r->buf[r->pos++];
}

/* One byte that must be 0 or 1. */
static inline bool atoll_pc_read_bool(atoll_pc_reader *r) {
    uint8_t byte = atoll_pc_read_u8(r);
    if (byte > 1) {
        r->error = true;
    }
    return byte == 1 && !r->error;
}

/* A varint of at most `max_bytes`, whose last byte is at most `last_max`
 * (so the value fits), as postcard checks them. */
static inline uint64_t atoll_pc_read_varint(atoll_pc_reader *r, unsigned max_bytes,
                                            uint8_t last_max) {
    uint64_t value = 0;
    for (unsigned i = 0; i < max_bytes; i++) {
        uint8_t byte = atoll_pc_read_u8(r);
        if (r->error) {
            return 0;
        }
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if ((byte & 0x80) == 0) {
            if (i == max_bytes - 1 && byte > last_max) {
                break;
            }
            return value;
        }
    }
    r->error = true; /* overlong, or too large for the type */
    return 0;
}

static inline uint64_t atoll_pc_read_u64(atoll_pc_reader *r) {
    return atoll_pc_read_varint(r, 10, 0x01);
}

static inline uint32_t atoll_pc_read_u32(atoll_pc_reader *r) {
    return (uint32_t)atoll_pc_read_varint(r, 5, 0x0f);
}

static inline int64_t atoll_pc_read_i64(atoll_pc_reader *r) {
    uint64_t bits = atoll_pc_read_u64(r);
    return (int64_t)((bits >> 1) ^ (0 - (bits & 1)));
}

static inline int32_t atoll_pc_read_i32(atoll_pc_reader *r) {
    uint32_t bits = atoll_pc_read_u32(r);
    return (int32_t)((bits >> 1) ^ (0 - (bits & 1)));
}

/* A byte string: points `*data` into the message (no copy) and sets `*n`.
 * Returns false (and sets nothing) on error. */
static inline bool atoll_pc_read_bytes(atoll_pc_reader *r, const uint8_t **data, size_t *n) {
    uint64_t len = atoll_pc_read_u64(r);
    if (r->error || len > r->len - r->pos) {
        r->error = true;
        return false;
    }
    *data = r->buf + r->pos;
    *n = (size_t)len;
    r->pos += (size_t)len;
    return true;
}

/* A str: as a byte string, and it must be UTF-8. The text is not
 * NUL-terminated. */
static inline bool atoll_pc_read_str(atoll_pc_reader *r, const char **text, size_t *n) {
    const uint8_t *bytes;
    size_t len;
    if (!atoll_pc_read_bytes(r, &bytes, &len) || !atoll_pc_utf8_valid(bytes, len)) {
        r->error = true;
        return false;
    }
    *text = (const char *)bytes;
    *n = len;
    return true;
}

/* An enum's variant index. */
static inline uint32_t atoll_pc_read_variant(atoll_pc_reader *r) {
    return atoll_pc_read_u32(r);
}

/* An Option's tag: true for Some (read the value next), false for None or on
 * error (a tag other than 0 or 1 is an error). */
static inline bool atoll_pc_read_option(atoll_pc_reader *r) {
    return atoll_pc_read_bool(r);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATOLL_POSTCARD_H */
