"""Unpadded ("packed") token bookkeeping and attention for fast inference.

What this file is: pure tensor functions. The tokens of a whole batch live in one ``[N, d]``
tensor, row-major, each example's tokens in their original order with [CLS] first; a
:class:`Packing` says which example (``row``) and which slot (``slot``) each token is. Linear and
feed-forward work runs on ``[N, d]`` directly, so padding costs nothing. Attention needs the
tokens of one example together; two interchangeable kernels give identical results:

* ``padded``: scatter q/k/v into ``[B, width, heads, head_dim]`` (width = this batch's largest
  *kept* count) and run SDPA with a key mask. Vectorised; the fastest we measured on CPU.
* ``jagged``: nested jagged tensors into SDPA, which dispatches to variable-length
  flash / memory-efficient kernels on CUDA (no padding at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Packing:
    row: torch.Tensor  # [N] example of each token
    slot: torch.Tensor  # [N] index of the token inside its example (0 = [CLS])
    counts: torch.Tensor  # [B] tokens per example
    starts: torch.Tensor  # [B] position in the packed tensor of every example's first token ([CLS])
    width: int  # counts.max()

    @classmethod
    def from_rows(cls, row: torch.Tensor, batch_size: int) -> Packing:
        counts = torch.bincount(row, minlength=batch_size)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(row.shape[0], device=row.device) - starts[row]
        return cls(row, slot, counts, starts, int(counts.max()))


def pack(alive: torch.Tensor) -> tuple[Packing, torch.Tensor]:
    """Packing of the alive positions of ``[B, T]`` and their original positions ``[N]``."""
    row, position = alive.nonzero(as_tuple=True)
    return Packing.from_rows(row, alive.shape[0]), position


def keep_tokens(packing: Packing, keep: torch.Tensor) -> Packing:
    """The packing of the tokens where ``keep [N]`` is True (order preserved)."""
    return Packing.from_rows(packing.row[keep], packing.counts.shape[0])


def padded_attention(q, k, v, packing: Packing) -> torch.Tensor:
    """Attention within each example; ``q, k, v [N, heads, head_dim]`` -> ``[N, heads, head_dim]``."""
    b, n, width = packing.counts.shape[0], q.shape[0], packing.width
    if b * width == n:  # every example has the same count: views, no scatter, no mask
        blocks = [t.view(b, width, *t.shape[1:]).transpose(1, 2) for t in (q, k, v)]
        return F.scaled_dot_product_attention(*blocks).transpose(1, 2).reshape(n, *q.shape[1:])
    blocks = []
    for t in (q, k, v):
        block = t.new_zeros(b, width, *t.shape[1:])
        block[packing.row, packing.slot] = t
        blocks.append(block.transpose(1, 2))  # [B, heads, width, head_dim]
    alive = torch.arange(width, device=q.device)[None, :] < packing.counts[:, None]
    mask = (~alive)[:, None, None, :].to(q.dtype) * torch.finfo(q.dtype).min
    out = F.scaled_dot_product_attention(*blocks, attn_mask=mask)
    return out.transpose(1, 2)[packing.row, packing.slot].reshape(n, *q.shape[1:])


def jagged_attention(q, k, v, packing: Packing) -> torch.Tensor:
    """Same result through nested jagged tensors (variable-length kernels on CUDA)."""
    offsets = torch.cat((packing.counts.new_zeros(1), torch.cumsum(packing.counts, 0)))
    nested = [torch.nested.nested_tensor_from_jagged(t, offsets).transpose(1, 2) for t in (q, k, v)]
    return F.scaled_dot_product_attention(*nested).transpose(1, 2).values()


ATTENTION = {"padded": padded_attention, "jagged": jagged_attention}


def attention_kernel(name: str, device: torch.device):
    """``auto``: jagged (variable-length) kernels on CUDA, padded SDPA elsewhere."""
    if name == "auto":
        name = "jagged" if device.type == "cuda" else "padded"
    return ATTENTION[name]
