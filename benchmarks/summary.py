"""A short table of ``benchmarks/speed.py`` results: per cell, the FLOPs speed-up, the measured
speed-up of the unpadded path and of the original-style path over stock, and the keep-all overhead.

    python benchmarks/summary.py benchmarks/results/speed_cuda_bf16*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows(path: Path) -> list[str]:
    result = json.loads(path.read_text())
    out = []
    for r in result["rows"]:
        speed, keep_all = r["speedup"], r["speedup"].get("keep_all")
        overhead = f"{100 * (1 / keep_all - 1):+.1f}%" if keep_all else "-"
        cells = [path.stem, r["model"], str(r["length"]), str(r["batch"]), f"{r['flops_speedup']:.2f}x",
                 f"{speed.get('unpadded', float('nan')):.2f}x", f"{speed.get('original', float('nan')):.2f}x", overhead]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(paths: list[str]) -> None:
    head = "| result | model | T | B | FLOPs x | unpadded x | original x | keep-all overhead |"
    lines = [head, "|" + "---|" * 8] + [line for p in paths for line in rows(Path(p))]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a table of benchmarks/speed.py results")
    parser.add_argument("results", nargs="+", help="speed_*.json files written by benchmarks/speed.py")
    args = parser.parse_args()
    missing = [p for p in args.results if not Path(p).is_file()]
    if missing:
        parser.error(f"no such result file: {missing[0]}")
    main(args.results)
