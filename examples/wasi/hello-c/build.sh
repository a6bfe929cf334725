#!/usr/bin/env bash
# Builds hello-c with Debian's clang and wasi-libc: an ordinary wasm32-wasi
# program, nothing Atoll-specific. Output: build/hello-c.wasm.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
clang --target=wasm32-wasi -O2 -Wl,--strip-all -o build/hello-c.wasm hello.c
