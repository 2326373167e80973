#!/usr/bin/env bash
# Builds the Go filter into a component with the mainline Go toolchain (no TinyGo): `GOOS=wasip1 GOARCH=wasm go
# build -buildmode=c-shared` makes a reactor core module whose canonical ABI glue is hand-written
# (flowgate/abi_wasm.go), `wasm-tools component embed` attaches the WIT world and `wasm-tools component new` wraps
# it with the WASI preview1 reactor adapter (tools/wasi-adapter), as for the C filter. Before that: the native
# tests (`go vet`, `go test`: the helper package, its canonical ABI layouts against a fake memory, the filter),
# then, when Node is installed, the core module driven through the canonical ABI by a fake host (abi_test.mjs).
# Needs Go >= 1.24 on PATH; installs the pinned wasm-tools from crates.io if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/wasm32-wasip2/transform/go_filter.wasm"
work="$root/target/go-filter"
wasm_tools_version=1.239.0

up_to_date=1
while IFS= read -r f; do
  [[ -f "$out" && "$out" -nt "$f" ]] || up_to_date=0
done < <(find "$here" -type f \( -name '*.go' -o -name go.mod -o -name '*.mjs' -o -name build.sh \); echo "$root/wit/transform.wit")
if ((up_to_date)); then
  echo "go-filter: $out is up to date"
  exit 0
fi
command -v go >/dev/null || { echo "go-filter: Go >= 1.24 is required (https://go.dev/dl); none on PATH" >&2; exit 1; }
if ! wasm-tools --version 2>/dev/null | grep -q " $wasm_tools_version"; then
  cargo install --locked --quiet "wasm-tools@$wasm_tools_version"
fi
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

rm -rf "$work" && mkdir -p "$work" "$(dirname "$out")"
cd "$here"
go vet ./...
GOOS=wasip1 GOARCH=wasm go vet -unsafeptr=false ./... # the glue turns host addresses into pointers, on purpose
go test ./...
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o "$work/core.wasm" .
if command -v node >/dev/null; then
  node --no-warnings abi_test.mjs "$work/core.wasm"
else
  echo "go-filter: node not installed, the canonical ABI test of the core module is skipped"
fi
wasm-tools component embed "$root/wit" --world flowgate:transform/transformer "$work/core.wasm" -o "$work/embedded.wasm"
(cd "$root" && cargo run --quiet --locked -p flowgate-wasi-adapter -- "$work/adapter.wasm")
wasm-tools component new "$work/embedded.wasm" --adapt "wasi_snapshot_preview1=$work/adapter.wasm" -o "$work/go_filter.wasm"
wit=$(wasm-tools component wit "$work/go_filter.wasm")
for want in "export flowgate:transform/transform@0.2.0;" "import flowgate:transform/types@0.2.0;" \
  "import flowgate:transform/host@0.2.0;"; do
  grep -qF "$want" <<<"$wit" || { echo "go-filter: the component lacks \`$want\`" >&2; exit 1; }
done
mv "$work/go_filter.wasm" "$out"
echo "go-filter: built $out ($(wc -c < "$out") bytes)"
