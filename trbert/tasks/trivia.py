"""TriviaQA (``run_triviaqa.py``): long documents as up to ``--max_segment`` windows of one example,
trained with a loss normalised over all of the example's windows together.

What this file is: the span family's differences for TriviaQA — the reader (a JSON list of
``{"context", "qas": [{"question", "qid", "answers": {"Aliases": [...]}, "detected_answers":
[{"char_spans": [[start, end]]}]}]}``, end inclusive), features with a window axis
(``input_ids [N, S, T]``, every gold position of every window in ``starts``/``ends [N, S, A]``), the
shared-normalisation ("OR") loss per example (loss, distillation and selector loss all per example:
docs/differences.md F9), decoding of the best span across windows, and the official EM/F1 over aliases.
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
from .base import Family, Predictions, register
from .files import load_json, require
from .span import QAExample, SpanConfig, SpanTask, token_span


def read_trivia(path: Path) -> list[QAExample]:
    entries = load_json(path)
    require(isinstance(entries, list), str(path), "expected a JSON list of entries")
    examples = []
    for number, entry in enumerate(entries):
        where = f"{path}: entry {number}"
        require(isinstance(entry, dict) and isinstance(entry.get("context"), str), where, 'no string "context"')
        for question in entry.get("qas", []):
            require(isinstance(question.get("question"), str), where, 'a question without "question"')
            aliases = (question.get("answers") or {}).get("Aliases", [])
            spans = [
                (int(s), int(e) + 1)
                for answer in question.get("detected_answers", [])
                for s, e in answer.get("char_spans", [])
            ]
            qid = str(question.get("qid", f"{number}-{len(examples)}"))
            examples.append(
                QAExample(qid, question["question"], entry["context"], list(aliases), where=where, spans=spans)
            )
    return examples


@dataclass
class TriviaTask(SpanTask):
    max_segment: int = 1
    max_num_answers: int = 64
    max_doc_len: int = -1

    @property
    def settings(self) -> dict:
        own = {"max_segment": self.max_segment, "max_num_answers": self.max_num_answers}
        return {**super().settings, **own, "max_doc_len": self.max_doc_len}

    def featurize(
        self, examples: Sequence[QAExample], tokenizer, max_length: int, split: str, first: int, counts: Counter
    ) -> dict[str, np.ndarray]:
        n, s, a = len(examples), self.max_segment, self.max_num_answers
        arrays = {
            "input_ids": np.full((n, s, max_length), tokenizer.pad_token_id or 0, dtype=np.int32),
            "token_type_ids": np.zeros((n, s, max_length), dtype=np.int8),
            "lengths": np.ones((n, s), dtype=np.int32),  # a filler window holds [CLS] only
            "offsets": np.full((n, s, max_length, 2), -1, dtype=np.int32),
            "max_context": np.zeros((n, s, max_length), dtype=bool),
            "starts": np.full((n, s, a), -1, dtype=np.int64),
            "ends": np.full((n, s, a), -1, dtype=np.int64),
        }
        arrays["input_ids"][:, :, 0] = tokenizer.cls_token_id
        for i, example in enumerate(examples):
            self._fill(arrays, i, example, tokenizer, max_length, counts)
        return arrays

    def _fill(self, arrays, i, example, tokenizer, max_length, counts: Counter) -> None:
        if not example.context.strip():
            counts["empty_contexts"] += 1
            return
        found, example = False, self._cut(example, tokenizer)
        for w, row in enumerate(self._tokenized_windows(example, tokenizer, max_length, counts)[: self.max_segment]):
            k = len(row["ids"])
            arrays["input_ids"][i, w, :k], arrays["token_type_ids"][i, w, :k] = row["ids"], row["types"]
            arrays["lengths"][i, w] = k
            arrays["offsets"][i, w, :k], arrays["max_context"][i, w, :k] = row["offsets"], row["max_context"]
            starts, ends = _gold_positions(row["offsets"], row["context"], example.spans)
            found |= len(starts) > 0
            starts, ends = starts[: self.max_num_answers], ends[: self.max_num_answers]
            arrays["starts"][i, w, : len(starts)], arrays["ends"][i, w, : len(ends)] = starts, ends
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
        t = logits.shape[-1]
        window = torch.arange(logits.shape[1], device=z.device)[None, :, None] * t
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
        answers = {}
        for i, example in enumerate(examples):
            best = (-np.inf, "")
            for w in range(logits.shape[1]):
                offsets = arrays["offsets"][i, w]
                span = self._best_span(
                    logits[i, w, 0], logits[i, w, 1], offsets, arrays["max_context"][i, w], arrays["lengths"][i, w]
                )
                if span is not None and span[0] > best[0]:
                    best = (span[0], example.context[offsets[span[1]][0] : offsets[span[2]][1]])
            if np.isfinite(best[0]):  # a question without any span is left unanswered (scores 0)
                answers[example.qid] = best[1]
        return answers, {}

    def predict(self, logits: np.ndarray, features: dict, examples: Sequence[QAExample]) -> Predictions:
        answers, _ = self.decode(logits, features, examples)
        return Predictions(answers, {"predictions.json": answers})


def _gold_positions(offsets: np.ndarray, context: list[int], spans) -> tuple[list[int], list[int]]:
    """Token positions of every gold character span inside this window, duplicates removed."""
    found = sorted({pair for pair in (token_span(offsets, context, span) for span in spans) if pair is not None})
    return [s for s, _ in found], [e for _, e in found]


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
    """``run_triviaqa.py``'s flags: the span flags plus the window axis."""

    max_segment: int = option(1, "windows read per document (the rest is ignored)", fixed=True)
    max_num_answers: int = option(64, "gold positions kept per window", fixed=True)
    max_doc_len: int = option(-1, "document word pieces read per question (-1: all, then cut by --max_segment)",
                              fixed=True)  # fmt: skip
    ignore_seq_with_no_answers: bool = inert()


def _build(config, name: str, seed: int) -> TriviaTask:
    options = config.span_options()
    return TriviaTask(
        "triviaqa",
        read_trivia,
        trivia_scores,
        max_segment=config.max_segment,
        max_num_answers=config.max_num_answers,
        max_doc_len=config.max_doc_len,
        **options,
    )


FAMILY = register(
    Family(
        "trivia",
        TriviaConfig,
        _build,
        defaults=dict(
            task_name="triviaqa",
            data_dir="triviaqa",
            max_seq_length=1024,
            learning_rate=3e-5,
            alpha=0.1,
            guide_rate=0.2,
            num_train_epochs=5.0,
            warmup_steps=1000,
            save_steps=-1,
        ),
        aliases={"max_seq_length": "--max_seq_len", "max_query_length": "--max_question_len"},
        min_length=lambda config: config.max_query_length + 4,  # [CLS] question [SEP] context [SEP]
        view=False,  # several windows per example
    )
)
