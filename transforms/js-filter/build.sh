#!/usr/bin/env bash
# Builds the JavaScript filter into a component with componentize-js (installed from npm into node_modules), after
# its native tests (`node --test`: flowgate.js and filter.js against a fake batch) pass.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/wasm32-wasip2/transform/js_filter.wasm"
cd "$here"
node --test test/flowgate.test.js > /dev/null || {
  node --test --test-reporter=spec test/flowgate.test.js >&2 || true
  echo "js-filter: tests failed" >&2
  exit 1
}
if [[ -f "$out" && "$out" -nt filter.js && "$out" -nt flowgate.js && "$out" -nt "$root/wit/transform.wit" ]]; then
  echo "js-filter: $out is up to date"
  exit 0
fi
[[ -x node_modules/.bin/componentize-js ]] || npm install --no-audit --no-fund --silent
mkdir -p "$(dirname "$out")"
# componentize-js follows filter.js's relative import of flowgate.js.
node_modules/.bin/componentize-js --wit "$root/wit" --world-name transformer --disable http fetch-event \
  -o "$out" filter.js
echo "js-filter: built $out ($(wc -c < "$out") bytes)"
