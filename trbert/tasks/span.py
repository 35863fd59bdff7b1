"""Extractive question answering: the span machinery shared by SQuAD, MRQA, TriviaQA.

The families (:mod:`.squad`, :mod:`.mrqa`, :mod:`.trivia`) only read files into :class:`QAExample`
and name their metric; here: their shared flags (:class:`SpanConfig`), sliding-window features
(``[CLS] question [SEP] window [SEP]``) with the character-to-token answer alignment, the per-row
span loss, n-best decoding and SQuAD 2.0 null answers.

Feature arrays, one row per window: ``input_ids``/``token_type_ids [N, T]``, ``lengths``,
``start``/``end`` (gold token positions; 0 = [CLS] = no answer in this window), ``example`` (the
window's question), ``offsets [N, T, 2]`` (character span of every context token, -1 elsewhere)
and ``max_context [N, T]`` (the window in which a token has the most context on both sides).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import inert, option
from ..core.encoder import MASKED
from ..core.objective import cross_entropy_rows
from .base import Predictions
from .files import checked_questions, require, split_file

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
class SpanConfig:
    """Flags of the span-QA scripts (``run_squad.py``, ``run_mrqa.py``, ``run_triviaqa.py``)."""

    train_file: str = option("", "training file inside --data_dir")
    predict_file: str = option("", "evaluation file inside --data_dir")
    version_2_with_negative: bool = option(False, "questions may have no answer (SQuAD 2.0)")
    null_score_diff_threshold: float = option(0.0, "answer 'no answer' when null score - best span score exceeds this")
    doc_stride: int = option(128, "step between the starts of consecutive context windows; -1: no overlap", fixed=True)
    max_query_length: int = option(64, "question word pieces kept (longer ones are cut)", fixed=True)
    n_best_size: int = option(20, "start and end candidates considered per window")
    max_answer_length: int = option(30, "longest answer in word pieces")
    verbose_logging: bool = inert()
    threads: int = inert(1, "inert (feature conversion runs in the fast tokenizer)")


@dataclass
class SpanTask:
    """A span-extraction dataset: its reader, its metric, and the windowing and decoding settings."""

    name: str
    reader: Callable[[Path], list[QAExample]]
    scorer: Callable[[dict, dict], dict]  # (gold answers by qid, predictions by qid) -> report
    train_file: str
    predict_file: str
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0
    drop_answerless_train_windows: bool = False  # MRQA's DeFormer protocol
    markers: tuple[str, ...] = ()  # context markers read as one token each: [unused1], [unused2], ...
    head: str = "span"
    num_labels: int = 2
    metric: str = "f1"

    @property
    def settings(self) -> dict:
        keys = ("doc_stride", "max_query_length", "drop_answerless_train_windows")
        return {**{k: getattr(self, k) for k in keys}, "markers": list(self.markers), "windows": "cut here"}  # (not by
        # the tokenizer: caches of tokenizers 0.23.1-0.23.2, whose windows lost context, are never reused)

    def path(self, data_dir: str, split: str) -> Path:
        return split_file(data_dir, split, self.train_file, self.predict_file)

    def read(self, data_dir: str, split: str) -> Iterator[QAExample]:
        path = self.path(data_dir, split)
        return checked_questions(self.reader(path), str(path))

    def featurize(
        self, examples: Sequence[QAExample], tokenizer, max_length: int, split: str, first: int, counts: Counter
    ) -> dict[str, np.ndarray]:
        if self.markers:  # a copy of the tokenizer that reads each context marker ([PAR]...) as one token
            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.add_tokens(list(self.markers), special_tokens=True)
        rows: list[dict] = []
        for number, example in enumerate(examples, first):
            rows += self._windows(number, example, tokenizer, max_length, split == "train", counts)
        arrays = window_arrays((len(rows),), max_length, tokenizer.pad_token_id or 0)
        for i, row in enumerate(rows):
            put_window(arrays, i, row)
        for key in ("start", "end", "example"):
            arrays[key] = np.array([r[key] for r in rows], dtype=np.int64)
        ids = arrays["input_ids"]
        for k, marker in enumerate(tokenizer.convert_tokens_to_ids(list(self.markers))):
            ids[ids == marker] = tokenizer.convert_tokens_to_ids(f"[unused{k + 1}]")  # what the marker stands for
        return arrays

    def _question(self, example: QAExample, tokenizer, counts: Counter) -> str:
        """The question cut to ``--max_query_length`` word pieces (at a piece boundary)."""
        encoded = tokenizer(example.question, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoded["input_ids"]) <= self.max_query_length:
            return example.question
        counts["truncated_questions"] += 1
        return example.question[: encoded["offset_mapping"][self.max_query_length - 1][1]]

    def _answer_span(self, example: QAExample, counts: Counter) -> tuple[int, int] | None | str:
        """Character span of the training answer; ``MISALIGNED`` when its offset does not hold its text."""
        if example.answer_start is None:
            return None
        start, text = example.answer_start, example.answer_text
        if not text or example.context[start : start + len(text)] != text:
            counts["misaligned"] += 1
            logger.debug("%s: answer %r is not at offset %d", example.where, text, start)
            return MISALIGNED
        return start, start + len(text)

    def _tokenized_windows(self, example: QAExample, tokenizer, max_length: int, counts: Counter) -> list[dict]:
        """``[CLS] question [SEP] window [SEP]`` for every window of the context: ``input_ids``,
        ``token_type_ids`` (1 from the window on), ``context`` (positions of context tokens), ``offsets
        [T, 2]`` (their character spans, -1 elsewhere) and ``max_context``. Windows start ``--doc_stride``
        word pieces apart (-1: one window length, no overlap) until one reaches the context's end. Cut
        here, not by the tokenizer's overflow (tokenizers 0.23.1-0.23.2 end it early, losing context)."""
        question = tokenizer(self._question(example, tokenizer, counts), add_special_tokens=False)["input_ids"]
        window = max_length - len(question) - 3  # context room
        require(window >= 1, example.where, f"--max_seq_length {max_length} leaves no room for the context")
        step = window if self.doc_stride < 0 else min(self.doc_stride, window)
        context = tokenizer(example.context, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, spans = context["input_ids"], np.asarray(context["offset_mapping"], dtype=np.int32).reshape(-1, 2)
        head = [tokenizer.cls_token_id, *question, tokenizer.sep_token_id]
        rows = []
        for start in range(0, step * -(-max(len(ids) - window, 0) // step) + 1, step):
            piece = ids[start : start + window]
            positions = list(range(len(head), len(head) + len(piece)))
            offsets = np.full((len(head) + len(piece) + 1, 2), -1, dtype=np.int32)
            offsets[positions] = spans[start : start + len(piece)]
            types = [0] * len(head) + [1] * (len(piece) + 1)
            rows.append(dict(input_ids=[*head, *piece, tokenizer.sep_token_id], token_type_ids=types,
                             context=positions, offsets=offsets))  # fmt: skip
        _mark_max_context(rows)
        return rows

    def _windows(self, number, example: QAExample, tokenizer, max_length: int, training: bool, counts) -> list[dict]:
        if not example.context.strip():
            counts["empty_contexts"] += 1
            return []
        answer = self._answer_span(example, counts)
        if answer is MISALIGNED:
            if training:  # skipped in training (counted); evaluation still scores the question
                return []
            answer = None
        windows = []
        for row in self._tokenized_windows(example, tokenizer, max_length, counts):
            if not row["context"]:
                continue
            found = token_span(row["offsets"], row["context"], answer) if answer is not None else None
            row["start"], row["end"] = found or (0, 0)  # (0, 0): [CLS], not in this window
            if training and self.drop_answerless_train_windows and answer is not None and row["start"] == 0:
                counts["dropped_windows"] += 1
                continue
            row["example"] = number
            windows.append(row)
        return windows

    def row_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per-row ``(CE_start + CE_end) / 2`` from ``logits [B, 2, T]``, padding masked (docs/differences.md N12)."""
        z = self.logit_groups(logits, batch)[0][0]
        return (cross_entropy_rows(z[:, 0], batch["start"]) + cross_entropy_rows(z[:, 1], batch["end"])) / 2

    def logit_groups(self, logits: torch.Tensor, batch: dict):
        """Start and end distributions over the row's real positions ``[B, 2, T]``; distillation
        sums the two (as the original, docs/differences.md K6)."""
        alive = batch["attention_mask"].bool()[:, None, :]
        return [(logits.float().masked_fill(~alive, MASKED), None)]

    def predict(self, logits: np.ndarray, features: dict, examples: Sequence[QAExample]) -> Predictions:
        answers, odds = self.decode(logits, features, examples)
        files = {"predictions.json": answers}
        if self.version_2_with_negative:
            files["null_odds.json"] = odds
        return Predictions(answers, files)

    def score(self, predictions: Predictions, examples: Sequence[QAExample]) -> dict:
        return self.scorer({e.qid: e.answers for e in examples}, predictions.answers)

    def decode(self, logits: np.ndarray, arrays: dict, examples: Sequence[QAExample]):
        """Answers ``{qid: text}`` and null-score differences ``{qid: float}`` from window logits."""
        answers, odds = {}, {}
        for number, (null, score, span) in self.best_spans(logits, arrays).items():
            example = examples[number]
            odds[example.qid] = float(null - score) if np.isfinite(score) else float("inf")
            unanswerable = self.version_2_with_negative and odds[example.qid] > self.null_score_diff_threshold
            answers[example.qid] = "" if unanswerable or span is None else example.context[span[0] : span[1]]
        # a question without a window (empty context) is left unanswered, scored as wrong
        return answers, {q: (v if np.isfinite(v) else 1e9) for q, v in odds.items()}

    def best_spans(self, logits: np.ndarray, arrays: dict) -> dict[int, tuple[float, float, tuple | None]]:
        """Per question: ``(null score, best span score, its character span or None)`` over its windows."""
        found: dict[int, list] = {}
        for row, number in enumerate(arrays["example"].tolist()):
            start, end, offsets = logits[row, 0], logits[row, 1], arrays["offsets"][row]
            null, score, span = found.setdefault(number, [np.inf, -np.inf, None])
            found[number][0] = min(null, float(start[0] + end[0]))
            candidate = self._best_span(start, end, offsets, arrays["max_context"][row], arrays["lengths"][row])
            if candidate is not None and candidate[0] > score:
                found[number][1:] = candidate[0], (int(offsets[candidate[1]][0]), int(offsets[candidate[2]][1]))
        return {number: tuple(value) for number, value in found.items()}

    def _best_span(self, start, end, offsets, max_context, length: int):
        """``(score, s, e)`` of the best context span, or None. As the original: the top-n starts
        and the top-n ends among all ``length`` positions of the window (question and special
        tokens included; ties to the earlier position), then only pairs with the start in the
        context where it has its maximal context, the end in the context and at most
        ``--max_answer_length`` positions; the first best in (start, end) rank order."""
        context = offsets[:, 0] >= 0
        n, length = self.n_best_size, int(length)
        starts = np.argsort(-start[:length], kind="stable")[:n]
        ends = np.argsort(-end[:length], kind="stable")[:n]
        spans = [
            (start[s] + end[e], s, e)
            for s in starts
            for e in ends
            if context[s] and max_context[s] and context[e] and s <= e < s + self.max_answer_length
        ]
        return max(spans, key=lambda x: x[0]) if spans else None


def token_span(offsets: np.ndarray, context: list[int], span: tuple[int, int]) -> tuple[int, int] | None:
    """First and last token ``(s, e)`` covering the character ``span`` (end exclusive) when the
    window's context tokens hold all of it, else None. ``offsets [T, 2]`` are character spans."""
    if not context:
        return None
    inside = np.asarray(context)
    if not (offsets[inside[0]][0] <= span[0] and span[1] <= offsets[inside[-1]][1]):
        return None
    return int(inside[offsets[inside, 1] > span[0]][0]), int(inside[offsets[inside, 0] < span[1]][-1])


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
        row["max_context"] = np.array([s >= 0 and best[int(s)][1] == w for s in row["offsets"][:, 0]], dtype=bool)


def window_arrays(shape: tuple, max_length: int, pad: int) -> dict[str, np.ndarray]:
    """Empty arrays of ``shape`` windows (``[N]``, or ``[N, S]``); a filler window holds one token, its [CLS]."""
    return {
        "input_ids": np.full((*shape, max_length), pad, dtype=np.int32),
        "token_type_ids": np.zeros((*shape, max_length), dtype=np.int8),
        "lengths": np.ones(shape, dtype=np.int32),
        "offsets": np.full((*shape, max_length, 2), -1, dtype=np.int32),
        "max_context": np.zeros((*shape, max_length), dtype=bool),
    }


def put_window(arrays: dict[str, np.ndarray], at, row: dict) -> None:
    """Write one tokenized window (:meth:`SpanTask._tokenized_windows`) at index ``at`` of ``arrays``."""
    k = arrays["lengths"][at] = len(row["input_ids"])
    for key in ("input_ids", "token_type_ids", "offsets", "max_context"):
        arrays[key][at][:k] = row[key]
