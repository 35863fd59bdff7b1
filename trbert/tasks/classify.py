"""Text classification: IMDB, Yelp, 20News, Hyperpartisan (spec §9.1).

Readers for the original files: ``<split>.jsonl`` (one ``{"text": str, "label": int}`` per line) and
Yelp's ``<split>.csv`` (rows ``label,text`` with 1-based labels). Features are ``[CLS] text [SEP]``
with head truncation, no segment ids.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..objective import cross_entropy_rows, distillation_rows
from .files import json_lines

Example = tuple[str, int]


def _check_label(label, num_labels: int, where: str, first: int = 0) -> int:
    """``label`` as written in the file (numbered from ``first``) -> 0-based label, or an error."""
    if isinstance(label, bool) or not isinstance(label, int) or not first <= label < first + num_labels:
        raise InputError(f"{where}: label {label!r} is not one of {first}..{first + num_labels - 1}")
    return label - first


def read_jsonl(path: Path, num_labels: int) -> list[Example]:
    examples = []
    for where, _, item in json_lines(path):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or "label" not in item:
            raise InputError(f'{where}: expected an object with a string "text" and an integer "label"')
        examples.append((item["text"], _check_label(item["label"], num_labels, where)))
    return examples


def read_yelp_csv(path: Path, num_labels: int) -> list[Example]:
    examples = []
    with open(path, encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.reader(f), 1):
            where = f"{path}:{number}"
            if len(row) != 2:
                raise InputError(f"{where}: expected 2 columns (label,text), found {len(row)}")
            try:
                label = int(row[0])
            except ValueError:
                raise InputError(f"{where}: label {row[0]!r} is not an integer") from None
            examples.append((row[1], _check_label(label, num_labels, where, first=1)))
    return examples


@dataclass(frozen=True)
class ClassificationTask:
    name: str
    num_labels: int
    extension: str
    reader: Callable[[Path, int], list[Example]]
    family: str = "classification"
    head: str = "classification"
    settings = {}  # nothing besides text, tokenizer and length changes the features

    def path(self, data_dir: str, split: str) -> Path:
        """The file of ``split``; an error naming it when it is missing."""
        path = Path(data_dir) / f"{split}.{self.extension}"
        if not path.is_file():
            raise InputError(
                f"{path}: data file not found (task {self.name} reads <data_dir>/{split}.{self.extension})"
            )
        return path

    def read(self, data_dir: str, split: str) -> list[Example]:
        path = self.path(data_dir, split)
        examples = self.reader(path, self.num_labels)
        if not examples:
            raise InputError(f"{path}: the file holds no examples")
        return examples

    def featurize(self, examples: list[Example], tokenizer, max_length: int, split: str = "") -> dict[str, np.ndarray]:
        """``input_ids [N, T]`` int32 (zero padded), ``lengths [N]``, ``labels [N]``."""
        encoded = tokenizer([text for text, _ in examples], truncation=True, max_length=max_length)["input_ids"]
        ids = np.full((len(encoded), max_length), tokenizer.pad_token_id or 0, dtype=np.int32)
        lengths = np.array([len(e) for e in encoded], dtype=np.int32)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = tokens
        return {"input_ids": ids, "lengths": lengths, "labels": np.array([y for _, y in examples], dtype=np.int64)}

    def row_loss(self, logits: torch.Tensor, batch: dict, teacher: bool = False, temperature: float = 1.0):
        """Per-row task loss: cross-entropy, or distillation against ``batch["teacher"]``."""
        if teacher:
            return distillation_rows(logits, batch["teacher"], temperature)
        return cross_entropy_rows(logits, batch["labels"])

    def score(self, logits: np.ndarray, arrays: dict, data_dir: str = "", split: str = "") -> dict[str, float]:
        return {"acc": float((logits.argmax(-1) == arrays["labels"]).mean())}


def _jsonl(name: str, num_labels: int) -> ClassificationTask:
    return ClassificationTask(name, num_labels, "jsonl", read_jsonl)


CLASSIFICATION_TASKS = {
    "imdb": _jsonl("imdb", 2),
    "hyperpartisan": _jsonl("hyperpartisan", 2),
    "20news": _jsonl("20news", 20),
    "yelp_f": ClassificationTask("yelp_f", 5, "csv", read_yelp_csv),
}


def get_task(name: str) -> ClassificationTask:
    """Task by ``--task_name`` (lower-cased); any name starting with ``yelp`` is Yelp (as the original)."""
    key = name.lower()
    if key.startswith("yelp") and key != "yelp_f":  # e.g. yelp_p: Yelp files, two labels
        return ClassificationTask(key, 2, "csv", read_yelp_csv)
    if key not in CLASSIFICATION_TASKS:
        raise InputError(f"unknown --task_name {name!r}; known: {', '.join(CLASSIFICATION_TASKS)} (and yelp_*)")
    return CLASSIFICATION_TASKS[key]
