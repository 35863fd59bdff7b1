"""The inference passes: ``predict`` (logits, kept counts; ``--do_eval_logits``), ``evaluate`` (metric,
FLOPs, timing) and ``token_scores`` (``--do_eval_grad``). Each rank runs its share of the rows; rank 0
collects the outputs batch by batch into one array in dataset order (for a stage file, memory-mapped).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import EvalConfig, Precision
from ..core.encoder import MASKED, selector_layers
from ..core.flops import FlopsCounter, mflops
from ..core.objective import real_windows
from ..core.policy import BatchUniform
from .data import batches, to_device
from .distributed import World, gather_into, maximum, progress, shard
from .stages import forward_batch


@dataclass
class EvalSet:
    """A split ready to evaluate: its features, its examples (for the answers and the metric)."""

    split: str
    features: dict
    examples: Sequence


@dataclass
class Prediction:
    logits: np.ndarray | None  # [N, C] or [N, (S,) C, T] in dataset order (rank 0; None elsewhere)
    kept: np.ndarray | None  # [selectors, N, (S)] tokens processed after each selector
    seconds: float  # model time of the slowest rank
    path: str  # "unpadded" or "padded"


def quantized(model, how: str):
    """``int8``: the encoder's and head's Linear layers as dynamic int8 (CPU inference); the selectors
    stay float32 so their decisions do not move. ``none``: the model itself."""
    if how == "none":
        return model
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 (dynamic quantisation) runs on the CPU: quantize model.cpu()")
    with warnings.catch_warnings():  # torch.ao.quantization warns that it will move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        linear = {
            n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.startswith("selectors")
        }
        return torch.ao.quantization.quantize_dynamic(model, linear, dtype=torch.qint8)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def output_shape(model, features) -> tuple[int, ...]:
    """Shape of the logits (and teacher logits) of ``features``: ``[N, C]`` or ``[N, (S,) C, T]``."""
    n, windows, width = len(features["lengths"]), features["input_ids"].shape[1:-1], features["input_ids"].shape[-1]
    return (n, *windows, model.num_labels, width) if model.restores_tokens else (n, model.num_labels)


def inference_path(policy, cfg: EvalConfig) -> str:
    """``--inference_path``: auto and unpadded take the unpadded path where the policy runs there."""
    return "unpadded" if (policy is None or policy.packable) and cfg.inference_path != "padded" else "padded"


@torch.no_grad()
def predict(model, features, policy, cfg: EvalConfig, precision: Precision, world: World, out=None):
    """Logits (token-level heads: ``[C, T]`` a row, ``MASKED`` past its length; into ``out`` if given) and
    kept counts of every row in dataset order; ``policy``: a Policy (``for_batch``), None: the full model."""
    model.eval()
    n, num_sel, shape = len(features["lengths"]), len(selector_layers(model.config)), output_shape(model, features)
    if world.is_main and out is None:
        out = np.full(shape, MASKED, dtype=np.float32)
    kept = np.zeros((n, num_sel, *features["input_ids"].shape[1:-1]), dtype=np.int64) if world.is_main else None
    path, seconds = inference_path(policy, cfg), 0.0
    model.attention_kernel = cfg.attention_kernel
    by_length = not isinstance(policy, BatchUniform)  # less padding; only batch-uniform results depend on batches
    for batch in progress(batches(features, cfg.per_gpu_eval_batch_size, by_length, shard(n, world)), "evaluating"):
        index = batch["index"].numpy()
        batch = to_device(batch, world.device)
        chosen = None if policy is None else policy.for_batch(batch)
        _sync(world.device)
        start = time.perf_counter()
        with precision.autocast(world.device):
            result = forward_batch(model, batch, chosen, path=path)
        _sync(world.device)
        seconds += time.perf_counter() - start
        logits = np.full((len(index), *shape[1:]), MASKED, dtype=np.float32)
        logits[..., : result.logits.shape[-1]] = result.logits.float().cpu().numpy()
        gather_into(out, index, logits, world)
        counts = [c.cpu().numpy() for c in result.kept] or [batch["lengths"].cpu().numpy()]
        last = len(counts) - 1  # a selector skipped for lack of tokens keeps the last count
        gather_into(kept, index, np.stack([counts[min(w, last)] for w in range(num_sel)], 1), world)
    kept = None if kept is None else np.moveaxis(kept, 1, 0)
    return Prediction(out, kept, maximum(seconds, world), path)


def evaluate(model, task, data: EvalSet, policy, cfg: EvalConfig, precision: Precision, world: World):
    """The ``--do_eval`` report and the task's predictions (rank 0; ``(None, None)`` elsewhere)."""
    pred = predict(model, data.features, policy, cfg, precision, world)
    return report(model, task, data, pred, policy, cfg, world) if world.is_main else (None, None)


