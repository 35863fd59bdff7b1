"""``python -m trbert show``: the token view of a trained TR-BERT model on a split.

What this file is: the part of the token view that runs the model — every row of the split once
through the padded threshold path with ``trace`` on (how far each token went, its keep probability
at each selector), the split's ``--do_eval`` report for the summary, and the rows handed to
:mod:`trbert.tokenview` for the page. Not here: the page itself.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from .checkpoint import read_manifest
from .cli import parse_args
from .data import batches, to_device
from .distributed import progress, setup
from .errors import InputError
from .flops import FlopsCounter, mflops
from .inference import evaluate
from .model import selector_layers
from .outputs import read_json
from .pipeline import eval_set, load_tokenizer, make_task, model_at
from .stages import forward_batch
from .tokenview import ViewExample, ViewSummary, render, word_keep_rates, write_page

logger = logging.getLogger(__name__)


def parser(sub) -> None:
    p = sub.add_parser("show", help="an HTML page of the tokens a trained TR-BERT model keeps on a split")
    p.add_argument("--family", default="classification", help="task family of the entry script")
    p.add_argument("--model_dir", required=True, help="a TR-BERT checkpoint with trained selectors")
    p.add_argument("--output", required=True, help="the HTML file to write")
    p.add_argument("--examples", type=int, default=50, help="examples shown (the summary covers the whole split)")


@torch.no_grad()
def trace(model, features: dict, world, batch_size: int = 32) -> tuple[list, list]:
    """Per row ``(depth [T], probs [selectors, T])`` of every token (padding cut off)."""
    model.eval()
    depths, probs = [None] * len(features["lengths"]), [None] * len(features["lengths"])
    for batch in progress(batches(features, batch_size), "tracing"):
        index = batch["index"].tolist()
        out = forward_batch(model, to_device(batch, world.device), selection="threshold", trace=True)
        lengths = batch["lengths"].tolist()
        for row, i in enumerate(index):
            depths[i] = out.depth[row, : lengths[row]].cpu().numpy()
            probs[i] = torch.stack([p[row, : lengths[row]] for p in out.trace_probs]).float().cpu().numpy()
    return depths, probs


def _answers(task, predictions, examples, features, row: int) -> tuple[str, str, bool | None]:
    """Gold and predicted answer of a row as text, and whether they agree."""
    answers = predictions.answers
    if isinstance(answers, list):  # classification: labels
        gold = examples[row][1] if isinstance(examples[row], tuple) else None
        return str(gold), str(answers[row]), gold == answers[row]
    example = examples[int(features["example"][row])] if "example" in features else examples[row]
    gold = " | ".join(getattr(example, "answers", None) or [getattr(example, "answer", "")]) or "(no answer)"
    predicted = answers.get(example.qid, "") if hasattr(example, "qid") else ""
    return gold, predicted or "(no answer)", None


def views(task, model, tokenizer, data, predictions, depths, probs) -> list[ViewExample]:
    features, counter = data.features, FlopsCounter.from_config(model.config)
    special_ids = set(tokenizer.all_special_ids)
    rows = []
    for row, (depth, prob) in enumerate(zip(depths, probs, strict=True)):
        ids = np.asarray(features["input_ids"][row][: len(depth)]).tolist()
        selectors = prob.shape[0]
        kept = [int((depth > w).sum()) for w in range(selectors)]
        gold, predicted, correct = _answers(task, predictions, data.examples, features, row)
        rows.append(
            ViewExample(
                tokens=tokenizer.convert_ids_to_tokens(ids),
                depth=depth.tolist(),
                probs=[[None if np.isnan(v) else float(v) for v in prob[:, t]] for t in range(len(ids))],
                special=[i in special_ids for i in ids],
                gold=gold,
                predicted=predicted,
                kept_fraction=[k / len(ids) for k in kept],
                mflops=mflops(counter.reduced([len(ids)], [[k] for k in kept])),
                full_mflops=mflops(counter.full([len(ids)])),
                correct=correct,
                question=getattr(_example(data, row), "question", None),
                example_id=str(getattr(_example(data, row), "qid", row)),
            )
        )
    return rows


def _example(data, row: int):
    return data.examples[int(data.features["example"][row])] if "example" in data.features else data.examples[row]


def main(args, flags: list[str]) -> Path:
    model_dir, out = Path(args.model_dir), Path(args.output)
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: no model here (config.json missing)")
    if read_manifest(model_dir).get("stage") not in ("train_rl", "train_both", "train_init"):
        raise InputError(f"{model_dir}: its selectors were never trained: the token view needs a TR-BERT checkpoint")
    backbone = read_json(model_dir / "config.json", "model config").get("model_type", "bert")
    auto = "distilautobert" if backbone == "distilbert" else "autobert"
    job = parse_args([*flags, "--model_type", auto, "--model_name_or_path", str(model_dir),
                      "--output_dir", str(model_dir), "--do_eval"], args.family, "trbert show")  # fmt: skip
    if job.family in ("race", "wikihop", "trivia"):
        raise InputError(f"trbert show: the {job.family} family has no token view yet (one row per window or option)")
    task, world = make_task(job), setup(job.run.no_cuda)
    tokenizer = load_tokenizer(job, str(model_dir))
    data = eval_set(job, task, tokenizer)
    model = model_at(job, task, str(model_dir), world)
    config = dataclasses.replace(job.evaluation, per_gpu_eval_batch_size=64)
    report, predictions = evaluate(model, task, data, "threshold", config, job.precision, world)
    depths, probs = trace(model, data.features, world)
    rows = views(task, model, tokenizer, data, predictions, depths, probs)
    most, least = word_keep_rates(rows)
    summary = ViewSummary(
        title=f"TR-BERT on {task.name} ({data.split})",
        metric_name=task.metric,
        metric=float(report[task.metric]),
        kept_fraction=report["kept_fraction"],
        flops_speedup=report["flops_speedup"],
        examples=len(rows),
        most_kept=most,
        least_kept=least,
        selector_layers=selector_layers(model.config),
    )
    write_page(out, render(rows[: args.examples], summary))
    logger.info("wrote %s (%d of %d examples)", out, min(args.examples, len(rows)), len(rows))
    return out
