"""Did the selectors learn? A health report of the keep decisions, and a warning when they did not.

Per selector, over the tokens it scored ([CLS] aside), from the threshold path with a trace:
``distance`` (mean |p - 0.5|; an untrained selector's N(0, 0.02) weights give p near 0.5),
``confident`` (share with p < 0.1 or p > 0.9), ``kept`` (share kept) and, where token scores are at
hand, ``score_gap`` (mean percentile rank of the kept tokens' scores minus the dropped ones': about 0
for a random choice of the same size, up to 0.5 for the highest-scoring). See docs/pipeline.md.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..core.encoder import Trace
from ..core.policy import Threshold
from .data import batches, to_device
from .stages import forward_batch

logger = logging.getLogger(__name__)
UNTRAINED = {"distance": 0.15, "confident": 0.25}  # below both: indistinguishable from a fresh selector


def _percentiles(scores: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 1] of every scored position's score within its row (NaN elsewhere)."""
    rank = np.where(scored, scores, np.inf).argsort(1).argsort(1).astype(np.float64)
    count = scored.sum(1, keepdims=True)
    return np.where(scored, rank / np.maximum(count - 1, 1), np.nan)


@torch.no_grad()
def selector_health(model, features: dict, world, rows: int = 512, batch_size: int = 32) -> list[dict]:
    """Per selector: ``distance``, ``confident``, ``kept`` and, with ``features["guide"]``, ``score_gap``."""
    model.eval()
    sums = None
    for batch in batches(features, batch_size, rows=np.arange(min(rows, len(features["lengths"])))):
        guide, trace = batch.get("guide"), Trace()
        forward_batch(model, to_device(batch, world.device), Threshold(), tracer=trace)
        depth = trace.depth.cpu().numpy().reshape(-1, trace.depth.shape[-1])
        if sums is None:
            sums = [dict(scored=0, distance=0.0, confident=0, kept=0, gap=0.0, gap_rows=0) for _ in trace.probs]
        for w, prob in enumerate(trace.probs):
            p = prob.float().cpu().numpy().reshape(depth.shape)
            scored = ~np.isnan(p)
            scored[:, 0] = False  # [CLS] is always kept
            kept, s = scored & (depth > w), sums[w]
            s["scored"] += int(scored.sum())
            s["distance"] += float(np.abs(p[scored] - 0.5).sum())
            s["confident"] += int(((p[scored] < 0.1) | (p[scored] > 0.9)).sum())
            s["kept"] += int(kept.sum())
            if guide is not None:
                rank = _percentiles(guide[..., w, :].numpy().reshape(depth.shape), scored)
                dropped = scored & ~kept
                both = kept.any(1) & dropped.any(1)
                if both.any():
                    high, low = (np.nanmean(np.where(m, rank, np.nan)[both], 1) for m in (kept, dropped))
                    s["gap"] += float((high - low).sum())
                    s["gap_rows"] += int(both.sum())
    return [_summary(s) for s in sums or []]


def _summary(s: dict) -> dict:
    n = max(s["scored"], 1)
    out = {"distance": s["distance"] / n, "confident": s["confident"] / n, "kept": s["kept"] / n, "tokens": s["scored"]}
    if s["gap_rows"]:
        out["score_gap"] = s["gap"] / s["gap_rows"]
    return out


def looks_untrained(report: list[dict]) -> bool:
    return bool(report) and all(r[k] < limit for r in report for k, limit in UNTRAINED.items())


def warn_if_untrained(report: list[dict], where: str) -> None:
    """Log the report, and a warning when every selector looks like it never moved from its start."""
    for w, r in enumerate(report):
        gap = f", score gap {r['score_gap']:+.3f}" if "score_gap" in r else ""
        logger.info("%s: selector %d: |p - 0.5| %.3f, confident %.1f%%, kept %.1f%%%s", where, w + 1,
                    r["distance"], 100 * r["confident"], 100 * r["kept"], gap)  # fmt: skip
    if looks_untrained(report):
        logger.warning(
            "%s: the selectors look untrained (keep probabilities stay near 0.5: mean |p - 0.5| < %.2f and fewer "
            "than %d%% confident decisions): the choices sampled in RL are close to coin flips and the 0.5 threshold "
            "decides on small differences. Give them more steps, or their own rate with --selector_learning_rate "
            "(1e-3 to 3e-3 worked on small data, see README)",
            where, UNTRAINED["distance"], round(100 * UNTRAINED["confident"]),
        )  # fmt: skip
