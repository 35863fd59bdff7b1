"""The TR-BERT models: one class per (backbone, head), all built on :mod:`trbert.model`.

What this file is: heads on top of the reduction loop, each named after the stock class whose
weights it loads by their usual keys — sequence classification (also RACE's binary rows), span QA
(SQuAD, MRQA, TriviaQA), HotpotQA's three heads, WikiHop's token scorer and multiple choice with
one selection shared by the options. Token-level heads set ``restores_tokens`` and see every
original position (docs/differences.md K9); heads that read more than the sequence name it in ``head_inputs``.
"""

from __future__ import annotations

from dataclasses import replace

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
from .model import MASKED, TokenReductionMixin
from .selector import THRESHOLD, gather_tokens, selection_nll


class TRBertForSequenceClassification(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
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


class TRDistilBertForSequenceClassification(TokenReductionMixin, DistilBertBackbone, DistilBertPreTrainedModel):
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


class TRBertForQuestionAnswering(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore; head as stock ``BertForQuestionAnswering``
    (no pooler, ``qa_outputs``). ``logits [B, 2, T]``: start and end logits of every position."""

    restores_tokens = span_outputs = True

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 2
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self._init_selectors(config)
        self.post_init()

    def _head(self, sequence, alive):
        return self.qa_outputs(sequence).transpose(1, 2)


class TRDistilBertForQuestionAnswering(TokenReductionMixin, DistilBertBackbone, DistilBertPreTrainedModel):
    """DistilBERT + selectors with the residual restore; head as stock ``DistilBertForQuestionAnswering``."""

    restores_tokens = span_outputs = True

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


class TRBertForHotpotQA(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore and HotpotQA's three heads: span start/end, a
    switch (span / yes / no) on the max over the real positions (padding masked: docs/differences.md F11)
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


class TRBertForWikihop(TokenReductionMixin, BertBackbone, BertPreTrainedModel):
    """BERT + selectors with the residual restore and WikiHop's token scorer: one logit
    per position, ``logits [B, 1, T]``; the task reads them at the candidate markers. The selection
    log-likelihood of a question is the mean over its real windows, as the original."""

    restores_tokens = True
    window_nll = "mean"

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
    ``run_mcrace.py`` model). Input ``[B, C, T]``: every row ``[CLS] passage [SEP] question option
    [SEP]`` with the passage and question at the same positions in all rows. Positions before
    ``question_end [B]`` are selectable; option tokens and the last [SEP] are always kept. Selector
    logits are averaged over the options before the sigmoid; the decision of the question applies to
    all its rows, expanded example-major; the imitation guide is the sum of the option rows' token
    scores (docs/differences.md F15). Outputs: ``logits [B, C]``, ``kept`` ``[B, C]`` per selector,
    ``select_nll [B]`` (the rows carry one shared decision: their mean)."""

    head_inputs = ("question_end",)
    window_nll = "mean"
    _question_end = None  # [rows], set for the duration of a forward

    def forward(self, input_ids, attention_mask, token_type_ids=None, head_inputs=None, **kwargs):
        """The option rows run as the windows of one example (:meth:`segmented_forward`)."""
        c = input_ids.shape[1]
        self._question_end = head_inputs["question_end"].repeat_interleave(c)
        try:
            out = self.segmented_forward(input_ids, attention_mask, token_type_ids, **kwargs)
        finally:
            self._question_end = None
        out.logits = out.logits.squeeze(-1)  # [B, C, 1] -> [B, C]
        return out

    def _selectable(self, alive, orig):
        return alive & (orig < self._question_end[:, None])

    def _select(self, w, x, alive, orig, choice, before=None):
        """One decision per question: probabilities from the option-averaged selector logits, the
        guide summed over the option rows, the first row's seed for the question, so every row
        decides alike."""
        c = self.num_labels

        def per_question(t, how):
            return None if t is None else how(t.view(-1, c, *t.shape[1:])).repeat_interleave(c, 0)

        selectable = self._selectable(alive, orig)
        prob = self._probe(w, x, alive, orig)
        shared = replace(
            choice,
            guide=per_question(choice.guide, lambda t: t.sum(1)),
            seeds=per_question(choice.seeds, lambda t: t[:, 0]),
        )
        return prob, self._decide(w, prob, selectable, orig, shared) | (alive & ~selectable)

    def _probe(self, w, x, alive, orig):
        """The question's keep probability ``[rows, T]`` in each of its option rows: the sigmoid of
        the selector logits averaged over the options (the original's multiple-choice warm-start
        probe and its selection alike), 0 where not selectable."""
        c = self.num_labels
        logits = self.selectors[w](x).float().view(-1, c, x.shape[1]).mean(1).repeat_interleave(c, 0)
        return torch.sigmoid(logits) * self._selectable(alive, orig)

    def _packed_keep(self, w, x, packing, position, length, choice=None, before=None):
        """The shared decision on packed tokens ``x [N, d]``: every token's selector logit is put at
        its original position, averaged over the option rows of its question (the passage and
        question sit at the same positions in all of them) and thresholded; option tokens, the last
        [SEP] and [CLS] are always kept. ``[N]`` bool."""
        c = self.num_labels
        logits = self.selectors[w](x).float()
        dense = logits.new_zeros(packing.counts.shape[0] * length)  # [rows * T] selector logits
        dense.index_copy_(0, packing.row * length + position, logits)
        mean = dense.view(-1, c, length).mean(1).flatten()  # [questions * T]
        shared = torch.sigmoid(mean[packing.row // c * length + position]) >= THRESHOLD
        selectable = position < self._question_end[packing.row]
        return (shared & selectable) | ~selectable | (packing.slot == 0)

    def _nll(self, prob, keep, alive, orig):
        """Averaged over the selectable positions only."""
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


def register_auto_classes() -> None:
    """After ``import trbert``, ``AutoModelForSequenceClassification`` / ``...QuestionAnswering`` /
    ``...MultipleChoice`` and ``transformers.pipeline`` load TR-BERT checkpoints as our models (their
    config.json says ``trbert`` / ``trdistilbert``); stock checkpoints load as before."""
    autos = (AutoModelForSequenceClassification, AutoModelForQuestionAnswering, AutoModelForMultipleChoice)
    for config, models in (
        (TRBertConfig, (TRBertForSequenceClassification, TRBertForQuestionAnswering, TRBertForMultipleChoice)),
        (
            TRDistilBertConfig,
            (TRDistilBertForSequenceClassification, TRDistilBertForQuestionAnswering, TRDistilBertForMultipleChoice),
        ),
    ):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        for auto, model in zip(autos, models, strict=True):
            auto.register(config, model, exist_ok=True)


register_auto_classes()
