#!/usr/bin/env bash
# The test command of the README: install the package with its test extras, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0  # if none (PyPI on Linux: its CUDA build)
python -m pip install -q -e ".[test]"
# Headless Chromium for the token view's screenshot test (the test skips without it). Best effort: needs
# root and apt (Debian); a failure here never fails the run. About 20 s and ~110 MB on a Debian CI image.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium for the screenshot test" >&2
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null 2>&1 ||
      echo "could not install chromium: the screenshot test will be skipped" >&2
  fi
fi
python -m pytest -q tests
