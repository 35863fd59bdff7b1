"""Closed-form FLOPs of BERT-style encoders with token reduction, read from the model config.

What this file is: the replacement for the original's ``macs_list.json`` (spec §8). Everything is
counted per example from its own token counts, so the numbers do not depend on the batch size.
Two counts are offered:

* ``paper``: the original's accounting (spec §8.2, D2 kept for comparability): encoder matmuls,
  the selector MLP charged on the tokens it *keeps*, the classifier ``d * num_labels``; no pooler.
* ``exact``: every matmul the forward runs: the selector charged on the tokens it *scores*, and
  BERT's pooler ``d * d``. This one matches ``torch.utils.flop_counter`` (see the tests).

MACs are multiply-accumulates; FLOPs = 2 * MACs, as the paper reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import selector_layers
from .selector import SELECTOR_WIDTH


def layer_macs(n, d: int, d_ff: int):
    """One encoder layer on ``n`` tokens: Q/K/V/output projections, FFN, ``QK^T`` and ``AV``."""
    n = np.asarray(n, dtype=np.int64)
    return n * (4 * d * d + 2 * d * d_ff) + 2 * n * n * d


@dataclass(frozen=True)
class FlopsCounter:
    hidden: int
    ffn: int
    layers: int
    placement: tuple[int, ...]
    num_labels: int

    @classmethod
    def from_config(cls, config) -> FlopsCounter:
        return cls(
            hidden=config.hidden_size,
            ffn=getattr(config, "intermediate_size", None) or config.hidden_dim,
            layers=config.num_hidden_layers,
            placement=tuple(selector_layers(config)),
            num_labels=config.num_labels,
        )

    def _head(self, exact: bool) -> int:
        d = self.hidden
        extra = (d * d) if exact else 0  # pooler (BERT) or pre_classifier (DistilBERT)
        return d * self.num_labels + extra

    def full(self, lengths, exact: bool = False) -> np.ndarray:
        """MACs of the unreduced model on examples of ``lengths [N]`` tokens."""
        return self.layers * layer_macs(lengths, self.hidden, self.ffn) + self._head(exact)

    def reduced(self, lengths, kept, exact: bool = False) -> np.ndarray:
        """MACs of the reduction model. ``kept``: ``[S_ran, N]`` tokens after each selector that ran
        (a selector skipped because one token was left keeps the previous count)."""
        d, selector = self.hidden, self.hidden * SELECTOR_WIDTH + SELECTOR_WIDTH
        counts = np.asarray(lengths, dtype=np.int64)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1, counts.shape[0])
        bounds = [*self.placement, self.layers]
        total = bounds[0] * layer_macs(counts, d, self.ffn)
        for w, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            scored = counts
            if w < len(kept):
                counts = kept[w]
                total = total + (scored if exact else counts) * selector
            total = total + (end - start) * layer_macs(counts, d, self.ffn)
        return total + self._head(exact)


def mflops(macs) -> float:
    """Average MFLOPs per example (2 x MACs / 1e6), as the original prints them."""
    return float(2 * np.mean(macs) / 1e6)
