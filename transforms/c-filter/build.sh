#!/usr/bin/env bash
# Builds the C filter into a component: clang + wasi-libc (Debian) compile a reactor core module against bindings
# from `wit-bindgen c`, and `wasm-tools component new` wraps it with the WASI preview1 adapter. Before that, the
# native unit tests (test.c: flowgate.c and filter.c against a fake host) are compiled with the host's clang and
# run; a failure stops the build. Installs what is missing: the Debian packages (as root) and the two Rust tools
# (crates.io), at pinned versions.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/wasm32-wasip2/transform/c_filter.wasm"
work="$root/target/c-filter"
wit_bindgen_version=0.46.0
wasm_tools_version=1.239.0

up_to_date=1
for f in "$here"/filter.c "$here"/flowgate.c "$here"/flowgate.h "$here"/test.c "$here"/build.sh "$root/wit/transform.wit"; do
  [[ -f "$out" && "$out" -nt "$f" ]] || up_to_date=0
done
if ((up_to_date)); then
  echo "c-filter: $out is up to date"
  exit 0
fi
if ! command -v clang >/dev/null || [[ ! -f /usr/lib/wasm32-wasi/libc.a ]] || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null
fi
if ! wit-bindgen --version 2>/dev/null | grep -q " $wit_bindgen_version"; then
  cargo install --locked --quiet "wit-bindgen-cli@$wit_bindgen_version"
fi
if ! wasm-tools --version 2>/dev/null | grep -q " $wasm_tools_version"; then
  cargo install --locked --quiet "wasm-tools@$wasm_tools_version"
fi

rm -rf "$work" && mkdir -p "$work" "$(dirname "$out")"
wit-bindgen c --world flowgate:transform/transformer "$root/wit" --out-dir "$work/gen" >/dev/null

# Native tests, with AddressSanitizer + UndefinedBehaviorSanitizer (leaks, double frees, overflows fail them)
# where the host's clang has the runtimes (Debian's clang pulls in libclang-rt-14-dev), plain otherwise.
native=(clang -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -g -O1 -I"$work/gen" -I"$here"
  "$here/test.c" "$here/flowgate.c" "$here/filter.c")
if ! "${native[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all -o "$work/test" 2>"$work/test-build.log"; then
  echo "c-filter: building the tests with sanitizers failed ($(head -1 "$work/test-build.log")); building them without"
  "${native[@]}" -o "$work/test"
fi
"$work/test"

clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Werror -I"$work/gen" -I"$here" -o "$work/core.wasm" \
  "$here/filter.c" "$here/flowgate.c" "$work/gen/transformer.c" "$work/gen/transformer_component_type.o"
(cd "$root" && cargo run --quiet --locked -p flowgate-wasi-adapter -- "$work/adapter.wasm")
wasm-tools component new "$work/core.wasm" --adapt "wasi_snapshot_preview1=$work/adapter.wasm" -o "$out"
echo "c-filter: built $out ($(wc -c < "$out") bytes)"
