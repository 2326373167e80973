# Flowgate developer entry points. `make test` is exactly what CI runs (.ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: test disk demo bench bench-e2e lint otelcol toolchain build-deps transforms chart docker-check deny deny-advisories fuzz

## Everything CI checks, installing what it needs first. One build, no incremental state (CI builds once; it
## would add ~0.8 GB); the disk report brackets the run, as a full disk shows up as a linker crash, not a message.
## Clippy runs inside the tests' build (LINTED below), so the dependencies are compiled once, not also checked.
test: export CARGO_INCREMENTAL := 0
test: disk toolchain otelcol transforms
	cargo fmt --all -- --check
	$(LINTED) cargo test --workspace --locked
	$(MAKE) chart docker-check deny fuzz
	tools/disk-report.sh end

disk:
	tools/disk-report.sh start

## The Helm chart with the real Helm engine and the Kubernetes schemas (PyPI packages, in a venv under target/).
chart:
	charts/tests/run.sh

## Supply chain with cargo-deny: licenses, bans and sources always; advisories whenever the RustSec database
## (a git repository on GitHub) can be fetched. Where it cannot (this project's CI machines resolve no github.com),
## the log says so in capitals and `make deny-advisories` is the check to run where it can.
deny:
	command -v cargo-deny >/dev/null || cargo install --locked cargo-deny@0.20.2
	cargo deny check licenses bans sources
	mkdir -p target
	if cargo deny fetch db > target/deny-fetch.log 2>&1; then \
	  cargo deny check --disable-fetch advisories; \
	else \
	  echo "ADVISORIES NOT CHECKED: the RustSec database could not be fetched:"; \
	  grep -m2 -E 'fatal|failed' target/deny-fetch.log || tail -2 target/deny-fetch.log; \
	fi

deny-advisories:
	cargo deny check advisories

## Fuzzing with cargo-fuzz (nightly): every target for FUZZ_SECONDS (CI: 20), corpus and crashes under target/.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := flow_result config render
fuzz:
	rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz/corpus/$$t target/fuzz/artifacts/$$t host/fuzz/corpus/$$t; \
	  (cd host && cargo +nightly fuzz run -O --target-dir ../target/fuzz $$t ../target/fuzz/corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=../target/fuzz/artifacts/$$t/ -print_final_stats=1) || exit 1; \
	done

## The Dockerfile, checked without a Docker engine: its build commands run here, the paths it copies exist.
docker-check:
	tools/docker/check.py

## The demo: simulated Goldmane -> Flowgate -> embedded OTLP receiver, on loopback.
demo: build-deps
	cargo run --locked -- demo

## Host path benchmark (release build), prints figures. Its stages run back to back with pauses between rounds,
## on jemalloc's defaults (freed pages kept 10 s), so no round faults its pages in again, as a gateway under load
## does not.
bench: build-deps
	cargo run --locked --release --bin flowgate-bench

## The gateway end to end (release binary, stand-in Goldmane, counting receiver): CPU per flow, RSS, ratios, and
## its floor (the gateway's source and exporter without the data path).
bench-e2e: build-deps
	cargo build --locked --release --bin flowgate --bin flowgate-e2e
	target/release/flowgate-e2e

## The same lints as `make test` without running the tests.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

## Clippy's driver is rustc with Clippy's lints added, and it compiles as rustc does. As the workspace's compiler
## (cargo runs RUSTC_WORKSPACE_WRAPPER for the workspace's own crates only, every target `cargo test` builds: the
## libraries with and without cfg(test), binaries, tests, build scripts) it denies the warnings `make lint` denies,
## while the dependencies are built once by plain rustc. `cargo clippy` is the same driver in a `cargo check`, so it
## type-checks every dependency again: 3 minutes on CI's machine after the tests' build.
## CLIPPY_ARGS is how cargo-clippy hands its arguments to the driver (separated by __CLIPPY_HACKERY__).
LINTED = RUSTC_WORKSPACE_WRAPPER="$$(rustc --print sysroot)/bin/clippy-driver" \
	CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

## The real OpenTelemetry Collector for the integration tests (Go module proxy).
otelcol:
	tools/otelcol/build.sh

## Rust components the build needs, and the tools ISA-L's build needs (nasm, autotools; installed if missing).
toolchain: build-deps
	rustup component add rustfmt clippy
	rustup target add wasm32-wasip2

build-deps:
	tools/build-deps.sh

## Example transforms and the test guests, as components (target/wasm32-wasip2/transform/*.wasm).
TRANSFORM_CRATES := $(foreach d,$(wildcard transforms/*/Cargo.toml host/tests/guests/*/Cargo.toml),-p $(shell sed -n 's/^name = "\(.*\)"/\1/p' $(d) | head -1))
transforms:
	cargo build --locked --target wasm32-wasip2 --profile transform $(TRANSFORM_CRATES)
	transforms/python-filter/build.sh
	transforms/js-filter/build.sh
	transforms/c-filter/build.sh
	transforms/go-filter/build.sh
	@for f in target/wasm32-wasip2/transform/*.wasm; do \
	  printf '%-60s %8d bytes, %8d gzipped\n' "$$f" "$$(wc -c < $$f)" "$$(gzip -9c $$f | wc -c)"; \
	done
