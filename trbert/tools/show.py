"""``python -m trbert show``: the token view of a trained TR-BERT model on a split — the part that
runs the model: every row once through the threshold policy with a :class:`Trace` (how far each
token went, its keep probabilities), the split's ``--do_eval`` report for the summary, and the
rows handed to :mod:`.tokenview`, which draws the page."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import option
from ..core.encoder import Trace, selector_layers
from ..core.flops import FlopsCounter, mflops
from ..core.policy import Threshold
from ..errors import InputError
from ..store.checkpoint import REDUCTION_TYPE, TRAINED_SELECTORS, backbone_of, read_manifest
from ..tasks import family
from ..tasks.span import token_span
from ..train.cli import RUN_FLAGS, parse_args
from ..train.data import batches, to_device
from ..train.distributed import progress, setup
from ..train.inference import evaluate
from ..train.pipeline import eval_set, load_tokenizer, make_task, model_at
from ..train.stages import forward_batch
from . import ModelCommand
from .tokenview import ViewExample, ViewSummary, render, word_keep_rates, write_page

logger = logging.getLogger(__name__)


@torch.no_grad()
def trace(model, features: dict, world, batch_size: int = 32) -> tuple[list, list]:
    """Per row ``(depth [T], probs [selectors, T])`` of every token (padding cut off)."""
    model.eval()
    depths, probs = [None] * len(features["lengths"]), [None] * len(features["lengths"])
    for batch in progress(batches(features, batch_size), "tracing"):
        trace = Trace()
        forward_batch(model, to_device(batch, world.device), Threshold(), tracer=trace)
        depth = trace.depth.cpu().numpy()
        prob = torch.stack(trace.probs, 1).float().cpu().numpy()  # [B, selectors, T]
        for row, (i, length) in enumerate(zip(batch["index"].tolist(), batch["lengths"].tolist(), strict=True)):
            depths[i], probs[i] = depth[row, :length], prob[row, :, :length]
    return depths, probs


def _answers(predictions, example, row: int) -> tuple[str, str, bool | None]:
    """Gold and predicted answer of a row as text, and whether they agree."""
    answers = predictions.answers
    if isinstance(answers, list):  # classification: labels
        gold = example[1] if isinstance(example, tuple) else None
        return str(gold), str(answers[row]), gold == answers[row]
    if isinstance(answers.get("answer"), dict):  # HotpotQA: answers and supporting facts
        answers = answers["answer"]
    gold = " | ".join(_gold_texts(example)) or "(no answer)"
    predicted = answers.get(example.qid, "") if hasattr(example, "qid") else ""
    return gold, predicted or "(no answer)", None


def _gold_texts(example) -> list[str]:
    return [a for a in (getattr(example, "answers", None) or [getattr(example, "answer", "")]) if a]


def _spans(features: dict, row: int, example, predicted: str):
    """Token spans ``(s, e)`` of the first gold answer and of the prediction in a span-QA row: their
    first occurrence in the row's window of the context, or None (not in this window, or no answer)."""
    context = getattr(example, "context", None)
    if "offsets" not in features or not isinstance(context, str):
        return None, None
    offsets = np.asarray(features["offsets"][row])
    inside = np.flatnonzero(offsets[:, 0] >= 0).tolist()

    def locate(text: str):
        at = context.find(text, int(offsets[inside[0], 0])) if text and inside else -1
        return token_span(offsets, inside, (at, at + len(text))) if at >= 0 else None

    golds = _gold_texts(example)
    return locate(golds[0] if golds else ""), locate(predicted if predicted != "(no answer)" else "")


def views(model, tokenizer, data, predictions, depths, probs) -> list[ViewExample]:
    features, counter = data.features, FlopsCounter.from_config(model.config)
    special_ids = set(tokenizer.all_special_ids)
    rows = []
    for row, (depth, prob) in enumerate(zip(depths, probs, strict=True)):
        ids = np.asarray(features["input_ids"][row][: len(depth)]).tolist()
        selectors = prob.shape[0]
        kept = [int((depth > w).sum()) for w in range(selectors)]
        example = _example(data, row)
        gold, predicted, correct = _answers(predictions, example, row)
        gold_span, predicted_span = _spans(features, row, example, predicted)
        tokens, n = tokenizer.convert_ids_to_tokens(ids), len(ids)
        costs = counter.reduced([n], [[k] for k in kept])
        probs_of = [[None if np.isnan(v) else float(v) for v in prob[:, t]] for t in range(n)]
        rows.append(ViewExample(tokens, depth.tolist(), probs_of, [i in special_ids for i in ids], gold, predicted,
                                [k / n for k in kept], mflops(costs), mflops(counter.full([n])), correct=correct,
                                question=getattr(example, "question", None), gold_span=gold_span,
                                predicted_span=predicted_span, example_id=str(getattr(example, "qid", row))))  # fmt: skip
    return rows


def _example(data, row: int):
    return data.examples[int(data.features["example"][row])] if "example" in data.features else data.examples[row]


@dataclass
class ShowOptions(ModelCommand):
    """``python -m trbert show``'s own flags (``--model_dir``: a TR-BERT model with trained selectors);
    the entry script's flags (task, data, length...) follow."""

    output: str = option(help="the HTML page to write", required=True)
    examples: int = option(50, "examples shown (the summary covers the whole split)")


def main(opts: ShowOptions, rest: list[str]) -> Path:
    """Check the command, parse the entry script's flags once, write the page."""
    model_dir, out = Path(opts.model_dir), Path(opts.output)
    if not family(opts.family).view:
        raise InputError(f"trbert show: the {opts.family} family has no token view (several rows per example)")
    if opts.examples < 1:
        raise InputError(f"trbert show: --examples {opts.examples}: show at least 1")
    if out.is_dir():
        raise InputError(f"{out}: a folder; --output names the HTML file to write")
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: no model here (config.json missing)")
    if read_manifest(model_dir).get("stage") not in TRAINED_SELECTORS:
        raise InputError(f"{model_dir}: its selectors were never trained: the token view needs a TR-BERT checkpoint")
    auto = REDUCTION_TYPE[backbone_of(model_dir)]
    given = dict(model_type=auto, model_name_or_path=str(model_dir), output_dir=str(model_dir), do_eval=True)
    return page(parse_args(rest, opts.family, "trbert show", given=given, reserved=RUN_FLAGS), out, opts.examples)


def page(job, out: Path, examples: int) -> Path:
    """The token view of ``job``'s model (its ``--output_dir``) on its evaluation split, ``examples`` shown."""
    model_dir = job.run.output_dir
    task, world = make_task(job), setup(job.run.no_cuda)
    tokenizer = load_tokenizer(job, model_dir)
    data = eval_set(job, task, tokenizer)
    model = model_at(job, task, model_dir, world, tokenizer)
    config = dataclasses.replace(job.evaluation, per_gpu_eval_batch_size=64)
    report, predictions = evaluate(model, task, data, Threshold(), config, job.precision, world)
    depths, probs = trace(model, data.features, world)
    rows = views(model, tokenizer, data, predictions, depths, probs)
    most, least = word_keep_rates(rows)
    summary = ViewSummary(title=f"TR-BERT on {task.name} ({data.split})", metric_name=task.metric,
                          metric=float(report[task.metric]), kept_fraction=report["kept_fraction"],
                          flops_speedup=report["flops_speedup"], examples=len(rows), most_kept=most,
                          least_kept=least, selector_layers=selector_layers(model.config))  # fmt: skip
    write_page(out, render(rows[:examples], summary))
    logger.info("wrote %s (%d of %d examples)", out, min(examples, len(rows)), len(rows))
    return out
