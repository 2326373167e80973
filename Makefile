# Flowgate developer entry points. `make test` is exactly what CI runs (.ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: test demo bench lint otelcol toolchain

## Everything CI checks, installing what it needs first.
test: toolchain otelcol lint
	cargo test --workspace --locked

## The demo: simulated Goldmane -> Flowgate -> embedded OTLP receiver, on loopback.
demo:
	cargo run --locked -- demo

## Host path benchmark (release build), prints figures.
bench:
	cargo run --locked --release --bin flowgate-bench

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

## The real OpenTelemetry Collector for the integration tests (Go module proxy).
otelcol:
	tools/otelcol/build.sh

## Rust components the build needs.
toolchain:
	rustup component add rustfmt clippy
