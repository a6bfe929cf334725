#!/usr/bin/env bash
# Builds as-echo-server into build/as-echo-server.wasm with the pinned
# AssemblyScript compiler (sdk/assemblyscript/package-lock.json, installed by
# .ci/setup with `npm ci`).
set -euo pipefail
cd "$(dirname "$0")"
ATOLL_ROOT=${ATOLL_ROOT:-$(cd ../../.. && pwd)}

mkdir -p build
# --runtime stub: a bump allocator and no GC (the server allocates only at
# start). --use abort=: no `env.abort` import; a failed assertion traps.
# The memory is exported as `memory` by default.
"$ATOLL_ROOT/sdk/assemblyscript/node_modules/.bin/asc" echo.ts \
    --runtime stub --use abort= -O3 --shrinkLevel 2 --noAssert \
    -o build/as-echo-server.wasm
