"""TriviaQA (``run_triviaqa.py``): long documents as up to ``--max_segment`` windows of one example,
trained with a loss normalised over all of the example's windows together.

The span family's differences: the reader (a JSON list of ``{"context", "qas": [{"question", "qid",
"answers": {"Aliases": [...]}, "detected_answers": [{"char_spans": [[start, end]]}]}]}``, end
inclusive), features with a window axis (``input_ids [N, S, T]``, every window's gold positions in
``starts``/``ends [N, S, A]``), the shared-normalisation ("OR") loss, distillation and selector loss
per example (docs/differences.md F9), the best span across windows, EM/F1 over the aliases.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import inert, option, with_defaults
from ..core.encoder import MASKED
from .answer_metrics import trivia_scores
from .base import Family, Predictions, options_for, register
from .files import load_json, require
from .span import QAExample, SpanConfig, SpanTask, put_window, token_span, window_arrays


def read_trivia(path: Path) -> list[QAExample]:
    entries = load_json(path)
    require(isinstance(entries, list), str(path), "expected a JSON list of entries")
    examples = []
    for number, entry in enumerate(entries):
        where = f"{path}: entry {number}"
        require(isinstance(entry, dict) and isinstance(entry.get("context"), str), where, 'no string "context"')
        for question in entry.get("qas", []):
            require(isinstance(question.get("question"), str), where, 'a question without "question"')
            aliases = list((question.get("answers") or {}).get("Aliases", []))
            detected = question.get("detected_answers", [])
            spans = [(int(s), int(e) + 1) for answer in detected for s, e in answer.get("char_spans", [])]
            qid = str(question.get("qid", f"{number}-{len(examples)}"))
            examples.append(QAExample(qid, question["question"], entry["context"], aliases, where=where, spans=spans))
    return examples


@dataclass
class TriviaTask(SpanTask):
    max_segment: int = 1
    max_num_answers: int = 64
    max_doc_len: int = -1

    @property
    def settings(self) -> dict:
        return {**super().settings, **{k: getattr(self, k) for k in ("max_segment", "max_num_answers", "max_doc_len")}}

    def featurize(self, examples: Sequence[QAExample], tokenizer, max_length, split, first, counts: Counter) -> dict:
        n, s, a = len(examples), self.max_segment, self.max_num_answers
        arrays = window_arrays((n, s), max_length, tokenizer.pad_token_id or 0)
        arrays["input_ids"][:, :, 0] = tokenizer.cls_token_id  # a filler window holds [CLS] only
        arrays["starts"] = np.full((n, s, a), -1, dtype=np.int64)
        arrays["ends"] = arrays["starts"].copy()
        for i, example in enumerate(examples):
            self._fill(arrays, i, example, tokenizer, max_length, counts)
        return arrays

    def _fill(self, arrays, i, example, tokenizer, max_length, counts: Counter) -> None:
        if not example.context.strip():
            counts["empty_contexts"] += 1
            return
        found, example = False, self._cut(example, tokenizer)
        for w, row in enumerate(self._tokenized_windows(example, tokenizer, max_length, counts)[: self.max_segment]):
            put_window(arrays, (i, w), row)
            gold = sorted({token_span(row["offsets"], row["context"], span) for span in example.spans} - {None})
            found |= len(gold) > 0
            gold = np.array(gold[: self.max_num_answers], dtype=np.int64).reshape(-1, 2)  # [G, 2]: (start, end)
            arrays["starts"][i, w, : len(gold)], arrays["ends"][i, w, : len(gold)] = gold[:, 0], gold[:, 1]
        if not found:  # no gold anywhere: [CLS] of every window (as the original)
            counts["questions_without_gold_span"] += 1
            arrays["starts"][i, :, 0] = arrays["ends"][i, :, 0] = 0

    def _cut(self, example: QAExample, tokenizer) -> QAExample:
        """The document cut after its first ``--max_doc_len`` word pieces (-1: whole), as WikiHop's
        supports; answers past the cut are not in any window."""
        if self.max_doc_len < 0:
            return example
        offsets = tokenizer(example.context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= self.max_doc_len:
            return example
        end = offsets[self.max_doc_len - 1][1] if self.max_doc_len else 0
        return dataclasses.replace(example, context=example.context[:end])

    def row_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per example: ``-(logsumexp over gold positions of all windows - logsumexp over all
        positions of all windows)``, start and end averaged; ``logits [B, S, 2, T]``."""
        z = self.logit_groups(logits, batch)[0][0]  # [B, 2, S * T]
        window = torch.arange(logits.shape[1], device=z.device)[None, :, None] * logits.shape[-1]  # [1, S, 1]
        losses = []
        for i, key in enumerate(("starts", "ends")):
            gold = batch[key]
            index = (gold + window).masked_fill(gold < 0, 0).flatten(1)
            picked = z[:, i].gather(1, index).masked_fill(gold.flatten(1) < 0, float("-inf"))
            losses.append(torch.logsumexp(z[:, i], -1) - torch.logsumexp(picked, -1))
        return (losses[0] + losses[1]) / 2

    def logit_groups(self, logits: torch.Tensor, batch: dict):
        """Start and end distributions over all positions of all windows ``[B, 2, S * T]``."""
        b, s, _, t = logits.shape
        alive = batch["attention_mask"].bool()[:, :, None, :]
        z = logits.float().masked_fill(~alive, MASKED).transpose(1, 2).reshape(b, 2, s * t)
        return [(z, None)]

    def decode(self, logits: np.ndarray, arrays: dict, examples: list[QAExample]):
        """The best span over all windows of each example (no null answer in TriviaQA)."""
        n, s = logits.shape[:2]
        flat = {k: arrays[k].reshape(n * s, *arrays[k].shape[2:]) for k in ("offsets", "max_context", "lengths")}
        flat["example"] = np.repeat(np.arange(n), s)  # the windows as rows of their example, as SpanTask decodes
        best = self.best_spans(logits.reshape(n * s, *logits.shape[2:]), flat)
        # a question without any span is left unanswered (scores 0)
        answered = [(examples[i], span) for i, (_, score, span) in best.items() if np.isfinite(score)]
        return {e.qid: e.context[span[0] : span[1]] for e, span in answered}, {}

    def predict(self, logits: np.ndarray, features: dict, examples: Sequence[QAExample]) -> Predictions:
        answers, _ = self.decode(logits, features, examples)
        return Predictions(answers, {"predictions.json": answers})


