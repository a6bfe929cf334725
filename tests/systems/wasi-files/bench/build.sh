#!/usr/bin/env bash
# Builds the WASI file benchmark with Debian's clang and wasi-libc.
# Output: build/wasi-bench.wasm.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
clang --target=wasm32-wasi -O2 -Wl,--strip-all -o build/wasi-bench.wasm bench.c
