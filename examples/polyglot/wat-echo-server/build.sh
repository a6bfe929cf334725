#!/usr/bin/env bash
# Builds wat-echo-server into build/wat-echo-server.wasm with wat2wasm (Debian
# package wabt, installed by .ci/setup). No other tool is involved: the text is
# the module.
set -euo pipefail
cd "$(dirname "$0")"
# Unused here (wat2wasm comes from PATH); kept so every example's build.sh
# takes the same environment.
ATOLL_ROOT=${ATOLL_ROOT:-$(cd ../../.. && pwd)}
export ATOLL_ROOT

mkdir -p build
wat2wasm echo.wat -o build/wat-echo-server.wasm
