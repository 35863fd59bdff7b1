"""The one training loop and the inference passes every stage uses.

What this file is: ``train`` (any training stage: the stage supplies the per-batch loss and
which parameters train), ``predict`` (a no-grad pass collecting logits and kept counts),
``evaluate`` (metric + FLOPs + timing report), ``token_scores`` (the gradient residual
importance of ``--do_eval_grad``) and ``teacher_logits`` (``--do_eval_logits``).
Not here: argument parsing, file formats (see :mod:`trbert.cli`, :mod:`trbert.checkpoint`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .data import batches, loader_of, real_windows, to_device
from .distributed import World, gather_rows, maximum, mean_gradients, progress, restore_rng, shard
from .flops import FlopsCounter, mflops
from .model import MASKED, selector_layers
from .resume import Position, restore
from .seeding import example_seeds
from .stages import forward_batch

logger = logging.getLogger(__name__)


def autocast(args, device: torch.device):
    """Mixed precision through ``torch.amp`` (``--fp16`` / ``--bf16``); a no-op otherwise."""
    if not (args.fp16 or args.bf16):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if args.fp16 else torch.bfloat16)


@dataclass
class TrainContext:
    """What a stage's step may read: the arguments, the step count and the planned total."""

    args: object
    total_steps: int
    step: int = 0


@dataclass
class Optimization:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    params: list


