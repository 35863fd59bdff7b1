"""The TR-BERT models: one class per (backbone, head) on the loops of :mod:`.encoder`, each named after the stock class
whose weights it loads by their usual keys: sequence classification (also RACE's binary rows), span QA (SQuAD, MRQA,
TriviaQA), HotpotQA's three heads, WikiHop's token scorer and multiple choice with one selection shared by the options.
Token-level heads see every original position (the residual restore, docs/differences.md K9).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
    DistilBertModel,
    DistilBertPreTrainedModel,
)

from .backbones import BertBackbone, DistilBertBackbone, TRBertConfig, TRDistilBertConfig
from .encoder import MASKED, TokenReductionMixin
from .policy import Site
from .selector import gather_tokens, restore_tokens, selection_nll


class TRBertForSequenceClassification(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
    """BERT + selectors; head as stock ``BertForSequenceClassification`` (pooler, dropout, linear)."""

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self._init_reduction(config, config.num_labels)

    def _head(self, cls):
        return self.classifier(self.dropout(self.bert.pooler(cls[:, None])))


class TRDistilBertForSequenceClassification(TokenReductionMixin, DistilBertBackbone, DistilBertPreTrainedModel):
    """DistilBERT + selectors; head as stock ``DistilBertForSequenceClassification``."""

    def __init__(self, config):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self._init_reduction(config, config.num_labels)

    def _head(self, cls):
        return self.classifier(self.dropout(torch.relu(self.pre_classifier(cls))))


class TRBertForQuestionAnswering(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore; head as stock ``BertForQuestionAnswering`` (no pooler,
    ``qa_outputs``). ``logits [B, 2, T]``: start and end logits of every position."""

    restores_tokens = span_outputs = True
    token_outputs = 2

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self._init_reduction(config, 2)

    def _head(self, sequence, alive):
        return self.qa_outputs(sequence).transpose(1, 2)


class TRDistilBertForQuestionAnswering(TokenReductionMixin, DistilBertBackbone, DistilBertPreTrainedModel):
    """DistilBERT + selectors with the residual restore; head as stock ``DistilBertForQuestionAnswering``."""

    restores_tokens = span_outputs = True
    token_outputs = 2

    def __init__(self, config):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.qa_outputs = nn.Linear(config.dim, 2)
        self.dropout = nn.Dropout(config.qa_dropout)
        self._init_reduction(config, 2)

    def _head(self, sequence, alive):
        return self.qa_outputs(self.dropout(sequence)).transpose(1, 2)


