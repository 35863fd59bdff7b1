"""How fast do the selectors learn? Selector learning rate x RL length, on a fine-tuned model.

    python benchmarks/selector_lr.py --model_dir demo_out/bert --output_dir /tmp/selector_lr \
        --rates 3e-5 3e-4 1e-3 3e-3 --epochs 1 \
        -- --task_name imdb --data_dir demo_out/data --max_seq_length 64 --alpha 2

For every (selector rate, RL epochs): ``--train_rl`` from the fine-tuned model with
``--selector_learning_rate RATE`` (the selectors are all that trains there), then ``--train_both
--train_teacher`` with the joint flags given (one rate for all, as the original), each evaluated:
accuracy, FLOPs speed-up, kept fraction per selector and the selector health report. Writes
``selector_lr.json`` and ``selector_lr.md`` in the output directory. Not a test: minutes per row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's trbert, not an installed one

from trbert.train.cli import Job, parse_args, parse_overrides  # noqa: E402
from trbert.train.pipeline import run, setup_logging  # noqa: E402


def row(args, base: Job, joint: dict, rate: float, epochs: int) -> dict:
    """Selector RL at ``rate`` for ``epochs``, then joint training; both evaluated on dev."""
    out = Path(args.output_dir) / f"rate_{rate:g}_epochs_{epochs}"
    rl, both = str(out / "rl"), str(out / "both")
    started = time.perf_counter()
    auto = dict(model_type="autobert", overwrite_output_dir=True)
    train = dict(auto, do_train=True, do_eval=False, per_gpu_train_batch_size=8)
    evaluate = dict(auto, per_gpu_eval_batch_size=64)
    run(base.updated(**train, model_name_or_path=args.model_dir, output_dir=rl, train_rl=True,
                     selector_learning_rate=rate, num_train_epochs=float(epochs), guide_rate=0.5))  # fmt: skip
    rl_eval = run(base.updated(**evaluate, model_name_or_path=rl, output_dir=rl))[0]
    run(base.updated(**train, model_name_or_path=rl, output_dir=both, train_both=True, train_teacher=True, **joint))
    joint_eval = run(base.updated(**evaluate, model_name_or_path=both, output_dir=both))[0]
    return {"selector_rate": rate, "rl_epochs": epochs, "rl": _summary(rl_eval), "joint": _summary(joint_eval),
            "minutes": (time.perf_counter() - started) / 60}  # fmt: skip


def _summary(report: dict) -> dict:
    keys = ("acc", "f1", "flops_speedup", "kept_fraction", "selector_health")
    return {k: report[k] for k in keys if k in report}


def table(rows: list[dict]) -> str:
    head = "| selector rate | RL epochs | RL: acc | RL: FLOPs x | RL: kept 1 / 2 | RL: \\|p-0.5\\| 1 / 2 | joint: acc | joint: FLOPs x | joint: kept 1 / 2 |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        rl, joint = r["rl"], r["joint"]
        distance = " / ".join(f"{h['distance']:.3f}" for h in rl.get("selector_health", []))
        cells = [f"{r['selector_rate']:g}", str(r["rl_epochs"]), f"{rl['acc']:.4f}", f"{rl['flops_speedup']:.2f}x",
                 " / ".join(f"{k:.3f}" for k in rl["kept_fraction"]), distance, f"{joint['acc']:.4f}",
                 f"{joint['flops_speedup']:.2f}x", " / ".join(f"{k:.3f}" for k in joint["kept_fraction"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model_dir", required=True, help="fine-tuned model with token_scores.npy and teacher_logits.npy"
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=[3e-5, 3e-4, 1e-3, 3e-3])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--joint", default="--learning_rate 2e-5 --max_steps 150 --per_gpu_train_batch_size 4", help="joint-stage flags"
    )
    args, flags = parser.parse_known_args(argv)
    given = dict(model_type="bert", model_name_or_path=args.model_dir, output_dir=args.model_dir, do_eval=True)
    base = parse_args([f for f in flags if f != "--"], given=given)  # the entry script's flags, parsed once
    joint = parse_overrides(shlex.split(args.joint), "classification", "selector_lr.py --joint")
    setup_logging()
    rows, out = [], Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for epochs in args.epochs:
        for rate in args.rates:
            rows.append(row(args, base, joint, rate, epochs))
            (out / "selector_lr.json").write_text(json.dumps({"command": sys.argv, "rows": rows}, indent=2))
            (out / "selector_lr.md").write_text(f"`{' '.join(sys.argv)}`\n\n" + table(rows))
    sys.stdout.write(table(rows))


if __name__ == "__main__":
    main()
