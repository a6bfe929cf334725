#!/usr/bin/env bash
# Builds compute-c into build/compute-c.wasm with Debian's clang and wasm-ld
# (as examples/polyglot/c-echo-server: no libc, sdk/c's headers only), at -O2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ATOLL_ROOT=${ATOLL_ROOT:-$(cd ../../.. && pwd)}
mkdir -p build
clang --target=wasm32 -std=c11 -ffreestanding -mbulk-memory -nostdlib -O2 \
    -Wall -Wextra -Werror -I"$ATOLL_ROOT/sdk/c" \
    -Wl,--no-entry -Wl,--export=_start \
    -Wl,--export=bench_c_sha256 -Wl,--export=bench_c_sort \
    -Wl,--export=bench_c_matmul -Wl,--export=bench_c_utf8 \
    -Wl,-z,stack-size=65536 -Wl,--stack-first -Wl,--strip-all \
    -o build/compute-c.wasm compute.c
