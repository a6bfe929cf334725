#!/usr/bin/env bash
# Builds ask-c with Debian's clang and wasi-libc: an ordinary wasm32-wasi
# program, nothing Atoll-specific. Output: build/ask-c.wasm.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
clang --target=wasm32-wasi -O2 -Wl,--strip-all -o build/ask-c.wasm ask.c
