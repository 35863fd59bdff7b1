"""Token selection: the selector MLP and the keep / drop / gather tensor operations, knowing nothing of BERT (which
rule decides is :mod:`.policy`'s). Shapes: ``B`` rows, ``T`` current positions, ``d`` hidden size; ``alive [B, T]``
bool marks the real (not padding, not dropped) positions; position 0 is [CLS], always kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SELECTOR_WIDTH = 32  # hidden width of the policy MLP in the paper's code
THRESHOLD = 0.5  # inference keeps a token when its keep probability reaches this
EPS = 1e-6  # added inside the logs of the selection log-likelihood (as the original)


class Selector(nn.Module):
    """Policy network: ``x [B, T, d] -> keep logits [B, T]`` (Linear, exact GELU, Linear)."""

    def __init__(self, hidden_size: int, width: int = SELECTOR_WIDTH):
        super().__init__()
        self.hidden = nn.Linear(hidden_size, width)
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.hidden(x))).squeeze(-1)


def keep_probabilities(logits: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """``p = sigmoid(z) * alive`` in float32 ``[B, T]``; dead positions get exactly 0."""
    return torch.sigmoid(logits.float()) * alive


def guided_target(prob: torch.Tensor, guide: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Imitation target (docs/differences.md K3): per row the ``floor(sum p + 0.5)`` alive positions with the
    highest guide score. ``guide`` is ``[B, T]`` at the current positions. Returns ``[B, T]`` bool."""
    return count_keep(guide, alive, torch.floor(prob.sum(1) + 0.5).long(), cls=False)


def sample_keep(prob, noise, target=None, guided_rows=None) -> torch.Tensor:
    """Stochastic decision for RL: ``a = noise < q`` with ``noise [B, T]`` uniform in [0, 1) (so ``a ~
    Bernoulli(q)``), ``q = p``, or the 0/1 imitation ``target`` on ``guided_rows [B]``. ``[B, T]`` bool."""
    q = prob if target is None else torch.where(guided_rows[:, None], target.to(prob.dtype), prob)
    return noise < q


def selection_nll(prob: torch.Tensor, keep: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Token-averaged negative log-likelihood of the actions ``keep`` under ``prob``, per row ``[B]``.
    The forced [CLS] term is included, as in the original (docs/differences.md K4)."""
    a = keep.float()
    ll = a * torch.log(prob + EPS) + (1 - a) * torch.log(1 - prob + EPS)
    m = alive.float()
    return -(ll * m).sum(1) / m.sum(1).clamp_min(1.0)


def compact(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``index [B, k]`` of every row's kept positions in order, padded to the largest count, and ``valid [B, k]``."""
    k = int(keep.sum(1).max())
    index = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :k]
    return index, keep.gather(1, index)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, T, ...]`` gathered at ``index [B, k]`` along the token axis -> ``[B, k, ...]``."""
    expanded = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(*index.shape, *x.shape[2:])
    return x.gather(1, expanded)


def restore_tokens(buffer: torch.Tensor, positions: torch.Tensor, x: torch.Tensor, write: torch.Tensor) -> torch.Tensor:
    """``buffer [B, T0, d]`` with ``x [B, k, d]`` written at original ``positions [B, k]`` where
    ``write [B, k]``; every other slot unchanged. Each position is written at most once per call
    and masked fillers never (docs/differences.md F10). Out of place, so gradients flow into ``x``."""
    t0 = buffer.shape[1]
    target = positions.masked_fill(~write, t0)  # unwritten slots go to a scratch column, cut below
    padded = torch.cat([buffer, buffer.new_zeros(buffer.shape[0], 1, buffer.shape[2])], 1)
    index = target[..., None].expand(-1, -1, x.shape[-1])
    return padded.scatter(1, index, x.to(buffer.dtype))[:, :t0]


def additive_mask(alive: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Attention mask for stock layers: ``[B, 1, 1, T]`` with 0 on alive keys, dtype-min elsewhere."""
    return (~alive)[:, None, None, :].to(dtype) * torch.finfo(dtype).min


def count_keep(score: torch.Tensor, alive: torch.Tensor, counts: torch.Tensor, cls: bool = True) -> torch.Tensor:
    """The ``counts [B]`` alive positions of each row with the highest ``score [B, T]``, [CLS] always
    among them if ``cls`` (the count-matched baselines: random drop, attention top-k). ``[B, T]`` bool."""
    s = score.float().masked_fill(~alive, float("-inf"))
    if cls:
        s[:, 0] = float("inf")
    rank = s.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return (rank < counts[:, None]) & alive
