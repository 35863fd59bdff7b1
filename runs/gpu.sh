#!/usr/bin/env bash
# GPU checks, as a GPU machine runs them (torch and transformers already installed, no package
# installs, this repository on PYTHONPATH):
#   bash runs/gpu.sh          the CUDA tests; the unpadded path's attention kernels against each other
#                             (BERT-base, T 512); the speed grid in bf16 (BERT-base and DistilBERT, batch
#                             1/8/32/128, T 128/512, full and mixed lengths) and the span head at
#                             T 512/1024 -> benchmarks/results/speed_cuda_*; a summary table
#   bash runs/gpu.sh --cpu    the same steps on the CPU with tiny sizes (a dry run; results under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import pytest" 2>/dev/null || { echo 'runs/gpu.sh needs the test extra: pip install -e ".[test]"' >&2; exit 2; }
if [ "${1:-}" = "--cpu" ]; then
  export TRBERT_TEST_DEVICE=cpu
  device=cpu dtype=fp32 out=${TMPDIR:-/tmp}/trbert_gpu_dry_run
  grid=(--lengths 16 --batches 1 2 --repeats 1 --warmup 0)
  span=(--lengths 32 --batches 1 2 --repeats 1 --warmup 0)
  kernels=(--lengths 16 --batches 2 --repeats 1 --warmup 0)
else
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --cpu for the dry run')"
  device=cuda dtype=bf16 out=benchmarks/results
  grid=(--lengths 128 512 --batches 1 8 32 128)
  span=(--lengths 512 1024 --batches 1 8 32)
  kernels=(--lengths 512 --batches 1 32 128)
fi
mkdir -p "$out"
python -m pytest -q -m cuda tests/test_cuda.py  # (the other modules need the CPU extras)
for kernel in padded jagged; do  # auto (varlen where it runs) is the grid below
  python benchmarks/speed.py --device "$device" --dtype "$dtype" --models bert-base "${kernels[@]}" \
    --attention_kernel "$kernel" --out "$out/speed_${device}_${dtype}_kernel_$kernel"
done
for mode in full mixed; do
  python benchmarks/speed.py --device "$device" --dtype "$dtype" --models bert-base distilbert "${grid[@]}" \
    --lengths_mode "$mode" --out "$out/speed_${device}_${dtype}$([ "$mode" = mixed ] && echo _mixed)"
done
python benchmarks/speed.py --device "$device" --dtype "$dtype" --head span --models bert-base "${span[@]}" \
  --out "$out/speed_${device}_${dtype}_span"
python benchmarks/summary.py "$out"/speed_"${device}"_"${dtype}"*.json
