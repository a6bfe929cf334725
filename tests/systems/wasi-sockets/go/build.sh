#!/usr/bin/env bash
# Builds the Go test program of WASI sockets with Debian's Go 1.23 for
# GOOS=wasip1: an ordinary Go program. Output: build/go-server.wasm.
set -euo pipefail
cd "$(dirname "$0")"
root=${ATOLL_ROOT:-$(cd ../../../.. && pwd)}
go=${GO:-/usr/lib/go-1.23/bin/go}
mkdir -p build
# Keep Go's caches inside the workspace's target/ folder.
export GOCACHE="$root/target/go-cache" GOPATH="$root/target/go-path" GOFLAGS=-mod=mod GO111MODULE=off
GOOS=wasip1 GOARCH=wasm "$go" build -trimpath -ldflags=-s -o build/go-server.wasm main.go
