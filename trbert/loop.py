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
from tqdm.auto import tqdm

from .data import batches, to_device
from .flops import FlopsCounter, mflops
from .model import selector_layers

logger = logging.getLogger(__name__)


def autocast(args, device: torch.device):
    """Mixed precision through ``torch.amp`` (``--fp16`` / ``--bf16``); a no-op otherwise."""
    if not (args.fp16 or args.bf16):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if args.fp16 else torch.bfloat16)


@dataclass
class TrainContext:
    args: object
    total_steps: int
    step: int = 0


def _optimizer(model, trains: str, args):
    """AdamW over the stage's trainable parameters; everything else is frozen (by module, D34)."""
    trainable = model.selector_parameters() if trains == "selectors" else list(model.parameters())
    chosen = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": args.weight_decay},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},  # biases, LayerNorm
    ]
    return torch.optim.AdamW(groups, lr=args.learning_rate, eps=args.adam_epsilon)


def _schedule(optimizer, warmup: int, total: int):
    def factor(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(args, model, task, arrays, stage, device, writer=None, on_save=None) -> int:
    """Train ``model`` for one stage; returns the number of optimizer steps.

    ``on_save(step)`` is called every ``--save_steps`` optimizer steps (step checkpoints)."""
    per_epoch = math.ceil(len(arrays["lengths"]) / args.per_gpu_train_batch_size)
    if args.max_steps > 0:
        total = args.max_steps
        epochs = math.ceil(args.max_steps / max(1, per_epoch // args.gradient_accumulation_steps))
    else:
        total = per_epoch // args.gradient_accumulation_steps * int(args.num_train_epochs)
        epochs = int(args.num_train_epochs)
    total = max(total, 1)
    warmup = args.warmup_steps if args.warmup_steps >= 0 else int(0.1 * total)
    optimizer = _optimizer(model, stage.trains, args)
    scheduler = _schedule(optimizer, warmup, total)
    scaler = torch.amp.GradScaler(device.type, enabled=args.fp16 and device.type == "cuda")
    ctx = TrainContext(args, total)
    logger.info(
        "stage %s: %d examples, %d epochs, %d optimizer steps", stage.name, len(arrays["lengths"]), epochs, total
    )
    model.train()
    sums: dict[str, float] = {}
    for epoch in range(epochs):
        loader = batches(arrays, args.per_gpu_train_batch_size, shuffle_seed=args.seed + epoch)
        for micro, batch in enumerate(tqdm(loader, desc=f"{stage.name} epoch {epoch + 1}/{epochs}", disable=None)):
            with autocast(args, device):
                loss, scalars = stage.step(model, task, to_device(batch, device), ctx)
            scaler.scale(loss / args.gradient_accumulation_steps).backward()
            for name, value in scalars.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            if (micro + 1) % args.gradient_accumulation_steps:
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ctx.step += 1
            if args.logging_steps > 0 and ctx.step % args.logging_steps == 0:
                count = args.logging_steps * args.gradient_accumulation_steps
                means = {k: float(v) / count for k, v in sums.items()}
                sums = {}
                if writer is not None:
                    writer.add_scalar("lr", scheduler.get_last_lr()[0], ctx.step)
                    for name, value in means.items():
                        writer.add_scalar(name, value, ctx.step)
                logger.info("step %d: %s", ctx.step, ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
            if on_save is not None and args.save_steps > 0 and ctx.step % args.save_steps == 0:
                on_save(ctx.step)
            if ctx.step >= total:
                return ctx.step
    return ctx.step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict(args, model, arrays, selection: str, device) -> dict:
    """Logits ``[N, C]`` and kept counts ``[S, N]`` in dataset order, plus the model's wall time."""
    model.eval()
    n, num_sel = len(arrays["lengths"]), len(selector_layers(model.config))
    logits, kept = None, np.zeros((num_sel, n), dtype=np.int64)
    seconds = 0.0
    unpadded = selection in ("off", "threshold") and args.inference_path != "padded"
    options = {"unpadded": True, "attention": args.attention_kernel} if unpadded else {}
    # sorting by length saves padding; results do not depend on batch composition, except in the
    # original's batch-uniform mode, which keeps the dataset order
    loader = batches(arrays, args.per_gpu_eval_batch_size, by_length=selection != "uniform")
    for batch in tqdm(loader, desc="evaluating", disable=None):
        index = batch["index"].numpy()
        batch = to_device(batch, device)
        _sync(device)
        start = time.perf_counter()
        with autocast(args, device):
            out = model(batch["input_ids"], batch["attention_mask"], selection=selection, **options)
        _sync(device)
        seconds += time.perf_counter() - start
        if logits is None:
            logits = np.zeros((n, out.logits.shape[-1]), dtype=np.float32)
        logits[index] = out.logits.float().cpu().numpy()
        counts = [c.cpu().numpy() for c in out.kept]
        for w in range(num_sel):  # a selector skipped for lack of tokens keeps the last count
            kept[w, index] = counts[min(w, len(counts) - 1)] if counts else batch["lengths"].cpu().numpy()
    return {"logits": logits, "kept": kept, "seconds": seconds, "path": "unpadded" if unpadded else "padded"}


def evaluate(args, model, task, arrays, selection: str, device) -> dict:
    """The ``--do_eval`` report: metric, FLOPs of this model and of the full model on the same
    inputs, FLOPs speed-up, mean kept fraction per selection layer, measured time."""
    pred = predict(args, model, arrays, selection, device)
    lengths = arrays["lengths"].astype(np.int64)
    counter = FlopsCounter.from_config(model.config)
    full = counter.full(lengths)
    reduced = counter.reduced(lengths, pred["kept"]) if selection != "off" else full
    exact = (
        counter.reduced(lengths, pred["kept"], exact=True) if selection != "off" else counter.full(lengths, exact=True)
    )
    results = task.score(pred["logits"], arrays["labels"])
    results.update(
        {
            "mflops": mflops(reduced),
            "full_model_mflops": mflops(full),
            "flops_speedup": float(np.sum(full) / np.sum(reduced)),
            "exact_mflops": mflops(exact),
            "kept_fraction": [float(np.mean(k / lengths)) for k in pred["kept"]] if selection != "off" else [],
            "selection": selection,
            "examples": int(len(lengths)),
            "eval_batch_size": args.per_gpu_eval_batch_size,
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


def token_scores(args, model, task, arrays, device) -> np.ndarray:
    """``|<dLoss/dH_r, H_r - H_s_w>|`` per token, ``[N, S, T]`` float32, 0 on padding."""
    model.eval()
    r, sources = residual_layers(model.config)
    n, t = arrays["input_ids"].shape
    scores = np.zeros((n, len(sources), t), dtype=np.float32)
    for batch in tqdm(batches(arrays, args.per_gpu_eval_batch_size), desc="token scores", disable=None):
        index = batch["index"].numpy()
        batch = to_device(batch, device)
        with autocast(args, device):
            out = model(batch["input_ids"], batch["attention_mask"], output_hidden_states=True)
            loss = task.row_loss(out.logits, batch).mean()
        states = out.hidden_states  # [embeddings, layer 0, layer 1, ...]
        (grad,) = torch.autograd.grad(loss, states[r + 1])
        ref = states[r + 1].detach().float()
        rows = torch.stack([(grad.float() * (ref - states[s + 1].detach().float())).sum(-1).abs() for s in sources], 1)
        rows = rows * batch["attention_mask"][:, None, :]
        scores[index, :, : rows.shape[-1]] = rows.cpu().numpy()
    return scores


def teacher_logits(args, model, arrays, device) -> np.ndarray:
    return predict(args, model, arrays, "off", device)["logits"]
