"""The one training loop of every stage: the stage supplies the per-batch loss and what trains;
the loop runs AdamW with linear warm-up over every rank's micro-batches (DDP under torchrun, no
gradient sync until a step's last one), logs, and writes a step checkpoint every ``--save_steps``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from ..config import Precision, TrainConfig
from ..core.seeding import example_seeds
from ..errors import InputError
from ..store.outputs import write_results
from ..store.resume import Position, Saver, restore
from .data import loader_of, to_device
from .distributed import World, barrier, maximum, progress, restore_rng, rng_states, wrap
from .stages import Stage, StepContext

logger = logging.getLogger(__name__)


@dataclass
class Optimization:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    params: list


def parameter_groups(model, trains: str, cfg: TrainConfig) -> list[dict]:
    """AdamW groups of the parameters a stage trains (the rest frozen), backbone and selectors at their
    rates; no weight decay on parameters named like biases or ``LayerNorm.weight``, the original's rule
    by name (so DistilBERT's ``sa_layer_norm`` and ``output_layer_norm`` weights do decay, as there)."""
    backbone_rate, selector_rate = cfg.rates()
    no_decay = {id(p) for n, p in model.named_parameters() if "bias" in n or "LayerNorm.weight" in n}
    selectors = model.selector_parameters()
    chosen = {id(p) for p in selectors}
    backbone = [p for p in model.parameters() if id(p) not in chosen]
    parts = {"backbone": (backbone, backbone_rate), "selectors": (selectors, selector_rate)}
    groups = []
    for params, rate in parts.values() if trains == "all" else [parts[trains]]:
        for decay in (True, False):
            if members := [p for p in params if (id(p) not in no_decay) == decay]:
                groups.append({"params": members, "lr": rate, "weight_decay": cfg.weight_decay if decay else 0.0})
    trainable = {id(p) for g in groups for p in g["params"]}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    return groups


def _optimization(model, trains: str, cfg: TrainConfig, precision: Precision, total: int, device) -> Optimization:
    groups = parameter_groups(model, trains, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, eps=cfg.adam_epsilon)
    warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else int(0.1 * total)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.fp16 and device.type == "cuda")
    return Optimization(optimizer, scheduler, scaler, [p for g in groups for p in g["params"]])


def plan(cfg: TrainConfig, n: int, world: World) -> tuple[int, int, int]:
    """``(global batch, micro-batches an epoch, optimizer steps)``; a global batch: the per-GPU batch on every rank."""
    global_batch = cfg.per_gpu_train_batch_size * world.size
    per_epoch = math.ceil(n / global_batch)
    if per_epoch < cfg.gradient_accumulation_steps:  # (the count restarts each epoch, as the original's)
        raise InputError(f"--gradient_accumulation_steps {cfg.gradient_accumulation_steps}: an epoch has only "
                         f"{per_epoch} batches of {global_batch} rows, so no optimizer step would run")  # fmt: skip
    by_epochs = per_epoch // cfg.gradient_accumulation_steps * int(cfg.num_train_epochs)
    return global_batch, per_epoch, max(cfg.max_steps if cfg.max_steps > 0 else by_epochs, 1)


