"""HotpotQA (``run_hotpotqa.py``): paragraphs packed into one long input, answer span or yes/no,
supporting facts.

The reader of the paragraph-packed files (one JSON object per line: ``question``, ``answer``,
``node``: paragraphs with ``name``, ``context`` (word pieces), ``spans`` (``[start, end]`` inclusive
in ``context``), ``sent_pos`` (``[start, end)`` per sentence), ``supp_label``; dev lines also
``qid`` and per paragraph ``doc_tokens``/``tok_to_orig_index``), the features (``[CLS] question
[SEP]`` then ``[unused1] title [unused2] context`` per paragraph until ``--max_seq_length``; the
training paragraphs in one seeded order per example: docs/differences.md F12), the loss of the
three heads of :class:`trbert.core.heads.TRBertForHotpotQA` (empty sentence slots and padding masked:
docs/differences.md F11), the answer and supporting-fact predictions and HotpotQA's metrics.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import inert, option
from ..core.encoder import MASKED
from .answer_metrics import hotpot_scores
from .base import Family, Predictions, register
from .files import checked_questions, json_lines, require, split_file
from .final_text import final_text, pieces_text

MAX_ANSWERS, MAX_SENTENCES, MAX_QUESTION = 8, 80, 80
SWITCH = {"yes": 1, "no": 2}
ROW_ARRAYS = ("starts", "ends", "sent_starts", "sent_ends", "sent_labels", "sent_ids")


@dataclass
class HotpotExample:
    qid: str
    question: str
    answer: str
    paragraphs: list[dict]  # name, context (word pieces), spans, sent_pos, supp_label, doc_tokens, tok_to_orig_index
    where: str = ""

    def supporting_facts(self) -> list[list]:
        """Gold ``[title, sentence index]`` pairs from the paragraphs' ``supp_label``."""
        labelled = ((node.get("name", ""), node.get("supp_label", [])) for node in self.paragraphs)
        return [[name, k] for name, labels in labelled for k, label in enumerate(labels) if label]


def read_hotpot(path: Path) -> Iterator[HotpotExample]:
    """One question per line, read as the file is (it is not held whole)."""
    for where, number, item in json_lines(path):
        require(isinstance(item, dict) and isinstance(item.get("question"), str), where, 'no string "question"')
        nodes = item.get("node")
        require(isinstance(nodes, list) and nodes, where, 'no "node" list of paragraphs')
        for node in nodes:
            require(isinstance(node.get("context"), list), where, 'a paragraph without a "context" word-piece list')
        yield HotpotExample(str(item.get("qid", number)), item["question"], str(item.get("answer", "")), nodes, where)


