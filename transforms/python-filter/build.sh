#!/usr/bin/env bash
# Builds the Python filter into a component with componentize-py (installed from PyPI if missing), after its
# native tests (`python3 -m unittest`: flowgate.py and app.py against a fake batch) pass.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/wasm32-wasip2/transform/python_filter.wasm"
version=0.25.1
if ! componentize-py --version 2>/dev/null | grep -q "$version"; then
  python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$version"
fi
cd "$here"
# The tests use the bindings componentize-py generates, so they run after it is installed.
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest --quiet || { echo "python-filter: tests failed" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
if [[ -f "$out" && "$out" -nt app.py && "$out" -nt flowgate.py && "$out" -nt "$root/wit/transform.wit" ]]; then
  echo "python-filter: $out is up to date"
  exit 0
fi
# componentize-py bundles the modules app.py imports from this directory: flowgate.py (not the tests).
componentize-py -d "$root/wit" -w flowgate:transform/transformer componentize app -o "$out"
echo "python-filter: built $out ($(wc -c < "$out") bytes)"
