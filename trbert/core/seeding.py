"""Randomness keyed by example, not by process: stateless hashed noise for sampling and dropout.

A counter-based generator (an integer hash of seed and coordinates): the numbers an example sees depend only on (run
seed, epoch, example index, replica), never on its rank or batch, so 2 processes with batch ``b`` each equal 1 with
batch ``2b`` (and a resumed run an uninterrupted one). RL sampling always uses it (:class:`.policy.Sample`), dropout
with ``--example_seeded_dropout``: :func:`install_example_dropout` swaps every ``nn.Dropout`` for an
:class:`ExampleDropout` (stock until seeds are set), and attention-probability dropout goes through
:func:`seeded_attention`. Ordinary dropout's global RNG is seeded per rank by :mod:`trbert.train.pipeline`.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

_MASK = 0xFFFFFFFF
SEEDED_ATTENTION = "trbert_seeded"  # the attention implementation transformers calls


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (int64 arithmetic; products stay below 2**63)."""
    x = x & _MASK
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK
    return x ^ (x >> 16)


def combine(seeds: torch.Tensor, *values: int | torch.Tensor) -> torch.Tensor:
    """New seeds from ``seeds`` and further integers (broadcasting): order matters, values mix in."""
    h = seeds.long()
    for v in values:
        h = _mix(h ^ _mix(torch.as_tensor(v, dtype=torch.long, device=h.device) + 0x9E3779B))
    return h


def window_seeds(seeds: torch.Tensor | None, b: int, s: int) -> torch.Tensor | None:
    """Seeds ``[B * S]`` of ``b`` examples' ``s`` windows run as rows, from the examples' ``seeds [B]``."""
    if seeds is None:
        return None
    return combine(seeds.repeat_interleave(s), torch.arange(s, device=seeds.device).repeat(b))


def example_seeds(seed: int, epoch: int, index: torch.Tensor) -> torch.Tensor:
    """Per-example seeds ``[B]`` for one pass over the data."""
    return combine(torch.as_tensor(index, dtype=torch.long), seed, epoch)


def uniform(seeds: torch.Tensor, salt: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``[B, *shape]`` floats in [0, 1): each row from its seed, each element from its coordinates (so a row's numbers
    do not depend on how wide the batch was padded)."""
    h = combine(seeds, salt)
    for axis, size in enumerate(shape):
        coords = combine(torch.arange(size, device=seeds.device), axis)
        h = _mix(h[..., None] ^ coords)
    return (h & 0xFFFFFF).float() / float(1 << 24)


class ExampleDropout(nn.Dropout):
    """``nn.Dropout`` whose mask comes from per-row seeds while ``seeds [B]`` is set."""

    salt: int = 0
    seeds: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.seeds is None or not self.training or self.p == 0:
            return super().forward(x)
        return x * (uniform(self.seeds, self.salt, tuple(x.shape[1:])) >= self.p).to(x.dtype) / (1 - self.p)


def seeded_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for transformers' interface: SDPA, except that with dropout on and seeds set
    the probabilities ``[B, heads, T, T]`` are dropped by the module's :class:`ExampleDropout`."""
    drop = getattr(module, "dropout", None)
    if dropout == 0 or not isinstance(drop, ExampleDropout) or drop.seeds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling)
    scores = torch.matmul(query, key.transpose(2, 3)) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = drop(F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype))
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


AttentionInterface.register(SEEDED_ATTENTION, seeded_attention)


def install_example_dropout(model: nn.Module) -> None:
    """Swap every ``nn.Dropout`` below ``model`` for an :class:`ExampleDropout` with its own salt."""
    for salt, (name, module) in enumerate(list(model.named_modules())):
        if type(module) is nn.Dropout:
            parent, _, child = name.rpartition(".")
            replacement = ExampleDropout(module.p)
            replacement.salt = salt
            setattr(model.get_submodule(parent) if parent else model, child, replacement)


@contextlib.contextmanager
def seeded_dropout(model: nn.Module, seeds: torch.Tensor | None):
    """Within the block, dropout masks of ``model`` come from ``seeds [B]`` (no-op for ``None``)."""
    if seeds is None:
        yield
        return
    drops = [m for m in model.modules() if isinstance(m, ExampleDropout)]
    before = model.config._attn_implementation
    model.config._attn_implementation = SEEDED_ATTENTION
    for m in drops:
        m.seeds = seeds
    try:
        yield
    finally:
        for m in drops:
            m.seeds = None
        model.config._attn_implementation = before
