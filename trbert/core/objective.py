"""Losses: per-row task losses, distillation, the REINFORCE objective, the selector warm start; pure functions on
tensors, nothing here runs a model. Rows of an RL batch are laid out replica-major (row ``j * B + i`` is replica ``j``
of example ``i``, the original's ``cat([batch] * 8)``), so ``view(K, B)`` groups the replicas of each example.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REPLICAS = 8  # K, Monte-Carlo samples per example (hard-coded in every original script)


def cross_entropy_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hard-label loss per row ``[B]``."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def distillation(student: list, teacher: list, temperature: float = 1.0) -> torch.Tensor:
    """Soft cross-entropy against the teacher per row ``[B]``, summed over a task's logit groups (``logits [B, G, K]``,
    ``weights [B, G]`` or None). No tau^2 factor, no hard labels, as the original (docs/differences.md K6)."""
    total = 0
    for (s, weight), (t, _) in zip(student, teacher, strict=True):
        target = torch.softmax(t.float() / temperature, dim=-1)
        rows = -(target * torch.log_softmax(s.float() / temperature, dim=-1)).sum(-1)  # [B, G]
        total = total + (rows if weight is None else rows * weight).sum(-1)
    return total


def real_windows(lengths):
    """Which windows ``[N, S]`` hold text: filler windows of a short example hold only [CLS]."""
    return lengths > 1


def length_fraction(
    kept: list[torch.Tensor], denominator: torch.Tensor | float, real: torch.Tensor | None = None
) -> torch.Tensor:
    """``Delta L`` per row: mean over the selectors that ran of ``kept / denominator``; with windows (``kept [B, S]``,
    ``real [B, S]``: windows holding more than [CLS]), the mean over an example's real windows, as the original."""
    fraction = torch.stack(kept).float().div(denominator).mean(0)
    return fraction if real is None else (fraction * real).sum(1) / real.sum(1).clamp_min(1)


def rewards(task_loss: torch.Tensor, length: torch.Tensor, alpha: float) -> torch.Tensor:
    """``R = -loss - alpha * Delta L`` per row, without gradient."""
    return (-task_loss.float() - alpha * length.float()).detach()


def reinforce_loss(reward: torch.Tensor, select_nll: torch.Tensor, replicas: int = REPLICAS) -> torch.Tensor:
    """REINFORCE with the mean reward of each example's replicas as baseline (docs/differences.md K2):
    ``mean_rows (R - b) * nll``. Minimising it raises the likelihood of above-baseline samples."""
    grouped = reward.view(replicas, -1)
    advantage = (grouped - grouped.mean(0, keepdim=True)).view(-1)
    return (advantage * select_nll).mean()


def guided_rows(batch_size: int, guiding: bool, replicas: int = REPLICAS, device=None) -> torch.Tensor:
    """Replica 0 of every example follows the imitation target while ``guiding`` (docs/differences.md K3)."""
    return torch.arange(replicas * batch_size, device=device) < (batch_size if guiding else 0)


def rank_targets(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Warm-start targets from importance scores ``[N, (W,) S, T]`` (``W`` windows or option rows, ``S`` selectors) and
    row lengths ``[N, (W)]``: in each row the token of rank ``j`` among the first ``length`` gets ``1 - j / length``,
    positions past the length 0 (the original's ``trans_imdb_rank.py``, for rows of any layout)."""
    t = scores.shape[-1]
    rows, lengths = scores.reshape(-1, scores.shape[-2], t), lengths.reshape(-1)
    valid = torch.arange(t, device=scores.device)[None, None, :] < lengths[:, None, None]
    rank = rows.float().masked_fill(~valid, float("-inf")).argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)
    return ((1 - rank.float() / lengths[:, None, None].float()) * valid).float().reshape(scores.shape)


def shared_rank_targets(scores: torch.Tensor, lengths: torch.Tensor, question_end: torch.Tensor) -> torch.Tensor:
    """Warm-start targets of a selection shared by a question's option rows: the scores ``[N, C, S, T]`` summed over the
    options (as the imitation guide, docs/differences.md F15), ranked among the positions before ``question_end [N]`` in
    the shortest row (``lengths [N, C]``); every option row gets the question's target (docs/differences.md F4)."""
    selectable = torch.minimum(question_end.long(), lengths.long().min(1).values)
    return rank_targets(scores.float().sum(1), selectable)[:, None].expand(scores.shape).contiguous()


def init_mask(batch: dict) -> torch.Tensor:
    """The positions the warm start regresses ``[B, (W,) T]``: the alive tokens of real windows and, with a selection
    shared by option rows, only the selectable ones before ``question_end`` (the original's multiple-choice probe)."""
    mask = batch["attention_mask"].bool()
    if batch["lengths"].dim() == 2:
        mask = mask & real_windows(batch["lengths"])[..., None]
    if "question_end" in batch:
        position = torch.arange(mask.shape[-1], device=mask.device)
        mask = mask & (position < batch["question_end"][:, None, None])
    return mask


def init_loss(probs: list[torch.Tensor], targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 regression of every selector's probabilities onto its own rank target, one mean over the masked positions per
    selector (docs/differences.md F4). ``probs``: one ``[..., T]`` per selector as a trace records them (NaN where not
    scored); ``targets [..., S, T]`` and ``mask [..., T]`` flatten to the same rows (windows or option rows in turn)."""
    m = mask.reshape(-1, mask.shape[-1]).float()
    targets = targets.reshape(-1, *targets.shape[-2:])
    return sum(
        ((p.nan_to_num().reshape(m.shape) - targets[:, w]).abs() * m).sum() / m.sum() for w, p in enumerate(probs)
    )
