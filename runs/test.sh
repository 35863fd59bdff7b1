#!/usr/bin/env bash
# The test command of the README: install the package with its test extras, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0  # CPU build where available
python -m pip install -q -e ".[test]"
python -m pytest -q tests
