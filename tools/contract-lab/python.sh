#!/usr/bin/env bash
# Builds the lab's Python filters (one per candidate) with componentize-py, as transforms/python-filter/build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/wasm32-wasip2/transform"
mkdir -p "$out"
for c in a b; do
  (cd "$here/python-$c" && componentize-py -d "$here/wit/$c" -w flowgate:transform/transformer componentize app \
    -o "$out/contract_lab_python_$c.wasm")
  echo "contract-lab: built $out/contract_lab_python_$c.wasm"
done