class TRBertForHotpotQA(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore and HotpotQA's three heads: span start/end, a switch (span / yes / no)
    on the max over the real positions (padding masked: docs/differences.md F11) and a supporting-fact classifier per
    sentence on ``[h_start; h_end]``. ``logits [B, 7, T]`` keep everything token-aligned: rows 0-1 start/end; rows 2-4
    the switch logits at column 0; rows 5-6 the (not supporting, supporting) logits of each sentence at its first token;
    ``MASKED`` elsewhere. Head inputs: ``sent_starts``/``sent_ends [B, M]`` (-1: empty)."""

    restores_tokens = True
    head_inputs = ("sent_starts", "sent_ends")
    token_outputs, pooled_outputs = 2, 3  # start/end per position; the switch on the max
    original_names = {"qa_classifier": "switch", "sent_linear": "sentence_hidden", "sent_classifier": "sentence_out"}

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.switch = nn.Linear(config.hidden_size, 3)
        self.sentence_hidden = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.sentence_out = nn.Linear(config.hidden_size, 2)
        self._init_reduction(config, 7)

    def _head(self, sequence, alive, sent_starts=None, sent_ends=None):
        b, t, _ = sequence.shape
        logits = sequence.new_full((b, 7, t), MASKED)
        logits[:, :2] = self.qa_outputs(sequence).transpose(1, 2)
        pooled = sequence.masked_fill(~alive[..., None], torch.finfo(sequence.dtype).min).amax(1)
        logits[:, 2:5, 0] = self.switch(pooled)
        if sent_starts is not None:  # each sentence's logits at its first token; empty slots write nothing
            start, end = sent_starts.clamp_min(0), sent_ends.clamp_min(0)
            pair = torch.cat([gather_tokens(sequence, start), gather_tokens(sequence, end)], -1)
            scores = self.sentence_out(torch.nn.functional.gelu(self.sentence_hidden(pair)))  # [B, M, 2]
            logits[:, 5:7] = restore_tokens(logits[:, 5:7].mT, start, scores, sent_starts >= 0).mT
        return logits


class TRBertForWikihop(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore and WikiHop's token scorer, ``logits [B, 1, T]`` (read at the
    candidate markers); a question's selection log-likelihood is the mean over its real windows, as the original."""

    restores_tokens = True
    window_nll = "mean"
    token_outputs = 1
    original_names = {"qa_outputs": "token_scores"}

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.token_scores = nn.Linear(config.hidden_size, 1)
        self._init_reduction(config, 1)

    def _head(self, sequence, alive):
        return self.token_scores(sequence).transpose(1, 2)


class SharedChoiceMixin:
    """Multiple choice with one selection per question shared by its option rows (the original's ``run_mcrace.py``).
    Input ``[B, C, T]``: rows ``[CLS] passage [SEP] question option [SEP]``, passage and question at the same positions
    in all rows. Positions before ``question_end [B]`` are selectable; option tokens and the last [SEP] always kept. The
    option rows run as their question's windows; a selector's logits are averaged over the options before the sigmoid,
    the question's decision applies to all its rows (example-major), and the imitation guide sums the rows' token scores
    (docs/differences.md F15). Outputs: ``logits [B, C]``, ``kept [B, C]`` per selector, ``select_nll [B]``."""

    head_inputs = ("question_end",)
    window_nll = "mean"
    _question_end = _options = None  # [rows] and C, set for the duration of a forward

    def __init__(self, config):
        config.num_labels = 1  # the classifier: d -> 1 per option
        super().__init__(config)
        self.num_labels = 4  # options: the width of the logits

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, head_inputs=None, **kwargs):
        ends, self._options = (head_inputs or {}).get("question_end"), input_ids.shape[1]
        self._question_end = None if ends is None else ends.repeat_interleave(self._options)
        try:
            out = super().forward(input_ids, attention_mask, token_type_ids, **kwargs)
        finally:
            self._question_end = self._options = None
        out.logits = out.logits.squeeze(-1)  # [B, C, 1] -> [B, C]
        return out

    def _window_policy(self, policy, b, s):
        return policy.options()

    def _decide(self, policy, site: Site):
        """One decision per question through the keep rule, on its selectable columns, expanded to its option rows."""
        if (c := self._options) and self._question_end is None:
            raise ValueError("a shared selection needs head_inputs={'question_end': [B]} (where each option begins)")
        selectable = site.alive & (site.positions < self._question_end[:, None])
        logits = lambda: site.logits().float().view(-1, c, site.alive.shape[1]).mean(1)  # noqa: E731
        question = Site(site.w, selectable[::c], site.positions[::c], site.width, logits)
        keep = policy.keep(question)
        nll = selection_nll(question.prob, keep, question.alive).repeat_interleave(c) if policy.samples else None
        rows = keep.repeat_interleave(c, 0) | (site.alive & ~selectable)
        scored = lambda: question.prob.repeat_interleave(c, 0).masked_fill(~selectable, float("nan"))  # noqa: E731
        return rows, scored, nll  # (a trace shows the protected option tokens as not scored)


class TRBertForMultipleChoice(SharedChoiceMixin, TRBertForSequenceClassification):
    """Head as stock ``BertForMultipleChoice`` (pooler, dropout, ``classifier`` d -> 1 per option)."""


class TRDistilBertForMultipleChoice(SharedChoiceMixin, TRDistilBertForSequenceClassification):
    """Head as stock ``DistilBertForMultipleChoice`` (pre_classifier, ReLU, dropout, d -> 1)."""


HEADS = {  # head -> backbone -> model (the original has no DistilBERT model for HotpotQA and WikiHop either)
    "classification": {"bert": TRBertForSequenceClassification, "distilbert": TRDistilBertForSequenceClassification},
    "span": {"bert": TRBertForQuestionAnswering, "distilbert": TRDistilBertForQuestionAnswering},
    "choice": {"bert": TRBertForMultipleChoice, "distilbert": TRDistilBertForMultipleChoice},
    "hotpot": {"bert": TRBertForHotpotQA},
    "wikihop": {"bert": TRBertForWikihop},
}


def register_auto_classes() -> None:
    """After ``import trbert``, transformers' Auto classes and ``pipeline`` load TR-BERT checkpoints as our models."""
    autos = {"classification": AutoModelForSequenceClassification, "span": AutoModelForQuestionAnswering,
             "choice": AutoModelForMultipleChoice}  # fmt: skip
    for backbone, config in (("bert", TRBertConfig), ("distilbert", TRDistilBertConfig)):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        for head, auto in autos.items():
            auto.register(config, HEADS[head][backbone], exist_ok=True)


register_auto_classes()
