#!/usr/bin/env bash
# Builds c-echo-server into build/c-echo-server.wasm with Debian's clang and wasm-ld
# (packages clang and lld, installed by .ci/setup). No libc: the service uses
# only the headers of sdk/c (see sdk/c/README.md for the flags).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ATOLL_ROOT=${ATOLL_ROOT:-$(cd ../../.. && pwd)}

mkdir -p build
# wasm32 with no OS: -ffreestanding and -mbulk-memory so the compiler never
# calls memcpy/memset/strlen (copies become memory.copy). No entry point of
# the linker's own: `_start` is exported by name (wasm-ld exports the memory
# as `memory` by itself; --export=memory would fail). A 64 KiB
# stack, as Rust services have, placed first so an overflow traps instead of
# overwriting static data.
clang --target=wasm32 -std=c11 -ffreestanding -mbulk-memory -nostdlib -O2 \
    -Wall -Wextra -I"$ATOLL_ROOT/sdk/c" \
    -Wl,--no-entry -Wl,--export=_start \
    -Wl,-z,stack-size=65536 -Wl,--stack-first -Wl,--strip-all \
    -o build/c-echo-server.wasm echo.c
