#!/usr/bin/env bash
# Builds the C test program of WASI files with Debian's clang and wasi-libc:
# an ordinary wasm32-wasi program. Output: build/c-files.wasm.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
clang --target=wasm32-wasi -O2 -Wl,--strip-all -o build/c-files.wasm files.c
