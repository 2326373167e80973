#!/usr/bin/env bash
# Builds what the image ships into OUT_DIR: bin/flowgate and transforms/<name>.wasm (the example transforms).
# The Dockerfile's build stage runs exactly this script; CI runs it too, outside Docker (tools/docker/check.py),
# with FLOWGATE_PROFILE=dev so it reuses the test build instead of compiling wasmtime a second time.
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
profile=${FLOWGATE_PROFILE:-release}
cd "$(dirname "$0")/../.."
tools/build-deps.sh
rustup target add wasm32-wasip2
cargo build --locked --profile "$profile" --bin flowgate
transforms=(filter redact enrich semconv ocsf ecs)
packages=()
for t in "${transforms[@]}"; do packages+=(-p "flowgate-transform-$t"); done
cargo build --locked --target wasm32-wasip2 --profile transform "${packages[@]}"
target_dir=$profile
[[ $profile == dev ]] && target_dir=debug
mkdir -p "$out/bin" "$out/transforms"
cp "target/$target_dir/flowgate" "$out/bin/flowgate"
for t in "${transforms[@]}"; do
  cp "target/wasm32-wasip2/transform/flowgate_transform_$t.wasm" "$out/transforms/$t.wasm"
done
"$out/bin/flowgate" --version
