"""Text classification (``run_classification.py``): IMDB, Yelp, 20News, Hyperpartisan, AG News.

The family's datasets (name, labels, file, reader), their readers (``<split>.jsonl``: one ``{"text":
str, "label": int}`` per line; ``<split>.csv``: rows ``label,text`` with 1-based labels, Yelp's and
AG News' release format), the features (``[CLS] text [SEP]``, head truncation, no segment ids), the
loss and accuracy. A dataset is one line in ``DATASETS``, or a module calling
:func:`register_dataset` (:mod:`.dbpedia`); hub datasets (``--dataset_name``): :mod:`.hub`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import option
from ..core.objective import cross_entropy_rows
from ..errors import InputError
from .base import Family, Predictions, pad_rows, register
from .files import json_lines, require

Example = tuple[str, int]  # (text, 0-based label)


def _label(value, num_labels: int, where: str, first: int = 0) -> int:
    """``value`` as written in the file (numbered from ``first``) -> 0-based label, or an error."""
    if isinstance(value, bool) or not isinstance(value, int) or not first <= value < first + num_labels:
        raise InputError(f"{where}: label {value!r} is not one of {first}..{first + num_labels - 1}")
    return value - first


def read_jsonl(path: Path, num_labels: int) -> Iterator[Example]:
    for where, _, item in json_lines(path):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or "label" not in item:
            raise InputError(f'{where}: expected an object with a string "text" and an integer "label"')
        yield item["text"], _label(item["label"], num_labels, where)


def read_label_csv(path: Path, num_labels: int) -> Iterator[Example]:
    """Rows ``label,text[,text...]`` (1-based labels); further columns are joined with a space
    (AG News: ``label,title,description``)."""
    number = 0
    with open(path, encoding="utf-8", newline="") as f:
        try:  # strict: a quote left open at the end is an error, not a silently shortened last row
            for number, row in enumerate(csv.reader(f, strict=True), 1):
                where = f"{path}:{number}"
                if len(row) < 2:
                    raise InputError(f"{where}: expected 2 columns (label,text), found {len(row)}")
                try:
                    label = int(row[0])
                except ValueError:
                    raise InputError(f"{where}: label {row[0]!r} is not an integer") from None
                yield " ".join(row[1:]), _label(label, num_labels, where, first=1)
        except csv.Error as e:
            raise InputError(f"{path}:{number + 1}: not valid CSV ({e})") from None


@dataclass(frozen=True)
class ClassificationTask:
    name: str
    num_labels: int
    extension: str
    reader: Callable[[Path, int], Iterable[Example]]
    head: str = "classification"
    metric: str = "acc"
    settings = {}  # nothing besides text, tokenizer and length changes the features

    def path(self, data_dir: str, split: str) -> Path:
        path = Path(data_dir) / f"{split}.{self.extension}"
        require(path.is_file(), str(path), f"data file not found (task {self.name} reads <data_dir>/{path.name})")
        return path

    def read(self, data_dir: str, split: str) -> Iterator[Example]:
        path, example = self.path(data_dir, split), None
        for example in self.reader(path, self.num_labels):
            yield example
        require(example is not None, str(path), "the file holds no examples")

    def featurize(
        self, examples: Sequence[Example], tokenizer, max_length: int, split: str, first: int, counts: Counter
    ) -> dict[str, np.ndarray]:
        """``input_ids [N, T]`` int32 (zero padded), ``lengths [N]``, ``labels [N]``."""
        encoded = tokenizer([text for text, _ in examples], truncation=True, max_length=max_length)["input_ids"]
        return {
            "input_ids": pad_rows(encoded, max_length, tokenizer.pad_token_id or 0),
            "lengths": np.array([len(e) for e in encoded], dtype=np.int32),
            "labels": np.array([y for _, y in examples], dtype=np.int64),
        }

    def row_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return cross_entropy_rows(logits, batch["labels"])

    def logit_groups(self, logits: torch.Tensor, batch: dict):
        return [(logits[:, None], None)]

    def predict(self, logits: np.ndarray, features: dict, examples) -> Predictions:
        labels = logits.argmax(-1).tolist()
        return Predictions(labels, {"predictions.json": labels})

    def score(self, predictions: Predictions, examples: Iterable[Example]) -> dict:
        gold = np.array([label for _, label in examples])
        return {"acc": float((np.asarray(predictions.answers) == gold).mean())}


DATASETS = {
    "imdb": ClassificationTask("imdb", 2, "jsonl", read_jsonl),
    "hyperpartisan": ClassificationTask("hyperpartisan", 2, "jsonl", read_jsonl),
    "20news": ClassificationTask("20news", 20, "jsonl", read_jsonl),
    "yelp_f": ClassificationTask("yelp_f", 5, "csv", read_label_csv),
    "agnews": ClassificationTask("agnews", 4, "csv", read_label_csv),
}


def register_dataset(task: ClassificationTask) -> ClassificationTask:
    """Make ``task`` a ``--task_name`` of ``run_classification.py`` (a dataset module calls this)."""
    DATASETS[task.name] = task
    return task


def get_task(name: str) -> ClassificationTask:
    """Task by ``--task_name`` (lower-cased); any name starting with ``yelp`` is Yelp (as the original)."""
    key = name.lower()
    if key.startswith("yelp") and key not in DATASETS:  # e.g. yelp_p: Yelp files, two labels
        return ClassificationTask(key, 2, "csv", read_label_csv)
    if key not in DATASETS:
        raise InputError(f"unknown --task_name {name!r}; known: {', '.join(DATASETS)} (and yelp_*)")
    return DATASETS[key]


@dataclass
class ClassificationConfig:
    """``run_classification.py``'s own flags: a Hugging Face hub dataset instead of files (:mod:`.hub`, ``hub`` extra)."""

    dataset_name: str = option(
        "",
        "NEW: read this hub dataset, or a folder written by save_to_disk, instead of --data_dir"
        " (pip install 'trbert[hub]'); dev is its validation split, else --dev_fraction of train",
        fixed=True,
    )
    dataset_config: str = option("", "NEW: configuration (subset) of --dataset_name", fixed=True)
    text_column: str = option("text", "NEW: column of --dataset_name holding the text", fixed=True)
    label_column: str = option(
        "label",
        "NEW: column of --dataset_name holding the label (ClassLabel, or values numbered in sorted order)",
        fixed=True,
    )
    dev_fraction: float = option(
        0.1,
        "NEW: share of train held out as dev when --dataset_name has no validation split (fixed seed 42)",
        fixed=True,
    )


def build(config: ClassificationConfig, name: str, seed: int) -> ClassificationTask:
    """The task of ``--task_name`` read from ``--data_dir``, or of ``--dataset_name`` (``seed`` unused:
    the dev carve-out of a hub dataset has its own fixed seed)."""
    if config.dataset_name:
        from .hub import hub_task  # the datasets package is an optional extra

        return hub_task(config, name)
    return get_task(name)


FAMILY = register(Family("classification", ClassificationConfig, build))
