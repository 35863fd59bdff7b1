"""TR-BERT classification models: stock BERT / DistilBERT plus token selectors.

What this file is: the only place that touches transformers internals. Each model owns the stock
backbone (``self.bert`` / ``self.distilbert``) and head under their usual names, so a stock or
fine-tuned checkpoint loads by its usual keys, and adds ``self.selectors`` (one :class:`Selector`
per selection layer). Our forward walks the stock embeddings and layers itself and, before each
selection layer, drops tokens with the functions of :mod:`trbert.selector`.

What changes against the stock classes: only the encoder loop (selection and gathering) and the
outputs (no loss; per-row losses live in :mod:`trbert.objective`). With ``selection="off"`` the
forward is the stock computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import BertModel, BertPreTrainedModel, DistilBertModel, DistilBertPreTrainedModel

from .packed import attention_kernel, keep_tokens, pack
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

    @property
    def supports_unpadded(self) -> bool:
        """The packed inference path serves one-row-per-example heads on [CLS] (classification)."""
        return not self.restores_tokens and not self.head_inputs

    def _init_selectors(self, config) -> None:
        config.tr_selector_layers = selector_layers(config)
        self.selectors = nn.ModuleList(Selector(config.hidden_size) for _ in config.tr_selector_layers)
        install_example_dropout(self)

    def _selector_at(self) -> dict[int, int]:
        """``{layer index: selector index}`` for the layers whose input a selector sees."""
        return {layer: w for w, layer in enumerate(self.config.tr_selector_layers)}

    def _select(self, w, x, alive, orig, selection, guide, guided_rows, seeds):
        """Decide which positions of ``x [B, T, d]`` survive selector ``w``."""
        prob = keep_probabilities(self.selectors[w](x), alive)
        if selection == "threshold":
            return prob, threshold_keep(prob, alive)
        if selection == "uniform":
            return prob, batch_uniform_keep(prob, alive)
        target = None
        if guide is not None and guided_rows is not None:
            with torch.no_grad():
                target = guided_target(prob, guide[:, w].gather(1, orig), alive)
        noise = uniform(seeds, -1 - w, (x.shape[1],)) if seeds is not None else None
        return prob, sample_keep(prob, alive, target, guided_rows, noise)

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
        self, input_ids, attention_mask, token_type_ids=None, selection: str = "threshold", attention: str = "auto"
    ) -> ReductionOutput:
        """Inference without padding (classification heads): every example carries only its own
        tokens through every layer (see :mod:`trbert.packed`). Same selections and logits as ``reduce_forward`` with
        ``selection="threshold"`` (or ``"off"``), at the cost of the tokens actually kept."""
        if selection not in ("off", "threshold") or self.training or not self.supports_unpadded:
            raise ValueError("the unpadded path is for inference (eval mode, selection off or threshold)")
        attend = attention_kernel(attention, input_ids.device)
        packing, position = pack(attention_mask.bool())
        types = None if token_type_ids is None else token_type_ids[packing.row, position][None]
        x = self._embed(input_ids[packing.row, position][None], types, position[None])[0]
        out = ReductionOutput(logits=x.new_empty(0))
        where = self._selector_at()
        for i, layer in enumerate(self._layers()):
            w = where.get(i)
            if w is not None and selection != "off" and packing.width > 1:
                keep = (torch.sigmoid(self.selectors[w](x).float()) >= THRESHOLD) | (packing.slot == 0)
                x, position, packing = x[keep], position[keep], keep_tokens(packing, keep)
                out.kept.append(packing.counts)
            x = self._packed_layer(layer, x, packing, attend)
        out.logits = self._head(x[packing.starts])
        out.positions = position.new_full((packing.counts.shape[0], packing.width), -1)
        out.positions[packing.row, packing.slot] = position
        return out

    def forward(self, input_ids, attention_mask, token_type_ids=None, unpadded=False, **kwargs) -> ReductionOutput:
        """``reduce_forward``, or ``unpadded_forward`` when ``unpadded`` (inference only); inputs
        ``[B, S, T]`` (examples of several windows) go through :meth:`segmented_forward`."""
        if input_ids.dim() == 3:
            return self.segmented_forward(input_ids, attention_mask, token_type_ids, **kwargs)
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
        **kwargs,
    ) -> ReductionOutput:
        """Examples of ``S`` windows ``[B, S, T]`` (TriviaQA): every window is a row with its own
        selection; the outputs are folded back per example — ``logits [B, S, ...]``, ``kept`` one
        ``[B, S]`` per selector, ``select_nll [B]`` summed over the real windows (an example's
        action is the joint action of its windows; empty filler windows hold only [CLS])."""
        b, s = input_ids.shape[:2]

        def rows(x):
            return None if x is None else x.flatten(0, 1)

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


class _BertBackbone:
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
        context = attend(a.query(x).view(shape), a.key(x).view(shape), a.value(x).view(shape), packing)
        h = layer.attention.output(context.flatten(1), x)
        return layer.output(layer.intermediate(h), h)


class _DistilBertBackbone:
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
        context = attend(a.q_lin(x).view(shape), a.k_lin(x).view(shape), a.v_lin(x).view(shape), packing)
        h = layer.sa_layer_norm(a.out_lin(context.flatten(1)) + x)
        return layer.output_layer_norm(layer.ffn(h) + h)


class TRBertForSequenceClassification(TokenReductionMixin, _BertBackbone, BertPreTrainedModel):
    """BERT + selectors; head as stock ``BertForSequenceClassification`` (pooler, dropout, linear)."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self._init_selectors(config)
        self.post_init()

    def _head(self, cls):
        return self.classifier(self.dropout(self.bert.pooler(cls[:, None])))


