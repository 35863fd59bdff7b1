"""Extractive question answering: one family for SQuAD 2.0 and MRQA (spec §9.2, §9.3).

What this file is: the task protocol for span heads — sliding-window features
(``[CLS] question [SEP] window [SEP]`` with ``--max_seq_length``, ``--doc_stride``,
``--max_query_length``) and the character-to-token answer alignment, the per-row span loss the
reward needs, n-best decoding with ``--n_best_size`` / ``--max_answer_length`` and SQuAD 2.0 null
answers (``--null_score_diff_threshold``), and the official metrics. The dataset modules only read
files into :class:`QAExample` (:mod:`trbert.tasks.qa_readers`).

Feature arrays, one row per window: ``input_ids``/``token_type_ids [N, T]``, ``lengths``,
``start``/``end`` (gold token positions; 0 = [CLS] = no answer in this window), ``example`` (the
window's question), ``offsets [N, T, 2]`` (character span of every context token, -1 elsewhere)
and ``max_context [N, T]`` (the window in which a token has the most context on both sides).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..model import MASKED
from ..objective import distillation_rows
from .answer_metrics import squad_scores
from .files import split_file

logger = logging.getLogger(__name__)

MISALIGNED = "misaligned"


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: list[str]  # gold texts for evaluation; empty: unanswerable
    answer_start: int | None = None  # the training answer: character offset (None: no answer) ...
    answer_text: str = ""  # ... and its text, checked against the context
    where: str = ""  # file:line, for messages
    spans: list[tuple[int, int]] = field(default_factory=list)  # every gold character span (TriviaQA)


@dataclass
class SpanTask:
    """A span-extraction dataset: its reader plus the windowing and decoding settings (from flags)."""

    name: str
    reader: object  # (path) -> list[QAExample]
    train_file: str
    predict_file: str
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0
    drop_answerless_train_windows: bool = False  # MRQA's DeFormer protocol
    family: str = "squad"
    head: str = "span"
    num_labels: int = 2
    counts: dict = field(default_factory=dict)

    @property
    def settings(self) -> dict:
        """Everything besides the text and tokenizer that changes the features (the cache key)."""
        return {
            "doc_stride": self.doc_stride,
            "max_query_length": self.max_query_length,
            "drop_answerless_train_windows": self.drop_answerless_train_windows,
        }

    def path(self, data_dir: str, split: str) -> Path:
        return split_file(data_dir, split, self.train_file, self.predict_file)

    def read(self, data_dir: str, split: str) -> list[QAExample]:
        path = self.path(data_dir, split)
        examples = self.reader(path)
        if not examples:
            raise InputError(f"{path}: the file holds no questions")
        return examples

    # ---- features -------------------------------------------------------------------------
    def featurize(self, examples: list[QAExample], tokenizer, max_length: int, split: str = "train") -> dict:
        training = split == "train"
        self.counts = {"misaligned": 0, "truncated_questions": 0, "empty_contexts": 0, "dropped_windows": 0}
        rows: list[dict] = []
        for number, example in enumerate(examples):
            rows += self._windows(number, example, tokenizer, max_length, training)
        for what, count in self.counts.items():
            if count:
                logger.warning("%s %s: %d %s", self.name, split, count, what.replace("_", " "))
        if not rows:
            raise InputError(f"{self.name} {split}: no usable question (see the warnings above)")
        return _stack(rows, max_length, tokenizer.pad_token_id or 0)

    def _question(self, example: QAExample, tokenizer) -> str:
        """The question cut to ``--max_query_length`` word pieces (at a piece boundary)."""
        encoded = tokenizer(example.question, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoded["input_ids"]) <= self.max_query_length:
            return example.question
        self.counts["truncated_questions"] += 1
        return example.question[: encoded["offset_mapping"][self.max_query_length - 1][1]]

    def _answer_span(self, example: QAExample) -> tuple[int, int] | None | str:
        """Character span of the training answer; ``MISALIGNED`` when its offset does not hold its text."""
        if example.answer_start is None:
            return None
        start, text = example.answer_start, example.answer_text
        if not text or example.context[start : start + len(text)] != text:
            self.counts["misaligned"] += 1
            logger.debug("%s: answer %r is not at offset %d", example.where, text, start)
            return MISALIGNED
        return start, start + len(text)

    def _tokenized_windows(self, example: QAExample, tokenizer, max_length: int) -> list[dict]:
        """``[CLS] question [SEP] window [SEP]`` for every window of the context: ``ids``,
        ``types``, ``context`` (positions of context tokens), ``offsets [T, 2]`` (their character
        spans, -1 elsewhere) and ``max_context``. Windows start ``--doc_stride`` word pieces apart
        (-1: one window length, no overlap)."""
        question = self._question(example, tokenizer)
        question_length = len(tokenizer(question, add_special_tokens=False)["input_ids"])
        window = max_length - question_length - 3
        if window < 1:
            raise InputError(f"{example.where}: --max_seq_length {max_length} leaves no room for the context")
        step = window if self.doc_stride < 0 else min(self.doc_stride, window)
        encoded = tokenizer(
            question,
            example.context,
            truncation="only_second",
            max_length=max_length,
            stride=window - step,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        rows = []
        for w in range(len(encoded["input_ids"])):
            sequence = encoded.sequence_ids(w)
            context = [i for i, s in enumerate(sequence) if s == 1]
            offsets = np.full((len(sequence), 2), -1, dtype=np.int32)
            if context:
                offsets[context] = [encoded["offset_mapping"][w][i] for i in context]
            types = encoded["token_type_ids"][w] if "token_type_ids" in encoded else [int(s == 1) for s in sequence]
            rows.append({"ids": encoded["input_ids"][w], "types": types, "context": context, "offsets": offsets})
        _mark_max_context(rows)
        return rows

    def _windows(self, number: int, example: QAExample, tokenizer, max_length: int, training: bool) -> list[dict]:
        if not example.context.strip():
            self.counts["empty_contexts"] += 1
            return []
        answer = self._answer_span(example)
        if answer is MISALIGNED:
            if training:  # skipped in training (counted); evaluation still scores the question
                return []
            answer = None
        windows = []
        for row in self._tokenized_windows(example, tokenizer, max_length):
            if not row["context"]:
                continue
            row["start"], row["end"] = _locate(row["offsets"], row["context"], answer)
            if training and self.drop_answerless_train_windows and answer is not None and row["start"] == 0:
                self.counts["dropped_windows"] += 1
                continue
            row["example"] = number
            windows.append(row)
        return windows

    # ---- loss -----------------------------------------------------------------------------
    def row_loss(self, logits: torch.Tensor, batch: dict, teacher: bool = False, temperature: float = 1.0):
        """Per-row span loss from ``logits [B, 2, T]``: ``(CE_start + CE_end) / 2``, padding masked;
        or distillation against ``batch["teacher"] [B, 2, T]``, start + end summed (spec D31, kept)."""
        alive = batch["attention_mask"].bool()[:, None, :]
        z = logits.float().masked_fill(~alive, MASKED)
        if teacher:
            target = batch["teacher"].float().masked_fill(~alive, MASKED)
            return sum(distillation_rows(z[:, i], target[:, i], temperature) for i in (0, 1))
        ce = torch.nn.functional.cross_entropy
        return (ce(z[:, 0], batch["start"], reduction="none") + ce(z[:, 1], batch["end"], reduction="none")) / 2

    # ---- decoding and metric --------------------------------------------------------------
    def decode(self, logits: np.ndarray, arrays: dict, examples: list[QAExample]):
        """Answers ``{qid: text}`` and null-score differences ``{qid: float}`` from window logits."""
        best: dict[int, tuple[float, str]] = {}
        null: dict[int, float] = {}
        for row, number in enumerate(arrays["example"].tolist()):
            start, end = logits[row, 0], logits[row, 1]
            null[number] = min(null.get(number, np.inf), float(start[0] + end[0]))
            candidate = self._best_span(start, end, arrays["offsets"][row], arrays["max_context"][row])
            if candidate is not None and candidate[0] > best.get(number, (-np.inf, ""))[0]:
                s, e = candidate[1:]
                text = examples[number].context[arrays["offsets"][row][s][0] : arrays["offsets"][row][e][1]]
                best[number] = (candidate[0], text)
        answers, odds = {}, {}
        for number, example in enumerate(examples):
            if number not in null:
                continue  # no window (empty context): left unanswered, scored as wrong
            score, text = best.get(number, (-np.inf, ""))
            odds[example.qid] = float(null[number] - score) if np.isfinite(score) else float("inf")
            unanswerable = self.version_2_with_negative and odds[example.qid] > self.null_score_diff_threshold
            answers[example.qid] = "" if unanswerable else text
        return answers, {q: (v if np.isfinite(v) else 1e9) for q, v in odds.items()}

    def _best_span(self, start, end, offsets, max_context):
        """``(score, s, e)`` of the best context span among the top-n starts and ends, or None."""
        context = offsets[:, 0] >= 0
        if not context.any():
            return None
        n = self.n_best_size
        starts = [i for i in np.argsort(-np.where(context & max_context, start, -np.inf))[:n] if context[i]]
        ends = [i for i in np.argsort(-np.where(context, end, -np.inf))[:n] if context[i]]
        spans = [(start[s] + end[e], s, e) for s in starts for e in ends if s <= e < s + self.max_answer_length]
        return max(spans, key=lambda x: x[0]) if spans else None

    def score(self, logits: np.ndarray, arrays: dict, data_dir: str, split: str) -> dict:
        """The official SQuAD v2.0 report, plus ``_files``: ``predictions.json`` (and
        ``null_odds.json`` with ``--version_2_with_negative``) in the official formats."""
        examples = self.read(data_dir, split)
        answers, odds = self.decode(logits, arrays, examples)
        report = squad_scores({e.qid: e.answers for e in examples}, answers)
        files = {"predictions.json": answers}
        if self.version_2_with_negative:
            files["null_odds.json"] = odds
        return {**report, "_files": files}


def token_span(offsets: np.ndarray, context: list[int], span: tuple[int, int]) -> tuple[int, int] | None:
    """First and last token ``(s, e)`` covering the character ``span`` (end exclusive) when the
    window's context tokens hold all of it, else None. ``offsets [T, 2]`` are character spans."""
    if not context:
        return None
    inside = np.asarray(context)
    if not (offsets[inside[0]][0] <= span[0] and span[1] <= offsets[inside[-1]][1]):
        return None
    return int(inside[offsets[inside, 1] > span[0]][0]), int(inside[offsets[inside, 0] < span[1]][-1])