@dataclass
class TriviaConfig(
    with_defaults(
        SpanConfig,
        "TriviaSpanConfig",
        train_file="train.json",
        predict_file="dev.json",
        doc_stride=-1,
        max_query_length=55,
        n_best_size=10,
    )
):
    """``run_triviaqa.py``'s flags: the span flags plus the window axis (every question has an answer)."""

    version_2_with_negative: bool = inert()
    null_score_diff_threshold: float = inert(0.0, "inert (every TriviaQA question is answered)")

    max_segment: int = option(1, "windows read per document (the rest is ignored)", fixed=True)
    max_num_answers: int = option(64, "gold positions kept per window", fixed=True)
    max_doc_len: int = option(-1, "document word pieces read per question (-1: all, then cut by --max_segment)",
                              fixed=True)  # fmt: skip
    ignore_seq_with_no_answers: bool = inert()


def _build(config, name: str, seed: int) -> TriviaTask:
    return TriviaTask("triviaqa", read_trivia, trivia_scores, **options_for(TriviaTask, config))


FAMILY = register(Family(
    "trivia", TriviaConfig, _build,
    defaults=dict(task_name="triviaqa", data_dir="triviaqa", max_seq_length=1024, learning_rate=3e-5, alpha=0.1,
                  guide_rate=0.2, num_train_epochs=5.0, warmup_steps=1000, save_steps=-1),
    aliases={"max_seq_length": "--max_seq_len", "max_query_length": "--max_question_len"},
    min_length=lambda config: config.max_query_length + 4,  # [CLS] question [SEP] context [SEP]
    view=False,  # several windows per example
))  # fmt: skip