@dataclass
class HotpotTask:
    train_file: str = "hotpot_train_graph.json"
    predict_file: str = "rerank_dev_tok.json"
    max_answer_length: int = 30
    seed: int = 42
    name: str = "hotpotqa"
    head: str = "hotpot"
    num_labels: int = 7
    metric: str = "f1"

    @property
    def settings(self) -> dict:
        return {"paragraph_order_seed": self.seed, "paragraph_order": "shuffled-set"}

    def path(self, data_dir: str, split: str) -> Path:
        return split_file(data_dir, split, self.train_file, self.predict_file)

    def read(self, data_dir: str, split: str) -> Iterator[HotpotExample]:
        path = self.path(data_dir, split)
        return checked_questions(read_hotpot(path), str(path))

    def featurize(self, examples: Sequence[HotpotExample], tokenizer, max_length, split, first, counts: Counter):
        rows = [self._features(first + i, e, tokenizer, max_length, split == "train") for i, e in enumerate(examples)]
        n = len(rows)
        arrays = {
            "input_ids": np.full((n, max_length), tokenizer.pad_token_id or 0, dtype=np.int32),
            "token_type_ids": np.zeros((n, max_length), dtype=np.int8),
            "starts": np.full((n, MAX_ANSWERS), -1, dtype=np.int64),
            "ends": np.full((n, MAX_ANSWERS), -1, dtype=np.int64),
            "sent_starts": np.full((n, MAX_SENTENCES), -1, dtype=np.int64),
            "sent_ends": np.full((n, MAX_SENTENCES), -1, dtype=np.int64),
            "sent_labels": np.full((n, MAX_SENTENCES), -1, dtype=np.int64),
            "sent_ids": np.full((n, MAX_SENTENCES, 2), -1, dtype=np.int32),  # (paragraph, sentence) of each slot
            "origin": np.full((n, max_length, 2), -1, dtype=np.int32),  # (paragraph, word) of every text token
        }
        for i, row in enumerate(rows):
            for key in ("input_ids", "token_type_ids", "origin", *ROW_ARRAYS):
                if row[key]:
                    arrays[key][i, : len(row[key])] = row[key]
        arrays["lengths"] = np.array([len(r["input_ids"]) for r in rows], dtype=np.int32)
        arrays["switch"] = np.array([r["switch"] for r in rows], dtype=np.int64)
        arrays["starts"][arrays["starts"][:, 0] < 0, 0] = 0  # no span ([CLS]): yes/no answers, lost answers
        arrays["ends"][arrays["ends"][:, 0] < 0, 0] = 0
        return arrays

    def _order(self, number: int, sizes: list[int], budget: int, training: bool) -> list[int]:
        """Dev: the file's (ranked) order. Training, as the original: the gold paragraphs 0 and 1,
        then the others in a random order until their sizes reach the budget (or run out); the one
        taken last (that reached it, or the last drawn when all fit) goes after the shuffled rest."""
        order = list(range(len(sizes)))
        if not training:
            return order
        rng = random.Random(self.seed * 100003 + number)
        others = order[2:]
        rng.shuffle(others)
        used, taken = sum(sizes[:2]), 0
        while used < budget and taken < len(others):
            used += sizes[others[taken]]
            taken += 1
        chosen = order[:2] + others[: max(taken - 1, 0)]
        rng.shuffle(chosen)
        return chosen + others[max(taken - 1, 0) : taken]

    def _features(self, number, example, tokenizer, max_length, training) -> dict:
        tokens = [tokenizer.cls_token, *tokenizer.tokenize(example.question)[:MAX_QUESTION], tokenizer.sep_token]
        types, origin = [0] * len(tokens), [(-1, -1)] * len(tokens)
        row = {key: [] for key in ROW_ARRAYS}
        titles = [str(node.get("name", "")).replace("_", " ") for node in example.paragraphs]
        heads = [["[unused1]", *tokenizer.tokenize(title), "[unused2]"] for title in titles]
        sizes = [len(h) + len(node["context"]) for h, node in zip(heads, example.paragraphs, strict=True)]
        limit = max_length - 1  # the paragraphs' pieces are cut here, titles included, as the original
        for p in self._order(number, sizes, limit - len(tokens), training):
            if len(tokens) >= limit:
                break
            node, head = example.paragraphs[p], heads[p]
            piece = (head + node["context"])[: limit - len(tokens)]
            kept = max(len(piece) - len(head), 0)  # context pieces that fit
            words = node.get("tok_to_orig_index") or list(range(len(node["context"])))
            self._paragraph_targets(row, node, p, len(tokens) + len(head), kept)
            origin += [(-1, -1)] * (len(piece) - kept) + [(p, words[i]) for i in range(kept)]
            tokens += piece
        tokens.append(tokenizer.sep_token)
        origin.append((-1, -1))
        types += [1] * (len(tokens) - len(types))
        row.update(input_ids=tokenizer.convert_tokens_to_ids(tokens), token_type_ids=types, origin=origin)
        row["switch"] = SWITCH.get(example.answer.strip().lower(), 0)
        return row

    @staticmethod
    def _paragraph_targets(row: dict, node: dict, p: int, offset: int, length: int) -> None:
        """Answer spans and sentence slots of paragraph ``p`` placed at ``offset`` (``length`` pieces kept)."""
        for s, e in node.get("spans", []):
            if e < length and len(row["starts"]) < MAX_ANSWERS:
                row["starts"].append(offset + s)
                row["ends"].append(offset + e)
        labels = node.get("supp_label", [])
        for k, (s, e) in enumerate(node.get("sent_pos", [])):
            if e <= length and s < e and len(row["sent_starts"]) < MAX_SENTENCES:
                row["sent_starts"].append(offset + s)
                row["sent_ends"].append(offset + e - 1)
                row["sent_labels"].append(int(labels[k]) if k < len(labels) else 0)
                row["sent_ids"].append((p, k))

    def row_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per row: span loss averaged over the gold spans, switch cross-entropy, and the mean
        supporting-fact cross-entropy over real sentences (empty slots masked)."""
        (span, _), (switch, _), (sentences, weight) = self.logit_groups(logits, batch)
        gold = batch["starts"] >= 0
        picked = [
            F.cross_entropy(
                span[:, i, None].expand(-1, gold.shape[1], -1).transpose(1, 2), batch[k].clamp_min(0), reduction="none"
            )
            for i, k in enumerate(("starts", "ends"))
        ]
        span_loss = ((picked[0] + picked[1]) * gold).sum(1) / (2 * gold.sum(1).clamp_min(1))
        labels = batch["sent_labels"].masked_fill(batch["sent_starts"] < 0, 0)
        sent = F.cross_entropy(sentences.transpose(1, 2), labels, reduction="none")
        return span_loss + F.cross_entropy(switch[:, 0], batch["switch"], reduction="none") + (sent * weight).sum(1)

    def logit_groups(self, logits: torch.Tensor, batch: dict):
        """Span start/end over the real positions ``[B, 2, T]``, the switch ``[B, 1, 3]`` and each
        sentence's (not supporting, supporting) pair ``[B, M, 2]`` weighted 1 / real sentences."""
        z = logits.float()
        span = z[:, :2].masked_fill(~batch["attention_mask"].bool()[:, None], MASKED)
        valid = batch["sent_starts"] >= 0
        column = batch["sent_starts"].clamp_min(0)[:, None].expand(-1, 2, -1)
        sentences = z[:, 5:7].gather(2, column).transpose(1, 2)
        weight = valid.float() / valid.sum(1, keepdim=True).clamp_min(1)
        return [(span, None), (z[:, None, 2:5, 0], None), (sentences, weight)]

    def predict(self, logits: np.ndarray, features: dict, examples: Sequence[HotpotExample]) -> Predictions:
        """The official prediction file: ``{"answer": {qid: text}, "sp": {qid: [[title, sentence]]}}``."""
        answers, facts = {}, {}
        for i, example in enumerate(examples):
            answers[example.qid] = self._answer(logits[i], features["origin"][i], example)
            starts, ids = features["sent_starts"][i], features["sent_ids"][i]
            chosen = [k for k in np.flatnonzero(starts >= 0) if logits[i, 6, starts[k]] > logits[i, 5, starts[k]]]
            facts[example.qid] = [[example.paragraphs[ids[k, 0]].get("name", ""), int(ids[k, 1])] for k in chosen]
        prediction = {"answer": answers, "sp": facts}
        return Predictions(prediction, {"predictions.json": prediction})

    def _answer(self, logits: np.ndarray, origin: np.ndarray, example: HotpotExample) -> str:
        """yes / no by the switch, else the best text span (:func:`best_text_span`) as its text (:meth:`_text`)."""
        switch = int(np.argmax(logits[2:5, 0]))
        if switch:
            return "yes" if switch == 1 else "no"
        span = best_text_span(logits[0], logits[1], origin[:, 0] >= 0, self.max_answer_length)
        return "" if span is None else self._text(example, origin, *span)

    @staticmethod
    def _text(example: HotpotExample, origin: np.ndarray, s: int, e: int) -> str:
        """The answer of the span ``s..e`` (row positions in one paragraph's text), as the original's
        final-text step: the part of its whole words that its word pieces cover, compared in lower
        case when the pieces are (docs/differences.md N18); without ``doc_tokens``, the pieces' text."""
        paragraph = int(origin[s, 0])
        node = example.paragraphs[paragraph]
        first = int(np.flatnonzero(origin[:, 0] == paragraph)[0])  # the row position of the paragraph's piece 0
        predicted = pieces_text(node["context"][s - first : e - first + 1])
        words = node.get("doc_tokens")
        if not words:
            return predicted
        whole = " ".join(words[origin[s, 1] : origin[e, 1] + 1])
        return final_text(predicted, whole, lower=predicted == predicted.lower())

    def score(self, predictions: Predictions, examples: Sequence[HotpotExample]) -> dict:
        """HotpotQA's answer EM/F1 and, where the file labels supporting sentences, supporting-fact
        and joint EM/F1 (the original reported answer F1 only: docs/differences.md N9)."""
        gold = {e.qid: e.answer for e in examples}
        facts = {e.qid: e.supporting_facts() for e in examples}
        answers, sp = predictions.answers["answer"], predictions.answers["sp"]
        return hotpot_scores(gold, answers, facts, sp) if any(facts.values()) else hotpot_scores(gold, answers)


