#!/usr/bin/env bash
# Builds zig-echo-server into build/zig-echo-server.wasm with the pinned Zig
# (PyPI ziglang 0.15.2 in target/tools/python, installed by .ci/setup).
# Zig's caches go under target/, so nothing is written to $HOME or the sources.
set -euo pipefail
cd "$(dirname "$0")"
ATOLL_ROOT=${ATOLL_ROOT:-$(cd ../../.. && pwd)}

mkdir -p build
# wasm32-freestanding: no WASI, imports only from `atoll`. No entry point of
# Zig's own (-fno-entry); `_start` is exported by name and the linker exports
# `memory`. A 64 KiB stack, as Rust services have.
PYTHONPATH="$ATOLL_ROOT/target/tools/python" python3 -m ziglang build-exe \
    -target wasm32-freestanding -O ReleaseSmall -fno-entry \
    --export=_start --stack 65536 \
    --cache-dir "$ATOLL_ROOT/target/zig-cache" \
    --global-cache-dir "$ATOLL_ROOT/target/zig-global-cache" \
    --dep atoll -Mroot=echo.zig -Matoll="$ATOLL_ROOT/sdk/zig/atoll.zig" \
    -femit-bin=build/zig-echo-server.wasm
