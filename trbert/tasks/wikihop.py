"""WikiHop (``run_wikihop.py``): choose the answer among candidates, reading long supports.

The QAngaroo reader (a JSON list of ``{"id", "query", "candidates", "supports", "answer"}``; the
release's ``dev.json`` stands in for the original's missing ``dev_sort.json``), the features and
the candidate scores. A window is ``[CLS] query [unused1] candidate_1 [unused1] candidate_2 ...``
(token type 0), a chunk of the supports (each after ``[unused2]``, all cut to ``--max_doc_len``
word pieces) and ``[SEP]`` (token type 1). ``--doc_stride`` is, as the original, the *overlap* of
consecutive chunks; its default -1 reads the first chunk only (:meth:`WikihopTask.chunk_starts`,
docs/differences.md F13). A candidate's score is its marker's logit averaged over the real windows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import inert, option
from ..core.encoder import MASKED
from ..core.objective import cross_entropy_rows, real_windows
from .base import Family, Predictions, options_for, register
from .files import load_json, require, split_file, unique_ids


@dataclass
class WikihopTask:
    train_file: str = "train.json"
    predict_file: str = "dev_sort.json"
    max_segment: int = 8
    max_doc_len: int = 1024
    max_num_candidates: int = 79
    doc_stride: int = -1
    name: str = "wikihop"
    head: str = "wikihop"
    num_labels: int = 1
    metric: str = "acc"

    @property
    def settings(self) -> dict:
        keys = ("max_segment", "max_doc_len", "max_num_candidates", "doc_stride")
        # "windows" names the meaning of --doc_stride, so caches of the earlier meaning are not reused
        return {**{k: getattr(self, k) for k in keys}, "windows": "overlap", "token_types": True}

    def path(self, data_dir: str, split: str) -> Path:
        """The split's file; the release's ``dev.json`` stands in for a missing ``dev_sort.json``."""
        predict = self.predict_file
        if split != "train" and predict == "dev_sort.json" and not (Path(data_dir) / predict).is_file():
            predict = "dev.json" if (Path(data_dir) / "dev.json").is_file() else predict
        return split_file(data_dir, split, self.train_file, predict)

    def read(self, data_dir: str, split: str) -> list[dict]:
        path = self.path(data_dir, split)
        items = load_json(path)
        require(isinstance(items, list) and items, str(path), "expected a non-empty JSON list of questions")
        unique_ids((str(item.get("id", k)) for k, item in enumerate(items) if isinstance(item, dict)), str(path))
        for k, item in enumerate(items):
            where = f"{path}: item {item.get('id', k) if isinstance(item, dict) else k}"
            keys = {"query", "candidates", "supports"}
            require(isinstance(item, dict) and keys <= item.keys(), where, 'needs "query", "candidates", "supports"')
            count, most = len(item["candidates"]), self.max_num_candidates
            require(count <= most, where, f"{count} candidates, more than --max_num_candidates {most}")
            answer = item.get("answer")
            require(answer in item["candidates"], where, f"answer {answer!r} is not a candidate")
        return items

    def featurize(self, items: Sequence[dict], tokenizer, max_length, split, first, counts: Counter):
        n, s, c = len(items), self.max_segment, self.max_num_candidates
        arrays = {
            "input_ids": np.full((n, s, max_length), tokenizer.pad_token_id or 0, dtype=np.int32),
            "token_type_ids": np.zeros((n, s, max_length), dtype=np.int8),
            "lengths": np.ones((n, s), dtype=np.int32),  # filler windows hold [CLS] only
            "markers": np.full((n, c), -1, dtype=np.int64),
            "labels": np.array([item["candidates"].index(item["answer"]) for item in items], dtype=np.int64),
        }
        arrays["input_ids"][:, :, 0] = tokenizer.cls_token_id
        for i, item in enumerate(items):
            self._fill(arrays, i, item, tokenizer, max_length, counts)
        return arrays

    def _fill(self, arrays, i, item, tokenizer, max_length, counts: Counter) -> None:
        prefix = [tokenizer.cls_token, *tokenizer.tokenize(item["query"].replace("_", " "))]
        for k, candidate in enumerate(item["candidates"]):
            arrays["markers"][i, k] = len(prefix)
            prefix += ["[unused1]", *tokenizer.tokenize(candidate)]
        document = [piece for support in item["supports"] for piece in ["[unused2]", *tokenizer.tokenize(support)]]
        document = document[: self.max_doc_len] if self.max_doc_len > 0 else document
        if not document:
            counts["questions_without_supporting_text"] += 1
        room = max_length - len(prefix) - 1
        require(room >= 1, f"wikihop item {item.get('id', i)}", "query and candidates fill --max_seq_length")
        for w, start in enumerate(self.chunk_starts(len(document), room, item.get("id", i))):
            tokens = prefix + document[start : start + room] + [tokenizer.sep_token]
            arrays["input_ids"][i, w, : len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
            arrays["token_type_ids"][i, w, len(prefix) : len(tokens)] = 1  # the chunk and [SEP], as the original
            arrays["lengths"][i, w] = len(tokens)

    def chunk_starts(self, length: int, room: int, name) -> list[int]:
        """Where the windows' chunks start in a document of ``length`` word pieces, ``room`` per
        window: only 0 with ``--doc_stride -1`` (the original's default: the first chunk only), else
        every ``room - doc_stride`` pieces (consecutive chunks overlap by ``--doc_stride``) while
        text is left, at most ``--max_segment``. A document without text still gets one window
        (query and candidates), where the original built none (docs/differences.md F13)."""
        if self.doc_stride < 0:
            return [0]
        overlap = f"--doc_stride {self.doc_stride} (the overlap of consecutive windows)"
        room_left = f"the {room} document word pieces a window holds here"
        require(self.doc_stride < room, f"wikihop item {name}", f"{overlap} must be smaller than {room_left}")
        return list(range(0, max(length, 1), room - self.doc_stride))[: self.max_segment]

    @staticmethod
    def candidate_logits(logits: torch.Tensor, markers: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Candidate scores ``[B, C]``: marker logits averaged over the real windows (more than
        [CLS]); absent candidates ``MASKED``. ``logits [B, S, 1, T]``."""
        at = logits[:, :, 0].gather(2, markers.clamp_min(0)[:, None, :].expand(-1, logits.shape[1], -1))  # [B, S, C]
        real = real_windows(lengths)[..., None]
        mean = (at * real).sum(1) / real.sum(1).clamp_min(1)
        return mean.masked_fill(markers < 0, MASKED)

    def row_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return cross_entropy_rows(self.logit_groups(logits, batch)[0][0][:, 0], batch["labels"])

    def logit_groups(self, logits: torch.Tensor, batch: dict):
        """The candidate distribution ``[B, 1, C]`` (from token logits ``[B, S, 1, T]``)."""
        return [(self.candidate_logits(logits.float(), batch["markers"], batch["lengths"])[:, None], None)]

    def predict(self, logits: np.ndarray, features: dict, examples: Sequence[dict]) -> Predictions:
        tensors = [torch.from_numpy(np.array(a)) for a in (logits, features["markers"], features["lengths"])]
        choice = self.candidate_logits(*tensors).argmax(1).tolist()
        ids = [str(item.get("id", i)) for i, item in enumerate(examples)]
        answers = {qid: item["candidates"][c] for qid, item, c in zip(ids, examples, choice, strict=True)}
        return Predictions(answers, {"predictions.json": answers})

    def score(self, predictions: Predictions, examples: Sequence[dict]) -> dict:
        right = [predictions.answers[str(item.get("id", i))] == item["answer"] for i, item in enumerate(examples)]
        return {"acc": float(np.mean(right))}


@dataclass
class WikihopConfig:
    """``run_wikihop.py``'s own flags."""

    train_file: str = option("train.json", "training file inside --data_dir")
    predict_file: str = option("dev_sort.json", "evaluation file inside --data_dir (dev.json when it is missing)")
    max_doc_len: int = option(1024, "supporting-text word pieces read per question", fixed=True)
    max_segment: int = option(8, "windows per question", fixed=True)
    max_num_candidates: int = option(79, "candidate markers at most", fixed=True)
    doc_stride: int = option(
        -1, "overlap in word pieces of consecutive document windows; -1: the first window only", fixed=True
    )
    max_question_len: int = inert(55, "inert (the query is never cut)")
    race_npy_path: str = inert("", "inert")
    ignore_seq_with_no_answers: bool = inert()
    test: bool = inert()
    verbose_logging: bool = inert()
    threads: int = inert(1, "inert")


FAMILY = register(Family(
    "wikihop", WikihopConfig, lambda config, name, seed: WikihopTask(**options_for(WikihopTask, config)),
    defaults=dict(task_name="wikihop", data_dir="wikihop", max_seq_length=1024, per_gpu_train_batch_size=2,
                  learning_rate=5e-5, num_train_epochs=5.0, warmup_steps=-1, save_steps=-1),
    aliases={"max_seq_length": "--max_seq_len"},
    curve=False, view=False,  # multiple choice among candidates, over several windows
))  # fmt: skip