def full_macs(counter: FlopsCounter, lengths) -> np.ndarray:
    """MACs of the full model per example of ``lengths [N]``, or ``[N, S]`` (its real windows together)."""
    lengths = np.asarray(lengths).astype(np.int64)
    macs = counter.full(lengths)
    return macs if lengths.ndim == 1 else (macs * real_windows(lengths)).sum(1)


def report(model, task, data: EvalSet, pred: Prediction, policy, cfg: EvalConfig, world: World):
    """The task's metrics, FLOPs (this model's, the full model's, speed-up), kept fractions, time; predictions."""
    lengths = np.asarray(data.features["lengths"]).astype(np.int64)
    n, flat = len(lengths), lengths.reshape(-1)  # windows of an example (TriviaQA) count together
    real = real_windows(flat) if lengths.ndim > 1 else np.ones(len(flat), dtype=bool)
    kept, counter = pred.kept.reshape(len(pred.kept), -1), FlopsCounter.from_config(model.config)

    def per_example(macs):
        return (macs * real).reshape(n, -1).sum(1)

    reduced, scored = policy is not None, policy is not None and policy.runs_selectors
    full = full_macs(counter, lengths)
    ours = per_example(counter.reduced(flat, kept, selectors=scored)) if reduced else full
    exact = per_example(counter.reduced(flat, kept, True, scored) if reduced else counter.full(flat, True))
    predictions = task.predict(pred.logits, data.features, data.examples)
    result = task.score(predictions, data.examples)
    result.update(
        mflops=mflops(ours),
        full_model_mflops=mflops(full),
        flops_speedup=float(np.sum(full) / np.sum(ours)),
        exact_mflops=mflops(exact),
        kept_fraction=[float(np.mean((k / flat)[real])) for k in kept] if reduced else [],
        selection=policy.name if policy is not None else "off",
        examples=n,
        eval_batch_size=cfg.per_gpu_eval_batch_size,
        ranks=world.size,
        inference_path=pred.path,
        model_seconds=pred.seconds,
        examples_per_second=float(n / max(pred.seconds, 1e-9)),
        split=data.split,
    )
    return result, predictions


def residual_layers(config) -> tuple[int, list[int]]:
    """Reference layer ``r`` and per-selector source layers ``s_w`` of the residual score:
    ``s_w`` = the layer whose output selector ``w`` sees; ``r = 2n // 3`` (8 for BERT-12, 4 for
    DistilBERT-6, as the original), at least one past every ``s_w`` (docs/differences.md N2)."""
    sources = [layer - 1 for layer in selector_layers(config)]
    return max(2 * config.num_hidden_layers // 3, max(sources) + 1), sources


def token_scores(model, task, features, cfg: EvalConfig, precision: Precision, world: World, out=None) -> None:
    """``|<dLoss_i/dH_r, H_r - H_s_w>|`` per token into ``out [N, (S,) selectors, T]`` (rank 0), 0 on
    padding; each row from its own loss (the original differentiated the batch mean: the same
    ranking, scaled by the batch size), so the scores do not depend on batching or ranks."""
    model.eval()
    r, sources = residual_layers(model.config)
    n, width = len(features["lengths"]), features["input_ids"].shape[-1]
    for batch in progress(batches(features, cfg.per_gpu_eval_batch_size, rows=shard(n, world)), "token scores"):
        index = batch["index"].numpy()
        batch = to_device(batch, world.device)
        with precision.autocast(world.device):
            result = forward_batch(model, batch, output_hidden_states=True)
            loss = task.row_loss(result.logits, batch).sum()
        states = result.hidden_states  # [embeddings, layer 0, layer 1, ...]
        (grad,) = torch.autograd.grad(loss, states[r + 1])
        ref = states[r + 1].detach().float()
        rows = torch.stack([(grad.float() * (ref - states[s + 1].detach().float())).sum(-1).abs() for s in sources], 1)
        mask = batch["attention_mask"].flatten(0, -2)  # windows run as rows
        rows = (rows * mask[:, None, :]).view(*batch["input_ids"].shape[:-1], len(sources), -1)
        values = np.zeros((*rows.shape[:-1], width), dtype=np.float32)
        values[..., : rows.shape[-1]] = rows.cpu().numpy()
        gather_into(out, index, values, world)


def score_shape(model, features) -> tuple[int, ...]:
    """Shape of the token scores of ``features``: ``[N, (S,) selectors, T]``."""
    shape = features["input_ids"].shape
    return (*shape[:-1], len(selector_layers(model.config)), shape[-1])