class TRDistilBertForSequenceClassification(TokenReductionMixin, _DistilBertBackbone, DistilBertPreTrainedModel):
    """DistilBERT + selectors; head as stock ``DistilBertForSequenceClassification``."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self._init_selectors(config)
        self.post_init()

    def _head(self, cls):
        return self.classifier(self.dropout(torch.relu(self.pre_classifier(cls))))


class TRBertForQuestionAnswering(TokenReductionMixin, _BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore; head as stock ``BertForQuestionAnswering``
    (no pooler, ``qa_outputs``). ``logits [B, 2, T]``: start and end logits of every position."""

    restores_tokens = True

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 2
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self._init_selectors(config)
        self.post_init()

    def _head(self, sequence, alive):
        return self.qa_outputs(sequence).transpose(1, 2)


class TRDistilBertForQuestionAnswering(TokenReductionMixin, _DistilBertBackbone, DistilBertPreTrainedModel):
    """DistilBERT + selectors with the residual restore; head as stock ``DistilBertForQuestionAnswering``."""

    restores_tokens = True

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 2
        self.distilbert = DistilBertModel(config)
        self.qa_outputs = nn.Linear(config.dim, 2)
        self.dropout = nn.Dropout(config.qa_dropout)
        self._init_selectors(config)
        self.post_init()

    def _head(self, sequence, alive):
        return self.qa_outputs(self.dropout(sequence)).transpose(1, 2)