def _optimization(model, trains: str, args, total: int, device) -> Optimization:
    """AdamW over the stage's trainable parameters (everything else frozen, by module, D34),
    linear warm-up and decay, and the fp16 gradient scaler (CUDA only)."""
    trainable = model.selector_parameters() if trains == "selectors" else list(model.parameters())
    chosen = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": args.weight_decay},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},  # biases, LayerNorm
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, eps=args.adam_epsilon)
    warmup = args.warmup_steps if args.warmup_steps >= 0 else int(0.1 * total)

    def factor(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler(device.type, enabled=args.fp16 and device.type == "cuda")
    return Optimization(optimizer, scheduler, scaler, trainable)


def _plan(args, n: int, world: World) -> tuple[int, int, int]:
    """``(global batch, micro-batches per epoch, optimizer steps in all)``; a global batch is
    ``--per_gpu_train_batch_size`` rows on each rank."""
    global_batch = args.per_gpu_train_batch_size * world.size
    per_epoch = math.ceil(n / global_batch)
    if args.max_steps > 0:
        total = args.max_steps
    else:
        total = per_epoch // args.gradient_accumulation_steps * int(args.num_train_epochs)
    return global_batch, per_epoch, max(total, 1)


def _epoch_slices(n: int, seed: int, epoch: int, global_batch: int, world: World) -> list[tuple[list[int], float]]:
    """This rank's rows of every global batch of an epoch, each with its loss weight.

    The loss of a slice is a mean over its rows; weighting it by ``rows * ranks / global rows``
    makes the mean of the ranks' gradients the gradient of the global batch's mean, also for an
    uneven last batch. A rank with no rows left repeats one row with weight 0."""
    order = np.random.default_rng(seed + epoch).permutation(n)
    slices = []
    for start in range(0, n, global_batch):
        rows = order[start : start + global_batch]
        per_rank = -(-len(rows) // world.size)
        mine = rows[world.rank * per_rank : (world.rank + 1) * per_rank].tolist()
        weight = len(mine) * world.size / len(rows)
        slices.append((mine or rows[:1].tolist(), weight))
    return slices


def train(args, model, task, arrays, stage, world: World, writer=None, on_save=None, resume=None) -> int:
    """Train ``model`` for one stage on every rank; returns the number of optimizer steps.

    ``on_save(position, optimization)`` runs every ``--save_steps`` optimizer steps; ``resume``
    (a state read by :func:`trbert.resume.read_training_state`) continues a run exactly."""
    device = world.device
    n = len(arrays["lengths"])
    global_batch, per_epoch, total = _plan(args, n, world)
    run = _optimization(model, stage.trains, args, total, device)
    at = Position()
    if resume is not None:
        at = restore(run, resume, device)
        restore_rng(resume["rng"], world)
        logger.info("resumed at step %d (epoch %d, batch %d)", at.step, at.epoch + 1, at.micro)
    ctx = TrainContext(args, total, at.step)
    accumulation = args.gradient_accumulation_steps
    epochs = math.ceil(total / max(1, per_epoch // accumulation))
    logger.info(
        "stage %s: %d examples, %d ranks, %d epochs, %d optimizer steps", stage.name, n, world.size, epochs, total
    )
    model.train()
    sums: dict[str, float] = {}
    for epoch in range(at.epoch, epochs):
        slices = _epoch_slices(n, args.seed, epoch, global_batch, world)
        first = at.micro if epoch == at.epoch else 0
        loader = loader_of(arrays, [rows for rows, _ in slices[first:]])
        bar = progress(loader, f"{stage.name} epoch {epoch + 1}/{epochs}")
        for micro, batch in enumerate(bar, start=first):
            batch["seeds"] = example_seeds(args.seed, epoch, batch["index"])
            with autocast(args, device):
                loss, scalars = stage.step(model, task, to_device(batch, device), ctx)
            run.scaler.scale(loss * slices[micro][1] / accumulation).backward()
            for name, value in scalars.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            if (micro + 1) % accumulation:
                continue  # (as the original, a remainder at the end of an epoch joins the next step)
            _optimizer_step(run, args, world)
            ctx.step += 1
            if args.logging_steps > 0 and ctx.step % args.logging_steps == 0 and world.is_main:
                _log(sums, ctx.step, args.logging_steps * accumulation, run.scheduler.get_last_lr()[0], writer)
                sums = {}
            if on_save is not None and args.save_steps > 0 and ctx.step % args.save_steps == 0:
                done = micro + 1 == per_epoch
                on_save(Position(ctx.step, epoch + done, 0 if done else micro + 1), run)
            if ctx.step >= total:
                return ctx.step
    return ctx.step


def _optimizer_step(run: Optimization, args, world: World) -> None:
    run.scaler.unscale_(run.optimizer)
    mean_gradients(run.params, world)
    torch.nn.utils.clip_grad_norm_(run.params, args.max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)


def _log(sums: dict, step: int, count: int, lr: float, writer) -> None:
    means = {k: float(v) / count for k, v in sums.items()}
    if writer is not None:
        writer.add_scalar("lr", lr, step)
        for name, value in means.items():
            writer.add_scalar(name, value, step)
    logger.info("step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in means.items()))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predict(args, model, arrays, selection: str, world: World) -> dict:
    """Logits (``[N, C]``, or ``[N, (windows,) C, T]`` for token-level heads) and kept counts
    ``[selectors, N, (windows)]`` in dataset order, plus the model's wall time (the slowest rank's:
    each rank runs its share of the rows)."""
    local = _predict_rows(args, model, shard(arrays, world), selection, world.device)
    n = len(arrays["lengths"])
    local["logits"] = gather_rows(local["logits"], n, world)
    local["kept"] = np.moveaxis(gather_rows(np.moveaxis(local["kept"], 0, 1), n, world), 0, 1)
    local["seconds"] = maximum(local["seconds"], world)
    return local


@torch.no_grad()
def _predict_rows(args, model, arrays, selection: str, device) -> dict:
    model.eval()
    n, num_sel = len(arrays["lengths"]), len(selector_layers(model.config))
    windows, width = arrays["input_ids"].shape[1:-1], arrays["input_ids"].shape[-1]  # windows: () or (S,)
    # token-level heads give [2, T] per row (trimmed batches: the rest stays masked)
    shape = (n, *windows, model.num_labels, width) if model.restores_tokens else (n, model.num_labels)
    logits = np.full(shape, MASKED, dtype=np.float32)
    kept = np.zeros((num_sel, n, *windows), dtype=np.int64)
    seconds = 0.0
    unpadded = selection in ("off", "threshold") and args.inference_path != "padded" and model.supports_unpadded
    options = {"unpadded": True, "attention": args.attention_kernel} if unpadded else {}
    # sorting by length saves padding; results do not depend on batch composition, except in the
    # original's batch-uniform mode, which keeps the dataset order
    loader = batches(arrays, args.per_gpu_eval_batch_size, by_length=selection != "uniform")
    for batch in progress(loader, "evaluating"):
        index = batch["index"].numpy()
        batch = to_device(batch, device)
        _sync(device)
        start = time.perf_counter()
        with autocast(args, device):
            out = forward_batch(model, batch, selection=selection, **options)
        _sync(device)
        seconds += time.perf_counter() - start
        logits[index, ..., : out.logits.shape[-1]] = out.logits.float().cpu().numpy()
        counts = [c.cpu().numpy() for c in out.kept]
        for w in range(num_sel):  # a selector skipped for lack of tokens keeps the last count
            kept[w, index] = counts[min(w, len(counts) - 1)] if counts else batch["lengths"].cpu().numpy()
    return {"logits": logits, "kept": kept, "seconds": seconds, "path": "unpadded" if unpadded else "padded"}


def evaluate(args, model, task, arrays, selection: str, world: World, split: str = "dev") -> dict:
    """The ``--do_eval`` report: metric, FLOPs of this model and of the full model on the same
    inputs, FLOPs speed-up, mean kept fraction per selection layer, measured time."""
    pred = predict(args, model, arrays, selection, world)
    lengths = arrays["lengths"].astype(np.int64)
    n, flat = len(lengths), lengths.reshape(-1)  # windows of an example (TriviaQA) count together
    real = real_windows(flat) if lengths.ndim > 1 else np.ones(len(flat), dtype=bool)
    kept = pred["kept"].reshape(len(pred["kept"]), -1)
    counter = FlopsCounter.from_config(model.config)

    def per_example(macs):
        return (macs * real).reshape(n, -1).sum(1)

    full = per_example(counter.full(flat))
    reduced = per_example(counter.reduced(flat, kept)) if selection != "off" else full
    exact = per_example(counter.reduced(flat, kept, exact=True) if selection != "off" else counter.full(flat, True))
    results = task.score(pred["logits"], arrays, args.data_dir, split)
    results.update(
        {
            "mflops": mflops(reduced),
            "full_model_mflops": mflops(full),
            "flops_speedup": float(np.sum(full) / np.sum(reduced)),
            "exact_mflops": mflops(exact),
            "kept_fraction": [float(np.mean((k / flat)[real])) for k in kept] if selection != "off" else [],
            "selection": selection,
            "examples": int(len(lengths)),
            "eval_batch_size": args.per_gpu_eval_batch_size,
            "ranks": world.size,
            "inference_path": pred["path"],
            "model_seconds": pred["seconds"],
            "examples_per_second": float(len(lengths) / max(pred["seconds"], 1e-9)),
        }
    )
    return results


def residual_layers(config) -> tuple[int, list[int]]:
    """Reference layer ``r`` and per-selector source layers ``s_w`` of the residual score (spec
    §5.1): ``s_w`` = the layer whose output selector ``w`` sees; ``r = 2n // 3`` (8 for BERT-12,
    4 for DistilBERT-6), at least one past every ``s_w``."""
    sources = [layer - 1 for layer in selector_layers(config)]
    return max(2 * config.num_hidden_layers // 3, max(sources) + 1), sources


def token_scores(args, model, task, arrays, world: World) -> np.ndarray:
    """``|<dLoss_i/dH_r, H_r - H_s_w>|`` per token, ``[N, S, T]`` float32, 0 on padding; each row
    from its own loss (the original differentiated the batch mean: the same ranking, scaled by
    the batch size), so the scores do not depend on batching or the number of ranks."""
    n = len(arrays["lengths"])
    return gather_rows(_token_scores(args, model, task, shard(arrays, world), world.device), n, world)


def _token_scores(args, model, task, arrays, device) -> np.ndarray:
    model.eval()
    r, sources = residual_layers(model.config)
    n, windows, t = len(arrays["lengths"]), arrays["input_ids"].shape[1:-1], arrays["input_ids"].shape[-1]
    scores = np.zeros((n, *windows, len(sources), t), dtype=np.float32)
    for batch in progress(batches(arrays, args.per_gpu_eval_batch_size), "token scores"):
        index = batch["index"].numpy()
        batch = to_device(batch, device)
        with autocast(args, device):
            out = forward_batch(model, batch, output_hidden_states=True)
            loss = task.row_loss(out.logits, batch).sum()
        states = out.hidden_states  # [embeddings, layer 0, layer 1, ...]
        (grad,) = torch.autograd.grad(loss, states[r + 1])
        ref = states[r + 1].detach().float()
        rows = torch.stack([(grad.float() * (ref - states[s + 1].detach().float())).sum(-1).abs() for s in sources], 1)
        mask = batch["attention_mask"].flatten(0, -2)  # windows run as rows
        rows = (rows * mask[:, None, :]).view(*batch["input_ids"].shape[:-1], len(sources), -1)
        scores[index, ..., : rows.shape[-1]] = rows.cpu().numpy()
    return scores


def teacher_logits(args, model, arrays, world: World) -> np.ndarray:
    return predict(args, model, arrays, "off", world)["logits"]
