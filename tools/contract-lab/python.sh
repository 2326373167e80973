#!/usr/bin/env bash
# Builds the lab's Python filters (one per candidate) with componentize-py, as transforms/python-filter/build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/wasm32-wasip2/transform"
mkdir -p "$out"
for app in a b a-columns; do
  name="contract_lab_python_${app//-/_}.wasm"
  (cd "$here/python-$app" && componentize-py -d "$here/wit/${app%%-*}" -w flowgate:transform/transformer \
    componentize app -o "$out/$name")
  echo "contract-lab: built $out/$name"
done