class TRBertForHotpotQA(TokenReductionMixin, _BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore and HotpotQA's three heads (spec §7.2): span
    start/end, a switch (span / yes / no) on the max over the real positions (D21: padding masked)
    and a supporting-fact classifier per sentence on ``[h_start; h_end]``.

    ``logits [B, 7, T]`` keep everything token-aligned: rows 0-1 start/end; rows 2-4 the switch
    logits at column 0; rows 5-6 the (not supporting, supporting) logits of each sentence at its
    first token; every other entry is ``MASKED``. Head inputs: ``sent_starts``/``sent_ends [B, M]``
    (token positions, -1 for empty slots)."""

    restores_tokens = True
    head_inputs = ("sent_starts", "sent_ends")

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 7
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.switch = nn.Linear(config.hidden_size, 3)
        self.sentence_hidden = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.sentence_out = nn.Linear(config.hidden_size, 2)
        self._init_selectors(config)
        self.post_init()

    def _head(self, sequence, alive, sent_starts=None, sent_ends=None):
        b, t, _ = sequence.shape
        logits = sequence.new_full((b, 7, t), MASKED)
        logits[:, :2] = self.qa_outputs(sequence).transpose(1, 2)
        pooled = sequence.masked_fill(~alive[..., None], torch.finfo(sequence.dtype).min).amax(1)
        logits[:, 2:5, 0] = self.switch(pooled)
        if sent_starts is not None:
            valid = sent_starts >= 0
            start, end = sent_starts.clamp_min(0), sent_ends.clamp_min(0)
            pair = torch.cat([gather_tokens(sequence, start), gather_tokens(sequence, end)], -1)
            scores = self.sentence_out(torch.nn.functional.gelu(self.sentence_hidden(pair)))  # [B, M, 2]
            scores = scores.masked_fill(~valid[..., None], MASKED).to(logits.dtype)
            column = start.masked_fill(~valid, t)  # empty slots go to a scratch column
            scratch = torch.cat([logits[:, 5:7], logits.new_full((b, 2, 1), MASKED)], -1)
            logits[:, 5:7] = scratch.scatter(2, column[:, None, :].expand(-1, 2, -1), scores.transpose(1, 2))[..., :t]
        return logits


class TRBertForWikihop(TokenReductionMixin, _BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore and WikiHop's token scorer (spec §7.2): one logit
    per position, ``logits [B, 1, T]``; the task reads them at the candidate markers."""

    restores_tokens = True

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 1
        self.bert = BertModel(config, add_pooling_layer=False)
        self.token_scores = nn.Linear(config.hidden_size, 1)
        self._init_selectors(config)
        self.post_init()

    def _head(self, sequence, alive):
        return self.token_scores(sequence).transpose(1, 2)


class SharedChoiceMixin:
    """Multiple choice with one selection per question shared by its option rows (the original's
    ``run_mcrace.py``, spec §7.4 a). Input ``[B, C, T]``: every row ``[CLS] passage [SEP] question
    option [SEP]`` with the passage and question at the same positions in all rows. Positions before
    ``question_end [B]`` are selectable; option tokens and the last [SEP] are always kept. Selector
    logits are averaged over the options before the sigmoid; the decision of the question applies to
    all its rows, expanded example-major (D13 fixed; the guide is read by selector, D15 fixed).
    Outputs: ``logits [B, C]``, ``kept`` ``[B, C]`` per selector, ``select_nll [B]``."""

    head_inputs = ("question_end",)
    _question_end = None  # [rows], set for the duration of a forward

    def forward(self, input_ids, attention_mask, token_type_ids=None, head_inputs=None, **kwargs):
        b, c = input_ids.shape[:2]

        def rows(x):
            return None if x is None else x.flatten(0, 1)

        for key in ("guided_rows", "seeds"):
            if kwargs.get(key) is not None:
                kwargs[key] = kwargs[key].repeat_interleave(c)
        kwargs["guide"] = rows(kwargs.get("guide"))
        self._question_end = head_inputs["question_end"].repeat_interleave(c)
        try:
            out = self.reduce_forward(rows(input_ids), rows(attention_mask), rows(token_type_ids), **kwargs)
        finally:
            self._question_end = None
        out.logits = out.logits.view(b, c)
        out.kept = [k.view(b, c) for k in out.kept]
        if out.select_nll is not None:  # the rows of a question share one decision: count it once
            out.select_nll = out.select_nll.view(b, c)[:, 0]
        out.positions = out.positions.view(b, c, -1)
        return out

    def _selectable(self, alive, orig):
        return alive & (orig < self._question_end[:, None])

    def _select(self, w, x, alive, orig, selection, guide, guided_rows, seeds):
        c = self.num_labels
        selectable = self._selectable(alive, orig)
        logits = self.selectors[w](x).float().view(-1, c, x.shape[1]).mean(1).repeat_interleave(c, 0)
        prob = torch.sigmoid(logits) * selectable
        if selection == "threshold":
            shared = threshold_keep(prob, selectable)
        elif selection == "uniform":
            shared = batch_uniform_keep(prob, selectable)
        else:
            target = None
            if guide is not None and guided_rows is not None:  # the first option row's scores, by selector w
                with torch.no_grad():
                    first = guide[:, w].gather(1, orig).view(-1, c, x.shape[1])[:, 0].repeat_interleave(c, 0)
                    target = guided_target(prob, first, selectable)
            noise = None
            if seeds is not None:
                noise = uniform(seeds.view(-1, c)[:, 0], -1 - w, (x.shape[1],)).repeat_interleave(c, 0)
            shared = sample_keep(prob, selectable, target, guided_rows, noise)
        keep = (shared & selectable) | (alive & ~selectable)
        return prob, keep

    def _nll(self, prob, keep, alive, orig):
        """Averaged over the selectable positions only (spec §7.4 a)."""
        return selection_nll(prob, keep, self._selectable(alive, orig))


class TRBertForMultipleChoice(SharedChoiceMixin, TRBertForSequenceClassification):
    """Head as stock ``BertForMultipleChoice`` (pooler, dropout, ``classifier`` d -> 1 per option)."""

    def __init__(self, config):
        config.num_labels = 1
        super().__init__(config)
        self.num_labels = 4  # options: the width of the logits


class TRDistilBertForMultipleChoice(SharedChoiceMixin, TRDistilBertForSequenceClassification):
    """Head as stock ``DistilBertForMultipleChoice`` (pre_classifier, ReLU, dropout, d -> 1)."""

    def __init__(self, config):
        config.num_labels = 1
        super().__init__(config)
        self.num_labels = 4
