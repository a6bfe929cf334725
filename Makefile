# Atoll's entry points. `make run` and `make test` do all set-up on a fresh
# machine (toolchain, QEMU) through .ci/setup, then build what they need.

SYSTEM ?= examples/default/system.toml
BUILDER := target/release/image-builder
# Crates built for wasm32 (linted for that target).
WASM_CRATES := atoll-sdk hello echo-server echo-client kv-server kv-client supervisor console shell polyglot-client pci virtio-blk fat virtio-net netstack httpd wasi-shim \
	test-spinner test-misbehave test-ponger test-pinger test-quitter test-caller test-bench-server test-bench-client test-panic test-crasher test-crash-client test-trace-client test-echo-v2 test-ticker test-counter test-counter-v2 test-counter-client test-counter-bench-client test-fs-client test-fs-reader test-storage-bench test-compute test-float-check test-net-faulty test-chaos-supervisor test-chaos-client test-storage-chaos test-storage-chaos-reader
# Service crates with host unit tests (built for the host only under test).
HOST_TESTED_SERVICES := fat virtio-blk console shell virtio-net netstack httpd wasi-shim
# The kernel's target: SSE2 with the hard-float ABI, core and alloc built from
# source (docs/design.md, "The kernel target"); image-builder uses the same flags.
KERNEL_TARGET := --target kernel/x86_64/x86_64-atoll-kernel.json -Zbuild-std=core,alloc,compiler_builtins -Zbuild-std-features=compiler-builtins-mem -Zjson-target-spec
# Extra options for `image-builder run`, e.g. RUN_ARGS="--uefi".
RUN_ARGS ?=
# `make chaos`: faults to inject and the seed (docs/reliability.md).
FAULTS ?= 10000
SEED ?= 1
QEMU_FAULTS ?= 10000
# `make fuzz`: how long each fuzz target runs (30s, 10m, 1h).
FOR ?= 1m
FUZZ_TARGETS := fuzz-modules fuzz-host-abi fuzz-protocols fuzz-manifest

.PHONY: setup builder run run-uefi gdb test lint bench chaos chaos-qemu fuzz loc clean

setup:
	@bash .ci/setup

# image-builder is built in the release profile only: the bootloader crate's
# build script (~80 s) reruns for any other profile.
builder: setup
	cargo build --release -p image-builder

## Boot the default system (or SYSTEM=path/to/system.toml) in QEMU. Ctrl-C quits.
run: builder
	$(BUILDER) run $(SYSTEM) $(RUN_ARGS)

run-uefi: RUN_ARGS += --uefi
run-uefi: run

## Boot paused, waiting for GDB on localhost:1234 (the command to attach is printed).
gdb: RUN_ARGS += --gdb
gdb: run

## Everything CI checks: formatting, lints on all three targets, host and QEMU tests.
test: setup lint
	cargo test --release
	# The kernel core's tests again with every kernel call on the slow path
	# (the kernel busy), which default builds reach only during a handoff.
	cargo test --release -p atoll-core --features trapped-ipc
	# Services whose logic has host tests (the FAT layer runs on mkfs.fat images).
	cargo test --release $(foreach p,$(HOST_TESTED_SERVICES),-p $(p))
	# A short fault campaign (seconds; `make chaos` runs longer ones).
	cargo run --release -q -p image-builder -- chaos --faults 3000 --seed 1
	# The fuzz targets' driver, then each target on its corpus and a fixed
	# number of generated inputs (about 10-20 s; counts, not time, so that CI
	# sees the same inputs on any machine).
	cargo test --release -p atoll-fuzz
	target/release/fuzz-modules --iterations 1000
	target/release/fuzz-host-abi --iterations 500
	target/release/fuzz-protocols --iterations 2000000
	target/release/fuzz-manifest --iterations 40000

lint: setup
	cargo fmt --all --check
	# kernel/core's modules form no import cycle (docs/design.md).
	python3 .ci/layers
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --profile kernel -p atoll-kernel $(KERNEL_TARGET) -- -D warnings
	# The baseline kernel (before issue 12) that `make bench` compares against.
	cargo clippy --profile kernel -p atoll-kernel --target x86_64-unknown-none --features portable-dispatch --target-dir target/cross-baseline -- -D warnings
	cargo clippy --release -p wasmi-runner -- -D warnings
	cargo clippy --release -p atoll-fuzz --all-targets -- -D warnings
	# The tracing-overhead bench (built by `make bench` only).
	cargo clippy --release -p atoll-trace-bench --all-targets -- -D warnings
	cargo clippy --profile service --target wasm32-unknown-unknown $(foreach p,$(WASM_CRATES),-p $(p)) -- -D warnings
	cargo clippy --release --tests $(foreach p,$(HOST_TESTED_SERVICES),-p $(p)) -- -D warnings

## Measure IPC round trip, send throughput and spawn cost (QEMU and hosted) against a Linux pipe.
bench: builder
	$(BUILDER) bench

## The seeded fault-injection campaign in the hosted core: FAULTS=1000000 SEED=7
## for the documented run (docs/reliability.md). Report on stdout and in
## target/bench/chaos.jsonl.
chaos: builder
	$(BUILDER) chaos --faults $(FAULTS) --seed $(SEED)

## The QEMU campaign: QEMU_FAULTS faults into the disk driver, the file system
## and the console while a reader verifies a file byte by byte.
chaos-qemu: builder
	$(BUILDER) chaos --qemu --faults $(QEMU_FAULTS) --seed $(SEED)

## The fuzz targets (tests/fuzz), FOR each (e.g. FOR=10m), from their seed
## corpus in tests/fuzz/corpus/; a panicking input is saved in target/fuzz/crashes/.
fuzz: setup
	cargo build --release -p atoll-fuzz
	$(foreach target,$(FUZZ_TARGETS),target/release/$(target) --for $(FOR) &&) true

## The kernel's layers (no import cycle) and its trusted base: non-blank,
## non-comment lines per file (tests left out), unsafe blocks and SAFETY
## notes; fails above 4,000 lines.
loc:
	@python3 .ci/layers
	@bash .ci/loc

clean:
	cargo clean
