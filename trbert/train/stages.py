"""The pipeline as data: per stage, what trains, with which loss, and which files go in and out.

One table (``STAGES``; docs/pipeline.md has it in words) and the per-batch loss of each training
stage; the loop never branches on stage flags, it asks the stage. Stage files are looked up next to
the starting checkpoint, then next to the fine-tuned baseline it descends from, unless a path is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from ..config import MODEL_TYPES, ReductionConfig, TrainConfig
from ..core import objective
from ..core.encoder import Trace
from ..core.objective import REPLICAS
from ..core.policy import Probe, Sample
from ..core.seeding import combine


@dataclass(frozen=True)
class Artifact:
    key: str  # name of the per-row array in the features
    filename: str
    made_by: str
    path_flag: str


SCORES = Artifact("guide", "token_scores.npy", "--do_eval_grad on the fine-tuned model", "score_path")
TEACHER = Artifact("teacher", "teacher_logits.npy", "--do_eval_logits on the fine-tuned model", "teacher_npy_path")
RANKS = Artifact("ranks", "token_ranks.npy", "trans_imdb_rank.py (after --do_eval_grad)", "rank_path")


def kind_of(model_type: str) -> str:
    """``plain`` (bert, distilbert), ``auto`` (TR-BERT) or ``init`` (selector warm start)."""
    return "auto" if "auto" in model_type else "init" if model_type.startswith("init") else "plain"


@dataclass
class StepContext:
    """What a stage's step reads besides the batch: the configs, the padded length, the step count."""

    train: TrainConfig
    reduction: ReductionConfig
    max_length: int
    total_steps: int
    step: int = 0


def forward_batch(model, batch, policy=None, **kwargs):
    """The model on a batch with ``policy`` (None: the stock forward), with the batch's token types, head
    inputs and seeded-dropout ``seeds`` where it has them; ``model`` may be wrapped in DDP (``module``)."""
    if head_inputs := getattr(model, "module", model).head_inputs:
        kwargs["head_inputs"] = {k: batch[k] for k in head_inputs}
    if "seeds" in batch:
        kwargs["seeds"] = batch["seeds"]
    return model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), policy=policy, **kwargs)


def finetune_step(model, task, batch, ctx: StepContext):
    loss = task.row_loss(forward_batch(model, batch).logits, batch).mean()
    return loss, {"loss": loss}


def _replicate(batch: dict) -> dict:
    """``REPLICAS`` copies of every row, replica-major; each copy gets its own seed."""
    rows = {k: v.repeat(REPLICAS, *([1] * (v.dim() - 1))) for k, v in batch.items()}
    if "seeds" in rows:
        replica = torch.arange(REPLICAS, device=rows["seeds"].device).repeat_interleave(len(batch["seeds"]))
        rows["seeds"] = combine(rows["seeds"], replica)
    return rows


def reinforce_step(model, task, batch, ctx: StepContext, joint: bool):
    """K sampled selections per example; reward = -loss - alpha * kept fraction."""
    cfg, rows = ctx.reduction, _replicate(batch)
    guide, chosen = rows.get("guide"), None
    if guide is not None:
        guiding = not joint and ctx.step < cfg.guide_rate * ctx.total_steps
        chosen = objective.guided_rows(len(batch["index"]), guiding, device=rows["input_ids"].device)
    out = forward_batch(model, rows, Sample(rows["seeds"], guide, chosen))
    if joint and cfg.train_teacher:  # per-row loss: distillation from the teacher's logits, or the task's own
        teacher = task.logit_groups(rows["teacher"], rows)
        loss = objective.distillation(task.logit_groups(out.logits, rows), teacher, cfg.temperature)
    else:
        loss = task.row_loss(out.logits, rows)
    denominator = ctx.max_length if cfg.length_penalty == "padded" else rows["lengths"].float()
    real = objective.real_windows(rows["lengths"]) if rows["lengths"].dim() == 2 else None  # windows of one example
    length = objective.length_fraction(out.kept, denominator, real) if out.kept else torch.zeros_like(loss)
    reward = objective.rewards(loss, length, cfg.alpha)
    selector_loss = objective.reinforce_loss(reward, out.select_nll)
    total = loss.mean() + cfg.beta * selector_loss if joint else selector_loss
    return total, {"loss": loss.mean(), "selector_loss": selector_loss, "dL": length.mean(), "reward": reward.mean()}


def init_step(model, task, batch, ctx: StepContext):
    trace = Trace()
    forward_batch(model, batch, Probe(), tracer=trace)
    loss = objective.init_loss(trace.probs, batch["ranks"], objective.init_mask(batch))
    return loss, {"loss": loss}


@dataclass(frozen=True)
class Stage:
    name: str
    kinds: tuple[str, ...]  # accepted --model_type kinds: "plain", "auto", "init"
    trains: str | None = None  # "backbone" (all but the selectors), "selectors" or "all"
    reads: tuple[Artifact, ...] = ()
    step: object = None  # per-batch loss: (model, task, batch, ctx) -> (loss, scalars)

    def model_types(self) -> list[str]:
        return [t for t in MODEL_TYPES if kind_of(t) in self.kinds]

    def needs(self, reduction: ReductionConfig) -> tuple[Artifact, ...]:
        """Stage files this run needs: scores only while guiding, teacher logits only for distillation."""
        unused = {"train_rl": reduction.guide_rate <= 0, "train_both": not reduction.train_teacher}
        return () if unused.get(self.name) else self.reads


STAGES = {
    "finetune": Stage("finetune", ("plain",), "backbone", (), finetune_step),
    "train_init": Stage("train_init", ("init",), "selectors", (RANKS,), init_step),
    "train_rl": Stage("train_rl", ("auto",), "selectors", (SCORES,), partial(reinforce_step, joint=False)),
    "train_both": Stage("train_both", ("auto",), "all", (TEACHER,), partial(reinforce_step, joint=True)),
    "eval_grad": Stage("eval_grad", ("plain",)),
    "eval_logits": Stage("eval_logits", ("plain",)),
    "eval": Stage("eval", ("plain", "auto", "init")),
}
