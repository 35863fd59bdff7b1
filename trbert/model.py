"""Token reduction on stock BERT / DistilBERT: the encoder loop with selectors, and the backbones.

What this file is: with :mod:`trbert.heads`, the only place that touches transformers internals.
Each model (:mod:`trbert.heads`) owns the stock backbone (``self.bert`` / ``self.distilbert``) and
head under their usual names, so a stock or fine-tuned checkpoint loads by its usual keys, and adds
``self.selectors`` (one :class:`Selector` per selection layer). The forward here walks the stock
embeddings and layers itself and, before each selection layer, drops tokens with the functions of
:mod:`trbert.selector`; token-level heads get every position back (the residual restore), examples
of several windows run their windows as rows. For inference, ``unpadded_forward`` runs the same
layers on packed tokens (:mod:`trbert.packed`) for every head, with the same results.

What changes against the stock classes: only the encoder loop (selection and gathering) and the
outputs (no loss; per-row losses live in :mod:`trbert.objective`). With ``selection="off"`` the
forward is the stock computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .packed import attention_kernel, keep_tokens, pack, row_chunks, unpack
from .seeding import combine, install_example_dropout, seeded_dropout, uniform
from .selector import (
    THRESHOLD,
    Selector,
    additive_mask,
    batch_uniform_keep,
    compact,
    gather_tokens,
    guided_target,
    keep_probabilities,
    restore_tokens,
    sample_keep,
    selection_nll,
    threshold_keep,
)

SELECTIONS = ("off", "threshold", "uniform", "sample", "probe")
MASKED = -1e4  # logit of positions a token-level head does not score (padding, empty slots)
# the packed feed-forward runs in FFN_PARTS slices of rows (at least FFN_MIN_ROWS): its two [rows, 4d]
# intermediates then weigh less than attention's q/k/v, so a layer's peak is attention's, not the FFN's
FFN_PARTS, FFN_MIN_ROWS = 4, 128


def selector_layers(config) -> list[int]:
    """Layers whose *input* a selector sees: ``[1, n // 2]`` (spec §1.2), duplicates removed (D4)."""
    n = config.num_hidden_layers
    layers = getattr(config, "tr_selector_layers", None) or [1, n // 2]
    return sorted({i for i in layers if 0 < i < n})


@dataclass
class ReductionOutput:
    """``logits [B, C]``; ``kept`` one ``[B]`` count per selector that ran (tokens processed after it,
    [CLS] included); ``select_nll [B]`` summed over selectors (sampling only); ``probs`` the selector
    probabilities ``[B, T]`` per selector (``probe`` only); ``hidden_states`` layer outputs
    (embeddings first) when asked for; ``positions`` the original positions of the tokens that
    reached the last layer."""

    logits: torch.Tensor
    kept: list[torch.Tensor] = field(default_factory=list)
    select_nll: torch.Tensor | None = None
    probs: list[torch.Tensor] = field(default_factory=list)
    hidden_states: list[torch.Tensor] = field(default_factory=list)
    positions: torch.Tensor | None = None  # [B, k] original positions reaching the last layer, -1 = filler


class TokenReductionMixin:
    """The encoder loop with token selection, shared by the BERT and DistilBERT models."""

    example_dropout = False  # dropout masks from the per-row ``seeds`` of the forward (see trbert.seeding)
    restores_tokens = False  # token-level heads: every original position gets an output (spec §7.1)
    head_inputs: tuple[str, ...] = ()  # batch arrays the head reads besides the sequence

    supports_unpadded = True  # every head runs on the packed inference path (see unpadded_forward)

    def _init_selectors(self, config) -> None:
        config.tr_selector_layers = selector_layers(config)
        self.selectors = nn.ModuleList(Selector(config.hidden_size) for _ in config.tr_selector_layers)
        install_example_dropout(self)

    def _selector_at(self) -> dict[int, int]:
        """``{layer index: selector index}`` for the layers whose input a selector sees."""
        return {layer: w for w, layer in enumerate(self.config.tr_selector_layers)}

    def _select(self, w, x, alive, orig, selection, guide, guided_rows, seeds):
        """Keep probabilities ``[B, T]`` of selector ``w`` on ``x [B, T, d]`` and which positions survive."""
        prob = keep_probabilities(self.selectors[w](x), alive)
        return prob, self._decide(w, prob, alive, orig, selection, guide, guided_rows, seeds)

    @staticmethod
    def _decide(w, prob, alive, orig, selection, guide, guided_rows, seeds):
        """The keep decision ``[B, T]`` for ``prob``: threshold, batch-uniform, or sampled (with the
        imitation target on guided rows and per-row seeded noise)."""
        if selection == "threshold":
            return threshold_keep(prob, alive)
        if selection == "uniform":
            return batch_uniform_keep(prob, alive)
        target = None
        if guide is not None and guided_rows is not None:
            with torch.no_grad():
                target = guided_target(prob, guide[:, w].gather(1, orig), alive)
        noise = uniform(seeds, -1 - w, (prob.shape[1],)) if seeds is not None else None
        return sample_keep(prob, alive, target, guided_rows, noise)

    def _nll(self, prob, keep, alive, orig):
        """Log-likelihood term of one selection per row (a hook for shared selections)."""
        return selection_nll(prob, keep, alive)

    def reduce_forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        selection: str = "off",
        guide: torch.Tensor | None = None,
        guided_rows: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        seeds: torch.Tensor | None = None,
        head_inputs: dict | None = None,
    ) -> ReductionOutput:
        """Run the backbone with token reduction.

        ``selection``: ``off`` (stock forward), ``threshold`` (inference, each row its own
        selection), ``uniform`` (the original's batched inference), ``sample`` (RL; ``guide
        [B, S, T]`` scores and ``guided_rows [B]`` for imitation), ``probe`` (no reduction, selector
        probabilities returned for the warm start). ``seeds [B]``: per-row seeds of the sampling
        and, when ``example_dropout`` is set, of dropout (see :mod:`trbert.seeding`)."""
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        with seeded_dropout(self, seeds if self.training and self.example_dropout else None):
            x = self._embed(input_ids, token_type_ids)
            out = ReductionOutput(logits=x.new_empty(0), hidden_states=[x] if output_hidden_states else [])
            x, alive, orig, restored = self._encode(x, attention_mask.bool(), out, selection, guide, guided_rows, seeds)
            if restored is not None:  # survivors: their last-layer state, with gradient
                sequence = restore_tokens(restored, orig, x, alive)
                out.logits = self._head(sequence, attention_mask.bool(), **(head_inputs or {}))
            else:
                out.logits = self._head(x[:, 0])
        out.positions = orig.masked_fill(~alive, -1)
        return out

    def _encode(self, x, alive, out: ReductionOutput, selection, guide, guided_rows, seeds):
        """The stock layers with selection before the selector layers; fills ``out``'s kept counts,
        log-likelihoods, probabilities and hidden states. Returns the surviving states ``[B, k, d]``,
        their ``alive`` mask and original positions, and the restore buffer of token-level heads."""
        record = bool(out.hidden_states)
        orig = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        restored = torch.zeros_like(x) if self.restores_tokens else None
        if selection == "sample":
            out.select_nll = torch.zeros(x.shape[0], device=x.device)
        where = self._selector_at()
        for i, layer in enumerate(self._layers()):
            w = where.get(i)
            if w is not None and selection != "off" and x.shape[1] > 1:
                if selection == "probe":
                    out.probs.append(keep_probabilities(self.selectors[w](x), alive))
                else:
                    prob, keep = self._select(w, x, alive, orig, selection, guide, guided_rows, seeds)
                    if out.select_nll is not None:
                        out.select_nll = out.select_nll + self._nll(prob, keep, alive, orig)
                    if restored is not None:  # dropped tokens keep the state they had (no gradient, spec §7.1)
                        restored = restore_tokens(restored, orig, x.detach(), alive & ~keep)
                    index, alive = compact(keep)
                    x, orig = gather_tokens(x, index), orig.gather(1, index)
                    out.kept.append(alive.sum(1))
            x = layer(x, additive_mask(alive, x.dtype))
            if record:
                out.hidden_states.append(x)
        return x, alive, orig, restored

    @torch.no_grad()
    def unpadded_forward(
        self,
        input_ids,
        attention_mask,
        token_type_ids=None,
        selection: str = "threshold",
        attention: str = "auto",
        head_inputs: dict | None = None,
    ) -> ReductionOutput:
        """Inference without padding, for every head: each example carries only its own tokens
        through every layer (see :mod:`trbert.packed`). Same selections, positions and outputs as
        ``reduce_forward`` with ``selection="threshold"`` (or ``"off"``), at the cost of the tokens
        actually kept. Token-level heads read a dense ``[B, T, d]`` restore built once after the
        last layer: survivors with their last-layer state, dropped tokens with their state when dropped."""
        if selection not in ("off", "threshold") or self.training:
            raise ValueError("the unpadded path is for inference (eval mode, selection off or threshold)")
        attend = attention_kernel(attention, input_ids.device)
        alive = attention_mask.bool()
        packing, position = pack(alive)
        types = None if token_type_ids is None else token_type_ids[packing.row, position][None]
        x = self._embed(input_ids[packing.row, position][None], types, position[None])[0]
        out = ReductionOutput(logits=x.new_empty(0))
        dropped = []  # (states [n, d], rows, positions) of dropped tokens, for the restore
        width, where = alive.shape[1], self._selector_at()  # width: that of the padded path's tensors
        for i, layer in enumerate(self._layers()):
            w = where.get(i)
            if w is not None and selection != "off" and width > 1:
                keep = self._packed_keep(w, x, packing, position, alive.shape[1])
                if self.restores_tokens:
                    drop = ~keep
                    dropped.append((x[drop], packing.row[drop], position[drop]))
                x, position, packing = x[keep], position[keep], keep_tokens(packing, keep)
                out.kept.append(packing.counts)
                width = packing.width
            x = self._packed_layer(layer, x, packing, attend)
        if self.restores_tokens:
            sequence = unpack([*dropped, (x, packing.row, position)], alive)
            out.logits = self._head(sequence, alive, **(head_inputs or {}))
        else:
            out.logits = self._head(x[packing.starts])
        if out.kept:  # the padded path's compacted layout: kept positions first, -1 fillers
            out.positions = position.new_full((alive.shape[0], width), -1)
            out.positions[packing.row, packing.slot] = position
        else:
            out.positions = torch.arange(alive.shape[1], device=alive.device).expand_as(alive).masked_fill(~alive, -1)
        return out

    def _packed_keep(self, w, x, packing, position, length: int) -> torch.Tensor:
        """Threshold decision ``[N]`` of selector ``w`` on packed tokens ``x [N, d]`` ([CLS] kept);
        ``position [N]`` original positions, ``length`` the input width (a hook for shared selections)."""
        return (torch.sigmoid(self.selectors[w](x).float()) >= THRESHOLD) | (packing.slot == 0)

    def forward(self, input_ids, attention_mask, token_type_ids=None, unpadded=False, **kwargs) -> ReductionOutput:
        """``reduce_forward``, or ``unpadded_forward`` when ``unpadded`` (inference only); inputs
        ``[B, S, T]`` (examples of several windows) go through :meth:`segmented_forward`."""
        if input_ids.dim() == 3:
            return self.segmented_forward(input_ids, attention_mask, token_type_ids, unpadded=unpadded, **kwargs)
        if unpadded:
            return self.unpadded_forward(input_ids, attention_mask, token_type_ids, **kwargs)
        return self.reduce_forward(input_ids, attention_mask, token_type_ids, **kwargs)

    def segmented_forward(
        self,
        input_ids,
        attention_mask,
        token_type_ids=None,
        guide=None,
        guided_rows=None,
        seeds=None,
        head_inputs=None,
        unpadded=False,
        **kwargs,
    ) -> ReductionOutput:
        """Examples of ``S`` windows ``[B, S, T]`` (TriviaQA): every window is a row with its own
        selection; the outputs are folded back per example — ``logits [B, S, ...]``, ``kept`` one
        ``[B, S]`` per selector, ``select_nll [B]`` summed over the real windows (an example's
        action is the joint action of its windows; empty filler windows hold only [CLS]). With
        ``unpadded`` the windows run on the packed inference path."""
        b, s = input_ids.shape[:2]

        def rows(x):
            return None if x is None else x.flatten(0, 1)

        if unpadded:
            out = self.unpadded_forward(rows(input_ids), rows(attention_mask), rows(token_type_ids), **kwargs)
            return self._fold_windows(out, b, s, attention_mask)
        if guided_rows is not None:
            guided_rows = guided_rows.repeat_interleave(s)
        if seeds is not None:
            window = torch.arange(s, device=seeds.device).repeat(b)
            seeds = combine(seeds.repeat_interleave(s), window)
        out = self.reduce_forward(
            rows(input_ids),
            rows(attention_mask),
            rows(token_type_ids),
            guide=rows(guide),
            guided_rows=guided_rows,
            seeds=seeds,
            **kwargs,
        )
        return self._fold_windows(out, b, s, attention_mask)

    @staticmethod
    def _fold_windows(out: ReductionOutput, b: int, s: int, attention_mask) -> ReductionOutput:
        """Row outputs of ``b * s`` windows back to ``[B, S, ...]``; ``select_nll`` summed over real windows."""
        real = attention_mask[:, :, 1:].any(-1)
        out.logits = out.logits.view(b, s, *out.logits.shape[1:])
        out.kept = [k.view(b, s) for k in out.kept]
        if out.select_nll is not None:
            out.select_nll = (out.select_nll.view(b, s) * real).sum(1)
        out.positions = out.positions.view(b, s, -1)
        return out

    def extend_positions(self, length: int) -> int:
        """Grow the learned position embeddings to ``length`` by repeating the learned ones (the
        standard way to read longer inputs, e.g. the original's BERT-1024). Returns the old count."""
        embeddings = self._embed_module()
        old = embeddings.position_embeddings
        if length <= old.num_embeddings:
            return old.num_embeddings
        grown = nn.Embedding(length, old.embedding_dim).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            grown.weight.copy_(old.weight[torch.arange(length) % old.num_embeddings])
        embeddings.position_embeddings = grown
        for name in ("position_ids", "token_type_ids"):  # the stock buffers are as long as the table
            if hasattr(embeddings, name):
                fill = torch.arange(length) if name == "position_ids" else torch.zeros(length, dtype=torch.long)
                embeddings.register_buffer(name, fill[None].to(old.weight.device), persistent=False)
        self.config.max_position_embeddings = length
        return old.num_embeddings

    def selector_parameters(self) -> list[nn.Parameter]:
        return list(self.selectors.parameters())


class BertBackbone:
    """Where the stock BERT pieces are: embeddings, layers, and one layer on packed tokens."""

    def _embed_module(self):
        return self.bert.embeddings

    def _embed(self, input_ids, token_type_ids, position_ids=None):
        return self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)

    def _layers(self):
        return self.bert.encoder.layer

    def _packed_layer(self, layer, x, packing, attend):
        """Stock ``BertLayer`` math on packed tokens ``[N, d]`` (its own submodules, in order)."""
        a = layer.attention.self
        shape = (x.shape[0], a.num_attention_heads, a.attention_head_size)
        context = attend((p(x).view(shape) for p in (a.query, a.key, a.value)), packing)
        h = layer.attention.output(context, x)
        del context
        return row_chunks(h, lambda part: layer.output(layer.intermediate(part), part), FFN_PARTS, FFN_MIN_ROWS)


class DistilBertBackbone:
    def _embed_module(self):
        return self.distilbert.embeddings

    def _embed(self, input_ids, token_type_ids, position_ids=None):
        return self.distilbert.embeddings(input_ids, position_ids=position_ids)

    def _layers(self):
        return self.distilbert.transformer.layer

    def _packed_layer(self, layer, x, packing, attend):
        """Stock ``TransformerBlock`` math on packed tokens ``[N, d]``."""
        a = layer.attention
        shape = (x.shape[0], a.n_heads, a.attention_head_size)
        context = attend((p(x).view(shape) for p in (a.q_lin, a.k_lin, a.v_lin)), packing)
        h = layer.sa_layer_norm(a.out_lin(context) + x)
        del context
        return row_chunks(h, lambda part: layer.output_layer_norm(layer.ffn(part) + part), FFN_PARTS, FFN_MIN_ROWS)