def best_text_span(start: np.ndarray, end: np.ndarray, text: np.ndarray, max_length: int) -> tuple[int, int] | None:
    """``(s, e)`` maximising ``start[s] + end[e]`` over every start, as the original scans them:
    ``s <= e < s + max_length`` with ``s..e`` one run of ``text`` positions (``text [T]``: the
    positions of paragraph text, so a span never crosses a title or the question); among equal
    scores the first in ``(s, e)`` order (the original's stable sort). None without text."""
    t = len(start)
    positions = np.arange(t)
    next_break = np.minimum.accumulate(np.where(text, t, positions)[::-1])[::-1]  # first non-text at or after
    run = next_break - positions  # text positions in a row from each position on
    ends = positions[:, None] + np.arange(max_length)[None, :]  # [T, L]
    valid = np.arange(max_length)[None, :] < run[:, None]
    scores = np.where(valid, start[:, None] + np.concatenate([end, np.full(max_length, -np.inf)])[ends], -np.inf)
    best = int(np.argmax(scores))  # row-major: the first (s, e) among equals
    if not np.isfinite(scores.flat[best]):
        return None
    s, k = divmod(best, max_length)
    return s, s + k


@dataclass
class HotpotConfig:
    """``run_hotpotqa.py``'s own flags; the original's span flags that it accepted without effect
    are inert here too, by declaration (and never block a resume)."""

    train_file: str = option("hotpot_train_graph.json", "training file inside --data_dir")
    predict_file: str = option("rerank_dev_tok.json", "evaluation file inside --data_dir")
    max_answer_length: int = option(30, "longest answer in word pieces")
    version_2_with_negative: bool = inert()
    null_score_diff_threshold: float = inert(0.0, "inert (yes / no / span come from the switch)")
    doc_stride: int = inert(128, "inert (paragraphs are packed into one input, not windowed)")
    max_query_length: int = inert(64, "inert (the question is cut at 80 word pieces, as the original)")
    n_best_size: int = inert(20, "inert (every start is scanned, as the original)")
    verbose_logging: bool = inert()
    threads: int = inert(1, "inert")
    drop_data: bool = inert()


FAMILY = register(Family(
    "hotpot", HotpotConfig,
    lambda config, name, seed: HotpotTask(config.train_file, config.predict_file, config.max_answer_length, seed),
    defaults=dict(task_name="hotpotqa", max_seq_length=1024, per_gpu_train_batch_size=4, per_gpu_eval_batch_size=4,
                  learning_rate=5e-5, guide_rate=0.5, warmup_steps=1000),
))  # fmt: skip
