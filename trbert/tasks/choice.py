"""Multiple choice and candidate selection: RACE (spec §7.4 b, §9.4) and WikiHop (§9.8).

What this file is: two tasks on the shared model families.

- RACE as ``run_race_classify.py`` runs it: every (passage, question + option) sequence is its own
  binary example for the classification reduction model (label 1 = the right option); the
  prediction of a question is the option with the largest class-1 logit in its group of four.
  Files ``<data_dir>/<split>/{middle,high}/*.txt``, each ``{"article", "questions", "options",
  "answers"}``.
- WikiHop: ``[CLS] query [unused1] candidate_1 [unused1] candidate_2 ...`` then the supports, each
  after ``[unused2]``, cut to ``--max_doc_len`` word pieces and spread over up to ``--max_segment``
  windows of ``--max_seq_length`` (every window repeats the query and candidates; the document
  moves by ``--doc_stride``, -1 = no overlap: D23 fixed). A token-level head scores every position;
  a candidate's score is its marker's logit averaged over the real windows. File: a JSON list of
  ``{"id", "query", "candidates", "supports", "answer"}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import real_windows
from ..errors import InputError
from ..model import MASKED
from ..objective import cross_entropy_rows, distillation_rows
from .classify import ClassificationTask
from .files import load_json, require, split_file

logger = logging.getLogger(__name__)

OPTIONS = 4


@dataclass
class RaceQuestion:
    article: str
    question: str
    options: list[str]
    answer: int
    where: str


def read_race(folder: Path) -> list[RaceQuestion]:
    files = sorted(folder.glob("middle/*.txt")) + sorted(folder.glob("high/*.txt"))
    if not files:
        raise InputError(f"{folder}: no RACE files (<split>/middle/*.txt, <split>/high/*.txt)")
    questions = []
    for path in files:
        item = load_json(path)
        require(isinstance(item, dict) and isinstance(item.get("article"), str), str(path), 'no string "article"')
        parts = [item.get(k) for k in ("questions", "options", "answers")]
        require(all(isinstance(p, list) for p in parts), str(path), '"questions", "options", "answers" must be lists')
        require(len({len(p) for p in parts}) == 1, str(path), "as many options and answers as questions expected")
        for k, (question, options, answer) in enumerate(zip(*parts, strict=True)):
            where = f"{path}: question {k}"
            require(isinstance(options, list) and len(options) == OPTIONS, where, f"expected {OPTIONS} options")
            require(answer in ("A", "B", "C", "D"), where, f"answer {answer!r} is not one of A, B, C, D")
            require(item["article"].strip() != "", where, "empty passage")
            questions.append(
                RaceQuestion(item["article"], str(question), list(map(str, options)), "ABCD".index(answer), where)
            )
    return questions


@dataclass(frozen=True)
class RaceTask(ClassificationTask):
    """Four binary rows per question (the classification loss per row); accuracy over questions."""

    name: str = "race"
    num_labels: int = 2
    extension: str = "txt"
    reader: object = None
    family: str = "race"
    max_qa_length: int = 128
    # head "classification": run_race_classify.py's binary rows; "choice": one selection shared by
    # the four options of a question (--shared_selection), cross-entropy over the options

    @property
    def settings(self) -> dict:
        return {"max_qa_length": self.max_qa_length, "layout": self.head}

    def path(self, data_dir: str, split: str) -> Path:
        folder = Path(data_dir) / split
        if not folder.is_dir():
            raise InputError(f"{folder}: RACE split folder not found (<data_dir>/{split}/middle, .../high)")
        return folder

    def read(self, data_dir: str, split: str) -> list[RaceQuestion]:
        return read_race(self.path(data_dir, split))

    def featurize(self, questions: list[RaceQuestion], tokenizer, max_length: int, split: str = "") -> dict:
        """``[CLS] passage [SEP] question option [SEP]``: the passage cut to the same length for the
        four options, question + option cut to ``--max_qa_length`` word pieces. One row per option."""
        rows, ends = [], []
        for q in questions:
            article = tokenizer.tokenize(q.article)
            question = tokenizer.tokenize(q.question)
            pairs = [(question + tokenizer.tokenize(o))[: self.max_qa_length] for o in q.options]
            room = max(max_length - 3 - max(len(p) for p in pairs), 0)
            first = [tokenizer.cls_token, *article[:room], tokenizer.sep_token]
            rows += [(first + pair + [tokenizer.sep_token], len(first)) for pair in pairs]
            ends.append(len(first) + min(len(question), min(len(p) for p in pairs)))
        n = len(rows)
        arrays = {
            "input_ids": np.full((n, max_length), tokenizer.pad_token_id or 0, dtype=np.int32),
            "token_type_ids": np.zeros((n, max_length), dtype=np.int8),
            "lengths": np.array([len(t) for t, _ in rows], dtype=np.int32),
            "labels": np.array([int(c == q.answer) for q in questions for c in range(OPTIONS)], dtype=np.int64),
        }
        for i, (tokens, first) in enumerate(rows):
            arrays["input_ids"][i, : len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
            arrays["token_type_ids"][i, first : len(tokens)] = 1
        if self.head == "choice":  # one row per question: [N, 4, T], the answer index, the selectable prefix
            arrays = {k: v.reshape(len(questions), OPTIONS, *v.shape[1:]) for k, v in arrays.items()}
            arrays["labels"] = arrays["labels"].argmax(1)
            arrays["question_end"] = np.array(ends, dtype=np.int64)
        return arrays

    def score(self, logits: np.ndarray, arrays: dict, data_dir: str = "", split: str = "") -> dict:
        if self.head == "choice":  # logits [N, 4]
            choice, gold = logits.argmax(1), arrays["labels"]
        else:  # four binary rows per question
            choice = logits[:, 1].reshape(-1, OPTIONS).argmax(1)
            gold = arrays["labels"].reshape(-1, OPTIONS).argmax(1)
        return {"acc": float((choice == gold).mean()), "questions": int(len(gold))}


@dataclass
class WikihopTask:
    train_file: str = "train.json"
    predict_file: str = "dev_sort.json"
    max_segment: int = 8
    max_doc_len: int = 1024
    max_num_candidates: int = 79
    doc_stride: int = -1
    name: str = "wikihop"
    family: str = "wikihop"
    head: str = "wikihop"
    num_labels: int = 1
    counts: dict = field(default_factory=dict)

    @property
    def settings(self) -> dict:
        keys = ("max_segment", "max_doc_len", "max_num_candidates", "doc_stride")
        return {k: getattr(self, k) for k in keys}

    def path(self, data_dir: str, split: str) -> Path:
        return split_file(data_dir, split, self.train_file, self.predict_file)

    def read(self, data_dir: str, split: str) -> list[dict]:
        path = self.path(data_dir, split)
        items = load_json(path)
        require(isinstance(items, list) and items, str(path), "expected a non-empty JSON list of questions")
        for k, item in enumerate(items):
            where = f"{path}: item {item.get('id', k) if isinstance(item, dict) else k}"
            require(
                isinstance(item, dict) and {"query", "candidates", "supports"} <= item.keys(),
                where,
                'needs "query", "candidates", "supports"',
            )
            require(
                len(item["candidates"]) <= self.max_num_candidates,
                where,
                f"{len(item['candidates'])} candidates, more than --max_num_candidates {self.max_num_candidates}",
            )
            require(
                item.get("answer") in item["candidates"], where, f"answer {item.get('answer')!r} is not a candidate"
            )
        return items

    def featurize(self, items: list[dict], tokenizer, max_length: int, split: str = "") -> dict:
        n, s, c = len(items), self.max_segment, self.max_num_candidates
        arrays = {
            "input_ids": np.full((n, s, max_length), tokenizer.pad_token_id or 0, dtype=np.int32),
            "lengths": np.ones((n, s), dtype=np.int32),  # filler windows hold [CLS] only
            "markers": np.full((n, c), -1, dtype=np.int64),
            "labels": np.array([item["candidates"].index(item["answer"]) for item in items], dtype=np.int64),
        }
        arrays["input_ids"][:, :, 0] = tokenizer.cls_token_id
        self.counts = {"empty_supports": 0}
        for i, item in enumerate(items):
            self._fill(arrays, i, item, tokenizer, max_length)
        if self.counts["empty_supports"]:
            logger.warning("wikihop: %d questions without supporting text", self.counts["empty_supports"])
        return arrays

    def _fill(self, arrays, i, item, tokenizer, max_length) -> None:
        prefix = [tokenizer.cls_token, *tokenizer.tokenize(item["query"].replace("_", " "))]
        for k, candidate in enumerate(item["candidates"]):
            arrays["markers"][i, k] = len(prefix)
            prefix += ["[unused1]", *tokenizer.tokenize(candidate)]
        document = [piece for support in item["supports"] for piece in ["[unused2]", *tokenizer.tokenize(support)]]
        document = document[: self.max_doc_len] if self.max_doc_len > 0 else document
        if not document:
            self.counts["empty_supports"] += 1
        room = max_length - len(prefix) - 1
        if room < 1:
            raise InputError(f"wikihop item {item.get('id', i)}: query and candidates fill --max_seq_length")
        step = room if self.doc_stride < 0 else min(self.doc_stride, room)
        starts = range(0, max(len(document), 1), step)
        for w, start in enumerate(list(starts)[: self.max_segment]):
            tokens = prefix + document[start : start + room] + [tokenizer.sep_token]
            arrays["input_ids"][i, w, : len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
            arrays["lengths"][i, w] = len(tokens)

    @staticmethod
    def candidate_logits(logits: torch.Tensor, markers: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Candidate scores ``[B, C]``: marker logits averaged over the real windows (more than
        [CLS]); absent candidates ``MASKED``. ``logits [B, S, 1, T]``."""
        windows = logits.shape[1]
        at = logits[:, :, 0].gather(2, markers.clamp_min(0)[:, None, :].expand(-1, windows, -1))  # [B, S, C]
        real = real_windows(lengths)[..., None]
        mean = (at * real).sum(1) / real.sum(1).clamp_min(1)
        return mean.masked_fill(markers < 0, MASKED)

    def row_loss(self, logits: torch.Tensor, batch: dict, teacher: bool = False, temperature: float = 1.0):
        scores = self.candidate_logits(logits.float(), batch["markers"], batch["lengths"])
        if teacher:
            target = self.candidate_logits(batch["teacher"].float(), batch["markers"], batch["lengths"])
            return distillation_rows(scores, target, temperature)
        return cross_entropy_rows(scores, batch["labels"])

    def score(self, logits: np.ndarray, arrays: dict, data_dir: str = "", split: str = "") -> dict:
        tensors = [torch.from_numpy(np.asarray(a)) for a in (logits, arrays["markers"], arrays["lengths"])]
        choice = self.candidate_logits(*tensors).argmax(1).numpy()
        return {"acc": float((choice == arrays["labels"]).mean())}
