#!/usr/bin/env bash
# What building the gateway needs beyond Rust: nasm and autotools, for ISA-L, the gzip compressor, which
# `isal-sys` builds from the source it carries. Installs what is missing from Debian's packages.
set -euo pipefail
declare -A package=([nasm]=nasm [autoconf]=autoconf [automake]=automake [libtoolize]=libtool [make]=make)
missing=()
for tool in "${!package[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${package[$tool]}")
done
((${#missing[@]} == 0)) && exit 0
if ! command -v apt-get >/dev/null; then
  echo "build-deps: install ${missing[*]} (ISA-L's build needs them); this script knows only apt-get" >&2
  exit 1
fi
sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
echo "build-deps: installing ${missing[*]} from Debian's packages"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
