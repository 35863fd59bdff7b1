"""Token reduction on stock BERT / DistilBERT: the encoder loop with selectors.

What this file is: with :mod:`trbert.backbones` and :mod:`trbert.heads`, the only place that
touches transformers internals. Each model (:mod:`trbert.heads`) owns the stock backbone (``self.bert`` / ``self.distilbert``) and
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

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from .packed import attention_kernel, keep_tokens, pack, unpack
from .seeding import combine, install_example_dropout, seeded_dropout, uniform
from .selector import (
    THRESHOLD,
    Selector,
    additive_mask,
    batch_uniform_keep,
    compact,
    count_keep,
    gather_tokens,
    guided_target,
    keep_probabilities,
    packed_count_keep,
    restore_tokens,
    sample_keep,
    scatter_positions,
    selection_nll,
    threshold_keep,
)

SELECTIONS = ("off", "threshold", "uniform", "sample", "probe", "random", "attention")
COUNTED = ("random", "attention")  # training-free baselines: as many tokens per example as ``keep_counts`` says
UNPADDED = ("off", "threshold", *COUNTED)  # selections the unpadded inference path serves
MASKED = -1e4  # logit of positions a token-level head does not score (padding, empty slots)


def selector_layers(config) -> list[int]:
    """Layers whose *input* a selector sees: ``[1, n // 2]``, duplicates removed (docs/differences.md K11, F3)."""
    n = config.num_hidden_layers
    layers = getattr(config, "tr_selector_layers", None) or [1, n // 2]
    return sorted({i for i in layers if 0 < i < n})


@dataclass
class ReductionOutput(ModelOutput):
    """A transformers ``ModelOutput`` (``out["logits"]`` and ``out.logits`` alike). ``logits [B, C]``
    (token-level heads ``[B, C, T]``; span heads also ``start_logits``/``end_logits [B, T]``);
    ``kept`` one ``[B]`` count per selector that ran (tokens processed after it, [CLS] included);
    ``positions [B, k]`` the original positions of the tokens that reached the last layer (-1:
    filler); ``select_nll [B]`` summed over selectors (sampling only); ``probs`` the selector
    probabilities ``[B, T]`` per selector (``probe`` only); ``hidden_states`` layer outputs
    (embeddings first) when asked for; with ``trace``: ``depth [B, T]`` how many selectors each
    position passed (the number of selectors: it reached the last layer; -1: padding) and
    ``trace_probs``, per selector ``[B, T]`` keep probabilities (NaN where not scored)."""

    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    select_nll: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    kept: list[torch.Tensor] | None = None
    probs: list[torch.Tensor] | None = None
    hidden_states: list[torch.Tensor] | None = None
    trace_probs: list[torch.Tensor] | None = None

    def tensors_only(self) -> ReductionOutput:
        """The output for transformers' pipelines, which split every item of a batch's output row
        by row: the tensors as items, the per-selector lists as attributes only."""
        out = ReductionOutput(**{k: v for k, v in self.items() if torch.is_tensor(v)})
        for name in ("kept", "probs", "hidden_states", "trace_probs"):
            object.__setattr__(out, name, getattr(self, name))
        return out


def last_positions(position, packing, alive: torch.Tensor, width: int | None) -> torch.Tensor:
    """The packed tokens' original positions ``position [N]`` in the padded path's layout: after a
    selection (``width`` the widest example) compacted, kept positions first and -1 fillers;
    without one, every position of ``alive [B, T]`` in place, -1 on padding."""
    if width is None:
        return torch.arange(alive.shape[1], device=alive.device).expand_as(alive).masked_fill(~alive, -1)
    out = position.new_full((alive.shape[0], width), -1)
    out[packing.row, packing.slot] = position
    return out


def new_output(x: torch.Tensor, hidden_states: bool = False) -> ReductionOutput:
    return ReductionOutput(
        x.new_empty(0), kept=[], probs=[], hidden_states=[x] if hidden_states else [], trace_probs=[]
    )


@dataclass
class Choice:
    """How one forward chooses its tokens (see :meth:`TokenReductionMixin.reduce_forward`)."""

    selection: str = "off"
    guide: torch.Tensor | None = None  # [B, S, T] imitation scores (sampling)
    guided_rows: torch.Tensor | None = None  # [B] rows that follow the imitation target
    seeds: torch.Tensor | None = None  # [B] per-row seeds of sampling and random drop
    keep_counts: torch.Tensor | None = None  # [B, S] tokens each selector keeps (random / attention)


class TokenReductionMixin:
    """The encoder loop with token selection, shared by the BERT and DistilBERT models."""

    example_dropout = False  # dropout masks from the per-row ``seeds`` of the forward (see trbert.seeding)
    restores_tokens = False  # token-level heads: every original position gets an output (docs/differences.md K9)
    head_inputs: tuple[str, ...] = ()  # batch arrays the head reads besides the sequence
    span_outputs = False  # span heads: ``start_logits`` / ``end_logits`` as transformers' QA models return them
    window_nll = "sum"  # selection log-likelihood of several windows: "sum" or "mean" over the real ones (N17)

    supports_unpadded = True  # every head runs on the packed inference path (see unpadded_forward)

    def _init_selectors(self, config) -> None:
        config.tr_selector_layers = selector_layers(config)
        self.selectors = nn.ModuleList(Selector(config.hidden_size) for _ in config.tr_selector_layers)
        install_example_dropout(self)

    def _selector_at(self) -> dict[int, int]:
        """``{layer index: selector index}`` for the layers whose input a selector sees."""
        return {layer: w for w, layer in enumerate(self.config.tr_selector_layers)}

    def _select(self, w, x, alive, orig, choice: Choice, before=None):
        """Keep probabilities ``[B, T]`` of selector ``w`` on ``x [B, T, d]`` and which positions survive;
        ``before``: the previous layer and its input, for the attention baseline."""
        if choice.selection in COUNTED:
            return self._counted(w, x, alive, orig, choice, before)
        prob = keep_probabilities(self.selectors[w](x), alive)
        return prob, self._decide(w, prob, alive, orig, choice)

    def _counted(self, w, x, alive, orig, choice: Choice, before):
        """A training-free baseline: ``keep_counts[:, w]`` tokens per row, at random (seeded per
        example and original position) or by the attention [CLS] paid them in the previous layer."""
        if choice.selection == "random":
            score = uniform(choice.seeds, 7 + w, (self.config.max_position_embeddings,)).gather(1, orig)
        else:
            score = self._cls_attention(*before, alive)
        keep = count_keep(score, alive, choice.keep_counts[:, w].to(orig.device))
        return keep.float(), keep

    @staticmethod
    def _decide(w, prob, alive, orig, choice: Choice):
        """The keep decision ``[B, T]`` for ``prob``: threshold, batch-uniform, or sampled (with the
        imitation target on guided rows and per-row seeded noise)."""
        if choice.selection == "threshold":
            return threshold_keep(prob, alive)
        if choice.selection == "uniform":
            return batch_uniform_keep(prob, alive)
        target = None
        if choice.guide is not None and choice.guided_rows is not None:
            with torch.no_grad():
                target = guided_target(prob, choice.guide[:, w].gather(1, orig), alive)
        noise = uniform(choice.seeds, -1 - w, (prob.shape[1],)) if choice.seeds is not None else None
        return sample_keep(prob, alive, target, choice.guided_rows, noise)

    def _probe(self, w, x, alive, orig):
        """Keep probabilities ``[B, T]`` of selector ``w`` without a decision (the warm start's
        probe; a hook for shared selections)."""
        return keep_probabilities(self.selectors[w](x), alive)

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
        keep_counts: torch.Tensor | None = None,
        trace: bool = False,
    ) -> ReductionOutput:
        """Run the backbone with token reduction.

        ``selection``: ``off`` (stock forward), ``threshold`` (inference, each row its own
        selection), ``uniform`` (the original's batched inference), ``sample`` (RL; ``guide
        [B, S, T]`` scores and ``guided_rows [B]`` for imitation), ``probe`` (no reduction, selector
        probabilities returned for the warm start), ``random`` / ``attention`` (training-free
        baselines keeping ``keep_counts [B, S]`` tokens per row). ``seeds [B]``: per-row seeds of the
        sampling, the random drop and, when ``example_dropout`` is set, of dropout (see
        :mod:`trbert.seeding`). ``trace``: also how far each position went and its probabilities."""
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        choice = Choice(selection, guide, guided_rows, seeds, keep_counts)
        with seeded_dropout(self, seeds if self.training and self.example_dropout else None):
            x = self._embed(input_ids, token_type_ids)
            out = new_output(x, output_hidden_states)
            if trace:
                out.depth = attention_mask.long() - 1  # 0 where alive, -1 on padding
            x, alive, orig, restored = self._encode(x, attention_mask.bool(), out, choice)
            if restored is not None:  # survivors: their last-layer state, with gradient
                sequence = restore_tokens(restored, orig, x, alive)
                out.logits = self._head(sequence, attention_mask.bool(), **(head_inputs or {}))
            else:
                out.logits = self._head(x[:, 0])
        out["positions"] = orig.masked_fill(~alive, -1)
        if trace:  # survivors reached the last layer (fillers point at [CLS], which always does)
            out.depth.scatter_(1, orig.masked_fill(~alive, 0), len(self.selectors))
        return out

    def _encode(self, x, alive, out: ReductionOutput, choice: Choice):
        """The stock layers with selection before the selector layers; fills ``out``'s kept counts,
        log-likelihoods, probabilities, trace and hidden states. Returns the surviving states
        ``[B, k, d]``, their ``alive`` mask and original positions, and the restore buffer of
        token-level heads."""
        record, width = bool(out.hidden_states), x.shape[1]
        orig = torch.arange(width, device=x.device).expand(x.shape[0], -1)
        restored = torch.zeros_like(x) if self.restores_tokens else None
        if choice.selection == "sample":
            out.select_nll = torch.zeros(x.shape[0], device=x.device)
        where, layers, before = self._selector_at(), self._layers(), None
        for i, layer in enumerate(layers):
            w = where.get(i)
            if w is not None and choice.selection != "off" and x.shape[1] > 1:
                if choice.selection == "probe":
                    out.probs.append(self._probe(w, x, alive, orig))
                else:
                    prob, keep = self._select(w, x, alive, orig, choice, before)
                    if out.select_nll is not None:
                        out.select_nll = out.select_nll + self._nll(prob, keep, alive, orig)
                    if restored is not None:  # dropped tokens keep the state they had (no gradient: K9)
                        restored = restore_tokens(restored, orig, x.detach(), alive & ~keep)
                    if out.depth is not None:
                        out.trace_probs.append(scatter_positions(prob, orig, alive, width))
                    index, alive = compact(keep)
                    x, orig = gather_tokens(x, index), orig.gather(1, index)
                    out.kept.append(alive.sum(1))
                    if out.depth is not None:  # the survivors passed selector w
                        out.depth.scatter_(1, orig.masked_fill(~alive, 0), w + 1)
            before = (layer, x)
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
        seeds: torch.Tensor | None = None,
        keep_counts: torch.Tensor | None = None,
    ) -> ReductionOutput:
        """Inference without padding, for every head: each example carries only its own tokens
        through every layer (see :mod:`trbert.packed`). Same selections, positions and outputs as
        ``reduce_forward`` with ``selection="threshold"`` (or ``"off"``, ``"random"``,
        ``"attention"``), at the cost of the tokens actually kept. Token-level heads read a dense
        ``[B, T, d]`` restore built once after the last layer: survivors with their last-layer
        state, dropped tokens with their state when dropped."""
        if selection not in UNPADDED or self.training:
            raise ValueError("the unpadded path is for inference (eval mode, selection off, threshold or counted)")
        choice = Choice(selection, seeds=seeds, keep_counts=keep_counts)
        attend = attention_kernel(attention, input_ids.device)
        alive = attention_mask.bool()
        packing, position = pack(alive)
        types = None if token_type_ids is None else token_type_ids[packing.row, position][None]
        x = self._embed(input_ids[packing.row, position][None], types, position[None])[0]
        out = new_output(x)
        dropped = []  # (states [n, d], rows, positions) of dropped tokens, for the restore
        width, where = alive.shape[1], self._selector_at()  # width: that of the padded path's tensors
        before = None
        for i, layer in enumerate(self._layers()):
            w = where.get(i)
            if w is not None and selection != "off" and width > 1:
                keep = self._packed_keep(w, x, packing, position, alive.shape[1], choice, before)
                if self.restores_tokens:
                    drop = ~keep
                    dropped.append((x[drop], packing.row[drop], position[drop]))
                x, position, packing = x[keep], position[keep], keep_tokens(packing, keep)
                out.kept.append(packing.counts)
                width = packing.width
            before = (layer, x, packing)
            x = self._packed_layer(layer, x, packing, attend)
        if self.restores_tokens:
            sequence = unpack([*dropped, (x, packing.row, position)], alive)
            out.logits = self._head(sequence, alive, **(head_inputs or {}))
        else:
            out.logits = self._head(x[packing.starts])
        out["positions"] = last_positions(position, packing, alive, width if out.kept else None)
        return out

    def _packed_keep(self, w, x, packing, position, length: int, choice: Choice, before=None) -> torch.Tensor:
        """Decision ``[N]`` of selector ``w`` on packed tokens ``x [N, d]`` ([CLS] kept): the threshold,
        or a count-matched baseline; ``position [N]`` original positions, ``length`` the input width,
        ``before`` the previous layer, its input and packing (a hook for shared selections)."""
        if choice.selection == "random":
            score = uniform(choice.seeds, 7 + w, (self.config.max_position_embeddings,))[packing.row, position]
        elif choice.selection == "attention":
            score = self._packed_cls_attention(*before)
        else:
            return (torch.sigmoid(self.selectors[w](x).float()) >= THRESHOLD) | (packing.slot == 0)
        return packed_count_keep(score, packing.row, packing.slot, choice.keep_counts[:, w].to(x.device))

    def forward(self, input_ids, attention_mask, token_type_ids=None, unpadded=None, **kwargs) -> ReductionOutput:
        """``reduce_forward``, or ``unpadded_forward`` when ``unpadded`` (inference only); inputs
        ``[B, S, T]`` (examples of several windows) go through :meth:`segmented_forward`.

        Called as a transformers model (no ``selection``, e.g. by a pipeline): the checkpoint's own
        selection (``config.tr_selection``: ``threshold`` once its selectors were trained, else
        ``off``) on the unpadded path when no gradient is wanted."""
        plain = "selection" not in kwargs and not self.training  # called as a stock transformers model
        if plain:
            kwargs["selection"] = getattr(self.config, "tr_selection", "off")
        if unpadded is None:
            unpadded = (
                plain
                and not torch.is_grad_enabled()
                and kwargs["selection"] in UNPADDED
                and not kwargs.get("output_hidden_states")  # layer outputs exist on the padded path only
            )
        if input_ids.dim() == 3:
            out = self.segmented_forward(input_ids, attention_mask, token_type_ids, unpadded=unpadded, **kwargs)
        elif unpadded:
            out = self.unpadded_forward(input_ids, attention_mask, token_type_ids, **kwargs)
        else:
            out = self.reduce_forward(input_ids, attention_mask, token_type_ids, **kwargs)
        if self.span_outputs:
            out["start_logits"], out["end_logits"] = out.logits[..., 0, :], out.logits[..., 1, :]
        return out.tensors_only() if plain else out

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

        if "keep_counts" in kwargs and kwargs["keep_counts"] is not None:
            kwargs["keep_counts"] = rows(kwargs["keep_counts"])
        if seeds is not None:
            window = torch.arange(s, device=seeds.device).repeat(b)
            seeds = combine(seeds.repeat_interleave(s), window)
        if unpadded:
            out = self.unpadded_forward(
                rows(input_ids), rows(attention_mask), rows(token_type_ids), seeds=seeds, **kwargs
            )
            return self._fold_windows(out, b, s, attention_mask)
        if guided_rows is not None:
            guided_rows = guided_rows.repeat_interleave(s)
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

    def _fold_windows(self, out: ReductionOutput, b: int, s: int, attention_mask) -> ReductionOutput:
        """Row outputs of ``b * s`` windows back to ``[B, S, ...]``; ``select_nll`` summed (or, with
        ``window_nll = "mean"``, averaged) over the real windows (docs/differences.md N17)."""
        real = attention_mask[:, :, 1:].any(-1)
        out.logits = out.logits.view(b, s, *out.logits.shape[1:])
        out.kept = [k.view(b, s) for k in out.kept]
        if out.select_nll is not None:
            out.select_nll = (out.select_nll.view(b, s) * real).sum(1)
            if self.window_nll == "mean":
                out.select_nll = out.select_nll / real.sum(1).clamp_min(1)
        out.positions = out.positions.view(b, s, -1)
        if out.depth is not None:
            out.depth = out.depth.view(b, s, -1)
            out.trace_probs = [p.view(b, s, -1) for p in out.trace_probs]
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
