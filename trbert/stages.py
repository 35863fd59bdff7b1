"""The pipeline as data: per stage, what trains, with which loss, and which files go in and out.

What this file is: one table (``STAGES``) and the per-batch loss of each training stage. The
loop (:mod:`trbert.loop`) never branches on stage flags; it asks the stage.

| stage       | flags                              | model types | trains    | reads                   | writes                          |
|-------------|------------------------------------|-------------|-----------|-------------------------|---------------------------------|
| finetune    | --do_train                         | bert        | all       | -                       | checkpoint (output_dir)         |
| eval_grad   | --do_eval_grad                     | bert        | -         | checkpoint (output_dir) | output_dir/token_scores.npy     |
| train_init  | --do_train --train_init            | initbert    | selectors | token_ranks.npy         | checkpoint                      |
| train_rl    | --do_train --train_rl              | autobert    | selectors | token_scores.npy        | checkpoint                      |
| eval_logits | --do_eval_logits                   | bert        | -         | checkpoint (output_dir) | output_dir/teacher_logits.npy   |
| train_both  | --do_train --train_both [--train_teacher] | autobert | all   | teacher_logits.npy      | checkpoint                      |
| eval        | --do_eval                          | any         | -         | checkpoint(s)           | <checkpoint>/eval_results.json  |

(``bert`` stands for ``bert``/``distilbert`` and so on.) Stage files are looked up next to
``--model_name_or_path`` and then next to the fine-tuned baseline it descends from, unless a
path is given (``--score_path``, ``--teacher_npy_path``, ``--rank_path``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import real_windows
from .objective import REPLICAS, guided_rows, init_loss, length_fraction, reinforce_loss, rewards
from .seeding import combine


@dataclass(frozen=True)
class Artifact:
    key: str  # name of the per-row array in the features
    filename: str
    made_by: str
    path_flag: str


SCORES = Artifact("guide", "token_scores.npy", "--do_eval_grad on the fine-tuned model", "score_path")
TEACHER = Artifact("teacher", "teacher_logits.npy", "--do_eval_logits on the fine-tuned model", "teacher_npy_path")
RANKS = Artifact("ranks", "token_ranks.npy", "trans_imdb_rank.py (after --do_eval_grad)", "rank_path")


def forward_batch(model, batch, **kwargs):
    """The model on a batch: token types, the head's extra inputs, and the per-example ``seeds``
    of its sampling and seeded dropout (training) when the batch has them."""
    if model.head_inputs:
        kwargs["head_inputs"] = {k: batch[k] for k in model.head_inputs}
    if "seeds" in batch:
        kwargs["seeds"] = batch["seeds"]
    return model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), **kwargs)


def finetune_step(model, task, batch, ctx):
    loss = task.row_loss(forward_batch(model, batch).logits, batch).mean()
    return loss, {"loss": loss}


def _replicate(batch: dict) -> dict:
    """``REPLICAS`` copies of every row, replica-major; each copy gets its own seed."""
    rows = {k: v.repeat(REPLICAS, *([1] * (v.dim() - 1))) for k, v in batch.items()}
    if "seeds" in rows:
        replica = torch.arange(REPLICAS, device=rows["seeds"].device).repeat_interleave(len(batch["seeds"]))
        rows["seeds"] = combine(rows["seeds"], replica)
    return rows


def reinforce_step(model, task, batch, ctx, joint: bool):
    """K sampled selections per example; reward = -loss - alpha * kept fraction (spec §3)."""
    args, rows = ctx.args, _replicate(batch)
    guiding = not joint and ctx.step < args.guide_rate * ctx.total_steps
    guide = rows.get("guide")
    chosen = guided_rows(len(batch["index"]), guiding, device=rows["input_ids"].device) if guide is not None else None
    out = forward_batch(model, rows, selection="sample", guide=guide, guided_rows=chosen)
    task_loss = task.row_loss(out.logits, rows, teacher=joint and args.train_teacher, temperature=args.temperature)
    denominator = args.max_seq_length if args.length_penalty == "padded" else rows["lengths"].float()
    real = real_windows(rows["lengths"]) if rows["lengths"].dim() == 2 else None  # windows of one example
    length = length_fraction(out.kept, denominator, real) if out.kept else torch.zeros_like(task_loss)
    reward = rewards(task_loss, length, args.alpha)
    selector_loss = reinforce_loss(reward, out.select_nll)
    loss = task_loss.mean() + args.beta * selector_loss if joint else selector_loss
    return loss, {
        "loss": task_loss.mean(),
        "selector_loss": selector_loss,
        "dL": length.mean(),
        "reward": reward.mean(),
    }


def init_step(model, task, batch, ctx):
    out = forward_batch(model, batch, selection="probe")
    loss = init_loss(out.probs, batch["ranks"], batch["attention_mask"])
    return loss, {"loss": loss}


@dataclass(frozen=True)
class Stage:
    name: str
    kinds: tuple[str, ...]  # accepted --model_type kinds: "plain", "auto", "init"
    trains: str | None = None  # "all" or "selectors"
    reads: tuple[Artifact, ...] = ()
    step: object = None  # per-batch loss: (model, task, batch, ctx) -> (loss, scalars)


STAGES = {
    "finetune": Stage("finetune", ("plain",), "all", (), finetune_step),
    "train_init": Stage("train_init", ("init",), "selectors", (RANKS,), init_step),
    "train_rl": Stage("train_rl", ("auto",), "selectors", (SCORES,), lambda *a: reinforce_step(*a, joint=False)),
    "train_both": Stage("train_both", ("auto",), "all", (TEACHER,), lambda *a: reinforce_step(*a, joint=True)),
    "eval_grad": Stage("eval_grad", ("plain",)),
    "eval_logits": Stage("eval_logits", ("plain",)),
    "eval": Stage("eval", ("plain", "auto", "init")),
}


def model_kind(model_type: str) -> str:
    return "auto" if "auto" in model_type else "init" if model_type.startswith("init") else "plain"


def training_stage(args) -> Stage:
    """Which stage ``--do_train`` runs: train_both > train_rl > train_init > finetune (as the original)."""
    for name in ("train_both", "train_rl", "train_init"):
        if getattr(args, name):
            return STAGES[name]
    return STAGES["finetune"]


def needed_artifacts(stage: Stage, args) -> tuple[Artifact, ...]:
    """Stage files this run needs: scores only while guiding, teacher logits only for distillation."""
    if stage.name == "train_rl" and args.guide_rate <= 0:
        return ()
    if stage.name == "train_both" and not args.train_teacher:
        return ()
    return stage.reads