def _locate(offsets: np.ndarray, context: list[int], answer) -> tuple[int, int]:
    """Token positions of the answer inside this window, or (0, 0) ([CLS]: not in this window)."""
    found = token_span(offsets, context, answer) if answer is not None else None
    return found or (0, 0)


def _mark_max_context(windows: list[dict]) -> None:
    """A token seen in several windows is decoded only in the one where it has the most context
    on its shorter side (ties to the longer window), as the SQuAD reference code does."""
    best: dict[int, tuple[float, int]] = {}
    for w, row in enumerate(windows):
        context = np.flatnonzero(row["offsets"][:, 0] >= 0)
        for rank, position in enumerate(context):
            score = min(rank, len(context) - 1 - rank) + 0.01 * len(context)
            key = int(row["offsets"][position, 0])
            if score > best.get(key, (-1.0, -1))[0]:
                best[key] = (score, w)
    for w, row in enumerate(windows):
        starts = row["offsets"][:, 0]
        row["max_context"] = np.array([s >= 0 and best[int(s)][1] == w for s in starts], dtype=bool)


def _stack(rows: list[dict], max_length: int, pad: int) -> dict[str, np.ndarray]:
    n = len(rows)
    arrays = {
        "input_ids": np.full((n, max_length), pad, dtype=np.int32),
        "token_type_ids": np.zeros((n, max_length), dtype=np.int8),
        "offsets": np.full((n, max_length, 2), -1, dtype=np.int32),
        "max_context": np.zeros((n, max_length), dtype=bool),
    }
    for i, row in enumerate(rows):
        k = len(row["ids"])
        arrays["input_ids"][i, :k] = row["ids"]
        arrays["token_type_ids"][i, :k] = row["types"]
        arrays["offsets"][i, :k] = row["offsets"]
        arrays["max_context"][i, :k] = row["max_context"]
    arrays["lengths"] = np.array([len(r["ids"]) for r in rows], dtype=np.int32)
    for key in ("start", "end", "example"):
        arrays[key] = np.array([r[key] for r in rows], dtype=np.int64)
    return arrays
