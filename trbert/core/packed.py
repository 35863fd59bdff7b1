"""Unpadded ("packed") token bookkeeping, attention and restore for fast inference (pure tensor functions).

The tokens of a batch live in one ``[N, d]`` tensor, row-major, each example's in original order with [CLS] first; a
:class:`Packing` says which example (``row``) and slot (``slot``) each token is. Linear and feed-forward work runs on
``[N, d]`` directly, so padding costs nothing; attention needs each example's tokens together (all kernels agree):

* ``padded``: scatter q/k/v into ``[B, width, heads, head_dim]`` (width = this batch's largest *kept* count) and run
  SDPA with a key mask. Vectorised; the fastest we measured on CPU.
* ``jagged``: nested jagged tensors into SDPA (variable-length flash / memory-efficient kernels on CUDA);
* ``varlen``: torch's variable-length flash attention (``torch.nn.attention.varlen``) on CUDA in float16 / bfloat16: one
  kernel, no padding and no nested-tensor dispatch.

Kernels take q, k and v as an iterable that makes them one at a time, so a projection is freed as soon as it is placed
(scattered, or wrapped). The layers themselves are :mod:`.backbones`'.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from .selector import additive_mask


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
        return cls(row, slot, counts, starts, int(counts.max()) if row.numel() else 0)

    @property
    def uniform(self) -> bool:
        """Every example has the same count: the packed tensor is a ``[B, width, ...]`` view."""
        return self.counts.shape[0] * self.width == self.row.shape[0]

    @cached_property
    def offsets(self) -> torch.Tensor:
        """``[B + 1]`` where each example's tokens begin, and the total."""
        return torch.cat((self.starts, self.counts.sum()[None]))

    @cached_property
    def block_index(self) -> torch.Tensor:
        """``[N]`` index of every token in a ``[B * width]`` block (row-major)."""
        return self.row * self.width + self.slot

    @cached_property
    def block_padding(self) -> torch.Tensor:
        """Index of the ``B * width - N`` filler slots of that block."""
        filler = torch.ones(self.counts.shape[0] * self.width, dtype=torch.bool, device=self.row.device)
        filler[self.block_index] = False
        return filler.nonzero().squeeze(1)

    def to_block(self, t: torch.Tensor) -> torch.Tensor:
        """``t [N, ...]`` into ``[B * width, ...]``, zeros on filler slots (written, not memset: fillers are few)."""
        block = t.new_empty(self.counts.shape[0] * self.width, *t.shape[1:])
        block[self.block_index] = t
        block[self.block_padding] = 0
        return block


def pack(alive: torch.Tensor) -> tuple[Packing, torch.Tensor]:
    """Packing of the alive positions of ``[B, T]`` and their original positions ``[N]``."""
    row, position = alive.nonzero(as_tuple=True)
    return Packing.from_rows(row, alive.shape[0]), position


def keep_tokens(packing: Packing, keep: torch.Tensor) -> Packing:
    """The packing of the tokens where ``keep [N]`` is True (order preserved)."""
    return Packing.from_rows(packing.row[keep], packing.counts.shape[0])


def padded_attention(qkv: Iterable[torch.Tensor], packing: Packing) -> torch.Tensor:
    """Attention within each example; q, k, v ``[N, heads, head_dim]`` -> ``[N, heads * head_dim]``."""
    b, width = packing.counts.shape[0], packing.width
    if packing.uniform:  # every example has the same count: views, no scatter, no mask
        blocks = [t.view(b, width, *t.shape[1:]).transpose(1, 2) for t in qkv]
        out = F.scaled_dot_product_attention(*blocks).transpose(1, 2)
        return out.reshape(b * width, -1)
    blocks = []
    for t in qkv:  # one [N, h, hd] projection alive at a time
        block = packing.to_block(t)
        del t
        blocks.append(block.view(b, width, *block.shape[1:]).transpose(1, 2))  # [B, heads, width, head_dim]
    alive = torch.arange(width, device=blocks[0].device)[None, :] < packing.counts[:, None]
    out = F.scaled_dot_product_attention(*blocks, attn_mask=additive_mask(alive, blocks[0].dtype))
    del blocks
    # SDPA writes its output in the layout of q, [B, width, heads, head_dim]: a view, then a gather
    return out.transpose(1, 2).reshape(b * width, -1).index_select(0, packing.block_index)


def jagged_attention(qkv: Iterable[torch.Tensor], packing: Packing) -> torch.Tensor:
    """Same result through nested jagged tensors (variable-length kernels on CUDA)."""
    nested = [torch.nested.nested_tensor_from_jagged(t, packing.offsets).transpose(1, 2) for t in qkv]
    return F.scaled_dot_product_attention(*nested).transpose(1, 2).values().flatten(1)


def varlen_attention(qkv: Iterable[torch.Tensor], packing: Packing) -> torch.Tensor:
    """Same result through torch's variable-length flash kernel (CUDA, float16 / bfloat16)."""
    from torch.nn.attention.varlen import varlen_attn

    q, k, v = qkv
    bounds = packing.offsets.to(torch.int32)
    return varlen_attn(q, k, v, bounds, bounds, packing.width, packing.width).flatten(1)


def auto_attention(qkv: Iterable[torch.Tensor], packing: Packing) -> torch.Tensor:
    """``varlen`` where it runs (CUDA, half precision, a torch that has it), else ``padded``."""
    qkv, first = iter(qkv), []
    first.append(next(qkv))
    varlen = HAS_VARLEN and first[0].is_cuda and first[0].dtype in (torch.float16, torch.bfloat16)
    chained = itertools.chain((first.pop() for _ in range(1)), qkv)  # q held by nothing here once placed
    return (varlen_attention if varlen else padded_attention)(chained, packing)


HAS_VARLEN = importlib.util.find_spec("torch.nn.attention.varlen") is not None  # torch >= 2.9
# the attention of the unpadded path, by --attention_kernel (auto: varlen on CUDA in half precision, else padded)
ATTENTION = {"auto": auto_attention, "padded": padded_attention, "jagged": jagged_attention, "varlen": varlen_attention}


def row_chunks(x: torch.Tensor, fn, parts: int, min_rows: int) -> torch.Tensor:
    """``fn`` applied to ``x [N, d]`` in ``parts`` slices of rows (at least ``min_rows`` each), for a row-wise ``fn``:
    the same result, with ``fn``'s intermediates (e.g. the ``[N, 4d]`` feed-forward) a ``parts``-th as large."""
    rows = max(min_rows, -(-x.shape[0] // parts))
    if x.shape[0] <= rows:
        return fn(x)
    out = torch.empty_like(x)
    for part, target in zip(x.split(rows), out.split(rows), strict=True):
        target.copy_(fn(part))
    return out


def unpack(states: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], alive: torch.Tensor) -> torch.Tensor:
    """A dense ``[B, T, d]`` buffer from packed pieces ``(x [n, d], row [n], position [n])`` that
    name every alive position of ``alive [B, T]`` once; 0 where not alive (padding)."""
    b, t = alive.shape
    first = states[0][0]
    dense = first.new_empty(b * t, first.shape[-1])
    dense[~alive.flatten()] = 0
    for x, row, position in states:
        dense[row * t + position] = x
    return dense.view(b, t, -1)
