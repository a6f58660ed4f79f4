#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine: the package with its test extra,
# headless Chromium + chromedriver (tests/test_web_demo.py), Node.js (tests/test_node_example.py)
# and the npm packages pinned by examples/{node,web}/package-lock.json. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install --quiet -e ".[test]"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# onnxruntime-node's postinstall only downloads optional GPU binaries; the CPU binaries ship
# inside the package
npm ci --ignore-scripts --no-audit --no-fund --silent --prefix examples/node
npm ci --ignore-scripts --no-audit --no-fund --silent --prefix examples/web
