#!/usr/bin/env bash
# Chart tests: installs the real Helm engine (PyPI helm-python-sdk, no helm binary) and the offline Kubernetes
# schemas (PyPI kubernetes-validate) into a venv under target/, builds the gateway, runs test_chart.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/chart-venv
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.3
cargo build --locked --quiet --bin flowgate
FLOWGATE_BIN="$PWD/target/debug/flowgate" exec "$venv/bin/python" charts/tests/test_chart.py
