#!/usr/bin/env bash
# Builds the Rust std test program of WASI sockets for wasm32-wasip1 (the
# pinned toolchain has the target, see rust-toolchain.toml). Output:
# build/rust-server.wasm.
set -euo pipefail
cd "$(dirname "$0")"
root=${ATOLL_ROOT:-$(cd ../../../.. && pwd)}
cargo=${CARGO:-cargo}
"$cargo" build --quiet --release --target wasm32-wasip1 --target-dir "$root/target/wasi-sockets"
mkdir -p build
cp "$root/target/wasi-sockets/wasm32-wasip1/release/rust-server.wasm" build/rust-server.wasm