def epoch_slices(n: int, seed: int, epoch: int, global_batch: int, world: World) -> list[tuple[list[int], float]]:
    """This rank's rows of every global batch of an epoch and their loss weight, ``rows * ranks / global
    rows``: the mean of the ranks' gradients is then that of the global batch's mean loss, also for an
    uneven last batch. A rank with no rows left repeats one row with weight 0."""
    order = np.random.default_rng(seed + epoch).permutation(n)
    slices = []
    for start in range(0, n, global_batch):
        rows = order[start : start + global_batch]
        per_rank = -(-len(rows) // world.size)
        mine = rows[world.rank * per_rank : (world.rank + 1) * per_rank].tolist()
        slices.append((mine or rows[:1].tolist(), len(mine) * world.size / len(rows)))
    return slices


class NonFinite:
    """The first optimizer step whose loss or (without fp16's gradient scaler, which skips such steps itself)
    gradient norm was not finite, kept on the device (no step waits for the host); :meth:`check` raises (a
    collective)."""

    never = 2**62

    def __init__(self, device):
        self.first = torch.full((), self.never, dtype=torch.long, device=device)

    def see(self, value: torch.Tensor, step: int) -> None:
        self.first = torch.where(torch.isfinite(value.detach().float()), self.first, self.first.clamp(max=step))

    def check(self, stage: str, world: World) -> None:
        earliest = -maximum(-float(self.first), world)  # over the ranks
        if earliest < self.never:
            raise InputError(
                f"{stage}: the loss became NaN or infinite at optimizer step {int(earliest) + 1}; the stage stops "
                "and saves nothing of it (lower --learning_rate, check --alpha / --temperature and the stage files)"
            )


def train(model, task, features, stage: Stage, ctx: StepContext, precision: Precision, world: World, saver: Saver,
          writer=None, validation=None, resume: dict | None = None) -> int:  # fmt: skip
    """Train ``model`` for one stage on every rank; returns the number of optimizer steps. ``validation``:
    evaluates each step checkpoint, ``(model, task, precision=, world=) -> (report, predictions)``;
    ``resume``: a state of :func:`trbert.store.resume.read_training_state`, continued exactly."""
    cfg, device, n = ctx.train, world.device, len(features["lengths"])
    global_batch, per_epoch, ctx.total_steps = plan(cfg, n, world)
    run = _optimization(model, stage.trains, cfg, precision, ctx.total_steps, device)
    net = wrap(model, world, unused_parameters=stage.trains != "backbone")
    at = _resume(run, resume, world)
    ctx.step, accumulation = at.step, cfg.gradient_accumulation_steps
    epochs = math.ceil(ctx.total_steps / max(1, per_epoch // accumulation))
    logger.info("stage %s: %d examples, %d ranks, %d epochs, %d optimizer steps", stage.name, n, world.size, epochs, ctx.total_steps)  # fmt: skip
    model.train()
    sums, watch = {}, NonFinite(device)
    for epoch in range(at.epoch, epochs):
        slices, first = epoch_slices(n, cfg.seed, epoch, global_batch, world), at.micro if epoch == at.epoch else 0
        loader = loader_of(features, [rows for rows, _ in slices[first:]])
        for micro, batch in enumerate(progress(loader, f"{stage.name} epoch {epoch + 1}/{epochs}"), start=first):
            batch["seeds"] = example_seeds(cfg.seed, epoch, batch["index"])
            last = (micro + 1) % accumulation == 0
            with contextlib.nullcontext() if last or not world.active else net.no_sync():
                with precision.autocast(device):
                    loss, scalars = stage.step(net, task, to_device(batch, device), ctx)
                run.scaler.scale(loss * slices[micro][1] / accumulation).backward()
            for name, value in scalars.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            watch.see(loss, ctx.step)  # (computed before any scaling: not finite means the model is not)
            if not last:
                continue  # (as the original, a remainder at the end of an epoch joins the next step)
            norm = _optimizer_step(run, cfg)
            if not run.scaler.is_enabled():  # (a scaler skips the steps its scale overflowed)
                watch.see(norm, ctx.step)
            ctx.step += 1
            logs = cfg.logging_steps > 0 and ctx.step % cfg.logging_steps == 0
            saves = cfg.save_steps > 0 and ctx.step % cfg.save_steps == 0
            if logs or saves or ctx.step >= ctx.total_steps:
                watch.check(stage.name, world)
            if logs and world.is_main:
                _log(sums, ctx.step, cfg.logging_steps * accumulation, run.scheduler.get_last_lr()[0], writer)
            if saves:  # resumed at the next micro-batch: the next epoch's first after the last
                at = Position(ctx.step, epoch + (micro + 1) // per_epoch, (micro + 1) % per_epoch)
                _checkpoint(model, task, at, run, saver, validation, precision, world, writer)
            if ctx.step >= ctx.total_steps:
                return ctx.step
    watch.check(stage.name, world)
    return ctx.step


def _resume(run: Optimization, state: dict | None, world: World) -> Position:
    """Where training starts: the beginning, or where a step checkpoint's run stopped."""
    if state is None:
        return Position()
    at = restore(run, state, world.device)
    restore_rng(state["rng"], world)
    logger.info("resumed at step %d (epoch %d, batch %d)", at.step, at.epoch + 1, at.micro)
    return at


def _optimizer_step(run: Optimization, cfg: TrainConfig) -> torch.Tensor:
    """Unscale, clip, step, schedule; returns the gradient norm before clipping."""
    run.scaler.unscale_(run.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return norm


def _log(sums: dict, step: int, count: int, lr: float, writer) -> None:
    means = {k: float(v) / count for k, v in sums.items()}
    sums.clear()  # summed anew until the next log
    if writer is not None:
        for name, value in {"lr": lr, **means}.items():
            writer.add_scalar(name, value, step)
    logger.info("step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in means.items()))


def _checkpoint(model, task, at: Position, run, saver, validation, precision, world, writer) -> None:
    """A step checkpoint (rank 0 writes it) and its evaluation, if any: results next to it and in TensorBoard."""
    rng = rng_states(world)  # a collective: every rank's states go into the checkpoint
    path = saver.step(model, at, run, rng, world.size) if world.is_main else saver.path(at.step)
    barrier(world)
    if validation is None:
        return
    report, predictions = validation(model, task, precision=precision, world=world)
    if world.is_main:
        write_results(path, {**report, "checkpoint": str(path)}, predictions)
        for key in (task.metric, "mflops", "flops_speedup"):
            if writer is not None and isinstance(report.get(key), float):
                writer.add_scalar(f"eval/{key}", report[key], at.step)
    model.train()
