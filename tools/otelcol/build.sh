#!/usr/bin/env bash
# Builds the real OpenTelemetry Collector (OTLP receiver + file exporter) with its builder, from the Go module
# proxy, into target/otelcol/otelcol-flowgate. Idempotent: does nothing when the binary is newer than the manifest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/otelcol"
bin="$out/otelcol-flowgate"
builder_version=v0.162.0

if [[ -x "$bin" && "$bin" -nt "$here/builder.yaml" ]]; then
  echo "otelcol: $bin is up to date"
  exit 0
fi
command -v go >/dev/null || { echo "otelcol: Go is required (https://go.dev/dl); none on PATH" >&2; exit 1; }
mkdir -p "$out"
GOBIN="$out/bin" go install "go.opentelemetry.io/collector/cmd/builder@$builder_version"

work="$out/src"
rm -rf "$work"
mkdir -p "$work"
cp "$here/builder.yaml" "$work/"
cd "$work"
# The builder writes the sources and go.mod, then runs `go mod tidy`, which also resolves the *tests* of every
# component; the file exporter's tests import a module version the proxy does not serve, so tidy fails. The build
# itself needs none of it: finish with `go build -mod=mod`, which resolves only what is compiled.
if ! "$out/bin/builder" --config builder.yaml >builder.log 2>&1; then
  if [[ ! -f dist/go.mod ]] || ! grep -q "mod tidy" builder.log; then
    cat builder.log >&2
    echo "otelcol: the builder failed before writing the sources" >&2
    exit 1
  fi
  echo "otelcol: builder's go mod tidy failed on test-only dependencies; building with -mod=mod"
  (cd dist && GOFLAGS=-mod=mod go build -trimpath -o otelcol-flowgate .)
fi
cp dist/otelcol-flowgate "$bin"
echo "otelcol: built $bin"
