"""Closed-form FLOPs of BERT-style encoders with token reduction, read from the model config.

Replaces the original's ``macs_list.json`` (one BERT-base layer's cost per length): every example is counted from its
own token counts, so the numbers do not depend on the batch size (docs/differences.md F3). Two counts:

* ``paper``: the original's accounting, kept for comparability (docs/differences.md K7): encoder matmuls, the selector
  MLP charged on the tokens it *keeps*, the head as ``d * num_labels``.
* ``exact``: every matmul the forward runs: the selector charged on the tokens it *scores*, the head as it is — BERT's
  pooler ``d * d`` for [CLS] heads, the token-level heads on every position (HotpotQA's supporting-fact head, two
  matmuls per sentence, is left out). With eager attention this equals ``torch.utils.flop_counter`` (which does not see
  CPU SDPA kernels; see the tests).

A selector that would see one token ([CLS] alone) does not run and costs nothing, as in the original. MACs are
multiply-accumulates; FLOPs = 2 * MACs, as the paper reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .encoder import selector_layers
from .heads import HEADS
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
    token_outputs: int = 0  # a token-level head's outputs per position (see .heads)
    pooled_outputs: int = 0  # its outputs on a pooled vector (HotpotQA's switch)

    @classmethod
    def from_config(cls, config) -> FlopsCounter:
        """From a model config; a token-level head's outputs from its class (``config.tr_head``)."""
        head = HEADS[getattr(config, "tr_head", None) or "classification"]["bert"]
        ffn = getattr(config, "intermediate_size", None) or config.hidden_dim  # BERT's name, DistilBERT's
        model = config.hidden_size, ffn, config.num_hidden_layers, tuple(selector_layers(config)), config.num_labels
        return cls(*model, head.token_outputs, head.pooled_outputs)  # the fields in order

    def _head(self, lengths: np.ndarray, exact: bool):
        d = self.hidden
        if not exact:
            return d * self.num_labels
        if self.token_outputs:  # every position (restored), no pooler
            return lengths * d * self.token_outputs + d * self.pooled_outputs
        return d * d + d * self.num_labels  # pooler (BERT) or pre_classifier (DistilBERT), then the classifier

    def full(self, lengths, exact: bool = False) -> np.ndarray:
        """MACs of the unreduced model on examples of ``lengths [N]`` tokens."""
        lengths = np.asarray(lengths, dtype=np.int64)
        return self.layers * layer_macs(lengths, self.hidden, self.ffn) + self._head(lengths, exact)

    def reduced(self, lengths, kept, exact: bool = False, selectors: bool = True) -> np.ndarray:
        """MACs of the reduction model. ``kept``: ``[S_ran, N]`` tokens after each selector (a selector skipped, one
        token left, keeps the previous count). Without ``selectors``: the same counts chosen by a baseline."""
        d, selector = self.hidden, self.hidden * SELECTOR_WIDTH + SELECTOR_WIDTH
        lengths = np.asarray(lengths, dtype=np.int64)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1, lengths.shape[0])
        bounds, counts = [*self.placement, self.layers], lengths
        total = bounds[0] * layer_macs(counts, d, self.ffn)
        for w, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            scored = counts
            if w < len(kept):
                counts = kept[w]
                runs = (scored > 1) & selectors  # a lone [CLS] is not scored
                total = total + np.where(runs, (scored if exact else counts) * selector, 0)
            total = total + (end - start) * layer_macs(counts, d, self.ffn)
        return total + self._head(lengths, exact)


def mflops(macs) -> float:
    """Average MFLOPs per example (2 x MACs / 1e6), as the original prints them."""
    return float(2 * np.mean(macs) / 1e6)
