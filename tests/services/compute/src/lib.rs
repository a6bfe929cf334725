//! test-compute: compute-bound kernels for `image-builder bench`.
//!
//! Each kernel is an exported function `bench_NAME() -> i64` that returns a
//! checksum of its result, so the same module runs three ways: as an Atoll
//! service (`_start` times each kernel with `time()`, best of three, and
//! prints `bench: compute_NAME_ns=...` and its checksum), in the hosted core (the same), and
//! under plain wasmi on the host (`tests/wasmi-runner` calls the exports). The
//! checksums must agree everywhere.
//!
//! What is here: SHA-256 over 1 MiB, sorting 100,000 integers, a 128x128 f64
//! matrix multiply, a UTF-8 text scan over 1 MiB, and a postcard encode and
//! decode loop over protocol messages (what every service does per request).
//! Nothing else: no IPC.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use atoll_sdk::println;

atoll_sdk::entry!(main);

/// The kernels, by name, in the order they run.
const KERNELS: &[(&str, extern "C" fn() -> i64)] = &[
    ("sha256", bench_sha256),
    ("sort", bench_sort),
    ("matmul", bench_matmul),
    ("utf8", bench_utf8),
    ("postcard", bench_postcard),
];

/// Runs of each kernel; the best is reported (as the plain-wasmi runner does).
const RUNS: usize = 3;

fn main() {
    for (name, kernel) in KERNELS {
        let mut best = u64::MAX;
        let mut checksum = 0;
        for _ in 0..RUNS {
            let started = atoll_sdk::time();
            checksum = kernel();
            best = best.min(atoll_sdk::time() - started);
        }
        println!("bench: compute_{name}_ns={best}");
        println!("compute: {name} checksum {checksum:#018x}");
    }
    println!("bench: compute_done=1");
}

/// xorshift64: deterministic input data.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const MIB: usize = 1024 * 1024;

#[expect(unsafe_code, reason = "exported by name for the plain-wasmi runner")]
#[unsafe(no_mangle)]
pub extern "C" fn bench_sha256() -> i64 {
    let mut random = Xorshift(0x2545_f491_4f6c_dd1d);
    let data: Vec<u8> = (0..MIB).map(|_| random.next() as u8).collect();
    let digest = sha256(&data);
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    i64::from_be_bytes(first)
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 (FIPS 180-4) of `data`.
fn sha256(data: &[u8]) -> [u8; 32] {
    let mut state: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut padded = Vec::with_capacity(data.len() + 72);
    padded.extend_from_slice(data);
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in padded.as_chunks::<64>().0 {
        let mut w = [0u32; 64];
        for (word, bytes) in w.iter_mut().zip(block.as_chunks::<4>().0) {
            *word = u32::from_be_bytes(*bytes);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = state;
        for (k, word) in K.iter().zip(w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(*k)
                .wrapping_add(word);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (value, add) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *value = value.wrapping_add(add);
        }
    }
    let mut digest = [0u8; 32];
    for (bytes, value) in digest.as_chunks_mut::<4>().0.iter_mut().zip(state) {
        bytes.copy_from_slice(&value.to_be_bytes());
    }
    digest
}

#[expect(unsafe_code, reason = "exported by name for the plain-wasmi runner")]
#[unsafe(no_mangle)]
pub extern "C" fn bench_sort() -> i64 {
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut values: Vec<u32> = (0..100_000).map(|_| random.next() as u32).collect();
    values.sort_unstable();
    let sorted = values.windows(2).all(|pair| pair[0] <= pair[1]);
    let mut checksum = u64::from(sorted);
    for (index, value) in values.iter().enumerate().step_by(997) {
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(u64::from(*value) ^ index as u64);
    }
    checksum as i64
}

/// Side of the matrices of [`bench_matmul`].
const N: usize = 128;

#[expect(unsafe_code, reason = "exported by name for the plain-wasmi runner")]
#[unsafe(no_mangle)]
pub extern "C" fn bench_matmul() -> i64 {
    let a: Vec<f64> = (0..N * N)
        .map(|i| ((i % 17) as f64 - 8.0) * 0.125)
        .collect();
    let b: Vec<f64> = (0..N * N).map(|i| ((i % 13) as f64 + 0.5) / 7.0).collect();
    let mut c = alloc::vec![0.0f64; N * N];
    for row in 0..N {
        for k in 0..N {
            let left = a[row * N + k];
            for column in 0..N {
                c[row * N + column] += left * b[k * N + column];
            }
        }
    }
    let sum: f64 = c
        .iter()
        .enumerate()
        .map(|(i, x)| x * (1.0 + i as f64 * 1e-6))
        .sum();
    sum.to_bits() as i64
}

#[expect(unsafe_code, reason = "exported by name for the plain-wasmi runner")]
#[unsafe(no_mangle)]
pub extern "C" fn bench_utf8() -> i64 {
    // 1 MiB of mixed ASCII, Latin, Greek and CJK text.
    const WORDS: [&str; 6] = ["atoll ", "café ", "λόγος ", "海 ", "wasm\n", "ünïcödé "];
    let mut random = Xorshift(0x1234_5678_9abc_def1);
    let mut text = alloc::string::String::with_capacity(MIB + 16);
    while text.len() < MIB {
        text.push_str(WORDS[(random.next() % WORDS.len() as u64) as usize]);
    }
    let bytes = core::hint::black_box(text.as_bytes());
    let Ok(text) = core::str::from_utf8(bytes) else {
        return -1;
    };
    let (mut chars, mut words, mut lines, mut non_ascii) = (0u64, 0u64, 0u64, 0u64);
    let mut in_word = false;
    for character in text.chars() {
        chars += 1;
        non_ascii += u64::from(!character.is_ascii());
        if character == '\n' {
            lines += 1;
        }
        if character.is_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
        }
    }
    (chars << 40 ^ words << 20 ^ lines ^ non_ascii << 8) as i64
}

#[expect(unsafe_code, reason = "exported by name for the plain-wasmi runner")]
#[unsafe(no_mangle)]
pub extern "C" fn bench_postcard() -> i64 {
    // 4,000 file-protocol requests and responses, encoded and decoded back:
    // varints, strings, enums and byte payloads, as services exchange them.
    use atoll_protocols::fs::{Request, Response};
    let mut random = Xorshift(0x0f1e_2d3c_4b5a_6978);
    let mut checksum = 0u64;
    let mut payload = alloc::vec![0u8; 256];
    for round in 0..4_000u64 {
        let value = random.next();
        let request = Request::Read {
            path: alloc::format!("/data/file-{}.bin", value % 1000),
            offset: value >> 20,
            len: (value % 4096) as u32,
        };
        let Ok(bytes) = postcard::to_allocvec(&request) else {
            return -1;
        };
        let Ok(decoded) = postcard::from_bytes::<Request>(&bytes) else {
            return -2;
        };
        if decoded != request {
            return -3;
        }
        payload
            .iter_mut()
            .for_each(|byte| *byte = (random.next() & 0xff) as u8);
        let response = Response::Data(payload.clone());
        let Ok(bytes) = postcard::to_allocvec(&response) else {
            return -4;
        };
        let Ok(Response::Data(data)) = postcard::from_bytes::<Response>(&bytes) else {
            return -5;
        };
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(bytes.len() as u64 ^ round)
            .wrapping_add(u64::from(data.last().copied().unwrap_or(0)));
    }
    checksum as i64
}
