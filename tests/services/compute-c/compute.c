// compute-c: the compute kernels of test-compute (tests/services/compute),
// written in C, for `image-builder bench`. Same algorithms and the same
// generated data, so each checksum must equal the Rust service's: the bench
// checks that. Exports `bench_c_NAME() -> i64` for the plain-wasmi runner;
// `_start` times each (best of three) and prints `bench: compute_c_NAME_ns=`
// and `compute: c_NAME checksum 0x...`. No libc (sdk/c/README.md).
// Not here: the postcard kernel (a Rust serde format).
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atoll.h"

#define MIB (1024 * 1024)

static uint64_t xorshift(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

// Working memory: static, so the module needs no allocator.
static uint8_t data[MIB + 72];
static uint32_t values[100000];
static double matrix_a[128 * 128], matrix_b[128 * 128], matrix_c[128 * 128];
static char text[MIB + 16];

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t value, int bits) { return (value >> bits) | (value << (32 - bits)); }

int64_t bench_c_sha256(void) {
    uint64_t random = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < MIB; i++) data[i] = (uint8_t)xorshift(&random);
    // Padding: 0x80, zeros to 56 mod 64, the bit length big-endian.
    size_t len = MIB;
    data[len++] = 0x80;
    while (len % 64 != 56) data[len++] = 0;
    uint64_t bits = (uint64_t)MIB * 8;
    for (int i = 7; i >= 0; i--) data[len++] = (uint8_t)(bits >> (8 * i));
    uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    for (size_t block = 0; block < len; block += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++) {
            const uint8_t *b = data + block + 4 * i;
            w[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        }
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; i++) {
            uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            uint32_t choice = (e & f) ^ (~e & g);
            uint32_t t1 = h + s1 + choice + K[i] + w[i];
            uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
            uint32_t t2 = s0 + majority;
            h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
    }
    // The digest's first 8 bytes, big-endian.
    return (int64_t)((uint64_t)state[0] << 32 | state[1]);
}

// Heap sort: in place, no recursion.
static void sift_down(uint32_t *array, size_t start, size_t end) {
    size_t root = start;
    while (2 * root + 1 < end) {
        size_t child = 2 * root + 1;
        if (child + 1 < end && array[child] < array[child + 1]) child++;
        if (array[root] >= array[child]) return;
        uint32_t swap = array[root];
        array[root] = array[child];
        array[child] = swap;
        root = child;
    }
}

int64_t bench_c_sort(void) {
    uint64_t random = 0x9e3779b97f4a7c15ull;
    const size_t count = 100000;
    for (size_t i = 0; i < count; i++) values[i] = (uint32_t)xorshift(&random);
    for (size_t start = count / 2; start-- > 0;) sift_down(values, start, count);
    for (size_t end = count - 1; end > 0; end--) {
        uint32_t swap = values[0];
        values[0] = values[end];
        values[end] = swap;
        sift_down(values, 0, end);
    }
    bool sorted = true;
    for (size_t i = 1; i < count; i++) sorted = sorted && values[i - 1] <= values[i];
    uint64_t checksum = sorted;
    for (size_t i = 0; i < count; i += 997) checksum = checksum * 31 + (values[i] ^ (uint64_t)i);
    return (int64_t)checksum;
}

int64_t bench_c_matmul(void) {
    const int n = 128;
    for (int i = 0; i < n * n; i++) {
        matrix_a[i] = ((double)(i % 17) - 8.0) * 0.125;
        matrix_b[i] = ((double)(i % 13) + 0.5) / 7.0;
        matrix_c[i] = 0.0;
    }
    for (int row = 0; row < n; row++)
        for (int k = 0; k < n; k++) {
            double left = matrix_a[row * n + k];
            for (int column = 0; column < n; column++)
                matrix_c[row * n + column] += left * matrix_b[k * n + column];
        }
    double sum = 0.0;
    for (int i = 0; i < n * n; i++) sum += matrix_c[i] * (1.0 + (double)i * 1e-6);
    union { double value; int64_t bits; } bits = {sum};
    return bits.bits;
}

// Decodes one UTF-8 character at `text[*at]` (the text is valid: it is made
// of valid words); returns its code point.
static uint32_t next_char(const char *text, size_t *at) {
    uint8_t first = (uint8_t)text[(*at)++];
    if (first < 0x80) return first;
    int extra = first >= 0xf0 ? 3 : first >= 0xe0 ? 2 : 1;
    uint32_t code = first & (0x3f >> extra);
    for (int i = 0; i < extra; i++) code = code << 6 | ((uint8_t)text[(*at)++] & 0x3f);
    return code;
}

// Rust's char::is_whitespace for what the generated text holds (and the rest
// of ASCII and Latin-1).
static bool is_whitespace(uint32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0x85 || c == 0xa0;
}

int64_t bench_c_utf8(void) {
    static const char *const words[6] = {"atoll ", "caf\xc3\xa9 ", "\xce\xbb\xcf\x8c\xce\xb3\xce\xbf\xcf\x82 ",
                                         "\xe6\xb5\xb7 ", "wasm\n", "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9 "};
    uint64_t random = 0x123456789abcdef1ull;
    size_t len = 0;
    while (len < MIB) {
        const char *word = words[xorshift(&random) % 6];
        while (*word) text[len++] = *word++;
    }
    uint64_t chars = 0, words_seen = 0, lines = 0, non_ascii = 0;
    bool in_word = false;
    for (size_t at = 0; at < len;) {
        uint32_t c = next_char(text, &at);
        chars++;
        non_ascii += c >= 0x80;
        if (c == '\n') lines++;
        if (is_whitespace(c)) {
            in_word = false;
        } else if (!in_word) {
            in_word = true;
            words_seen++;
        }
    }
    return (int64_t)(chars << 40 ^ words_seen << 20 ^ lines ^ non_ascii << 8);
}

// Appends `value` in decimal (hex: 16 digits with 0x) to `out` at `*at`.
static void put_text(char *out, size_t *at, const char *text) {
    while (*text) out[(*at)++] = *text++;
}
static void put_decimal(char *out, size_t *at, uint64_t value) {
    char digits[20];
    int count = 0;
    do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value);
    while (count) out[(*at)++] = digits[--count];
}
static void put_hex(char *out, size_t *at, uint64_t value) {
    put_text(out, at, "0x");
    for (int shift = 60; shift >= 0; shift -= 4) out[(*at)++] = "0123456789abcdef"[(value >> shift) & 15];
}

void _start(void) {
    static const struct { const char *name; int64_t (*kernel)(void); } kernels[4] = {
        {"sha256", bench_c_sha256}, {"sort", bench_c_sort},
        {"matmul", bench_c_matmul}, {"utf8", bench_c_utf8},
    };
    for (int k = 0; k < 4; k++) {
        uint64_t best = UINT64_MAX;
        int64_t checksum = 0;
        for (int run = 0; run < 3; run++) {
            int64_t started = atoll_time();
            checksum = kernels[k].kernel();
            uint64_t took = (uint64_t)(atoll_time() - started);
            if (took < best) best = took;
        }
        char line[128];
        size_t at = 0;
        put_text(line, &at, "bench: compute_c_");
        put_text(line, &at, kernels[k].name);
        put_text(line, &at, "_ns=");
        put_decimal(line, &at, best);
        atoll_log(line, at);
        at = 0;
        put_text(line, &at, "compute: c_");
        put_text(line, &at, kernels[k].name);
        put_text(line, &at, " checksum ");
        put_hex(line, &at, (uint64_t)checksum);
        atoll_log(line, at);
    }
    atoll_log_str("bench: compute_c_done=1");
}
