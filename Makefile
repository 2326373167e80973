# Flowgate developer entry points. `make test` is exactly what CI runs (.ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: test demo bench lint otelcol toolchain transforms chart docker-check

## Everything CI checks, installing what it needs first.
test: toolchain otelcol transforms lint
	cargo test --workspace --locked
	$(MAKE) chart docker-check

## The Helm chart with the real Helm engine and the Kubernetes schemas (PyPI packages, in a venv under target/).
chart:
	charts/tests/run.sh

## The Dockerfile, checked without a Docker engine: its build commands run here, the paths it copies exist.
docker-check:
	tools/docker/check.py

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
	rustup target add wasm32-wasip2

## Example transforms and the test guests, as components (target/wasm32-wasip2/transform/*.wasm).
TRANSFORM_CRATES := $(foreach d,$(wildcard transforms/*/Cargo.toml host/tests/guests/*/Cargo.toml),-p $(shell sed -n 's/^name = "\(.*\)"/\1/p' $(d) | head -1))
transforms:
	cargo build --locked --target wasm32-wasip2 --profile transform $(TRANSFORM_CRATES)
	transforms/python-filter/build.sh
	transforms/js-filter/build.sh
	transforms/c-filter/build.sh
	@for f in target/wasm32-wasip2/transform/*.wasm; do \
	  printf '%-60s %8d bytes, %8d gzipped\n' "$$f" "$$(wc -c < $$f)" "$$(gzip -9c $$f | wc -c)"; \
	done
