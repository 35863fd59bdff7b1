"""What a task is, and the registry of task families.

The :class:`Task` protocol every dataset implements, the :class:`Predictions` it returns, and
:class:`Family`, one per entry script: its own flags (a config dataclass), how to build its task
from them, the shared flags it defaults differently. Each family module calls :func:`register`.

The protocol, in the order the pipeline calls it: ``read`` a split into examples → ``featurize``
them (a chunk at a time) into per-row arrays → in training ``row_loss`` (the per-row task loss the
reward needs) and ``logit_groups`` (what distillation matches) → ``predict`` → ``score``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..errors import InputError


@dataclass
class Predictions:
    """What a model answered: ``answers`` (read by ``score``) and the files to write next to the
    results (``name -> JSON-able content``, e.g. SQuAD's ``predictions.json``)."""

    answers: object
    files: dict[str, object] = field(default_factory=dict)


class Task(Protocol):
    name: str  # dataset name: feature-cache keys and messages
    head: str  # model head: classification, span, hotpot, wikihop, choice
    num_labels: int  # width of the head's logits
    metric: str  # main metric of ``score`` (accuracy, F1...)

    @property
    def settings(self) -> dict:
        """Everything besides text, tokenizer and length that changes the features (cache key)."""

    def path(self, data_dir: str, split: str) -> Path:
        """The file (or folder) of a split; an :class:`InputError` naming it when it is missing."""

    def read(self, data_dir: str, split: str) -> Iterable:
        """The examples of a split, checked (errors name the file and line)."""

    def featurize(
        self, examples: Sequence, tokenizer, max_length: int, split: str, first: int, counts: Counter
    ) -> dict[str, np.ndarray]:
        """Per-row arrays of a chunk of examples (``first``: the index of its first example);
        what was skipped or cut is counted in ``counts``."""

    def row_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Hard-label task loss per row ``[B]``."""

    def logit_groups(self, logits: torch.Tensor, batch: dict) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The distributions distillation compares: ``(logits [B, G, K], weights [B, G] or None)``
        pairs; the same function reads the student's and the teacher's logits."""

    def predict(self, logits: np.ndarray, features: dict, examples: Sequence) -> Predictions: ...

    def score(self, predictions: Predictions, examples: Sequence) -> dict: ...


@dataclass(frozen=True)
class Family:
    """An entry script: its flags beyond the shared ones, how its task is built, and what the
    commands support for it (the accuracy-cost curve, the token view)."""

    name: str
    config: type  # dataclass of the family's own flags
    build: Callable[[object, str, int], Task]  # (family config, --task_name, --seed) -> task
    defaults: dict = field(default_factory=dict)  # shared flags this script defaults differently
    aliases: dict = field(default_factory=dict)  # other spellings of shared flags, e.g. --max_seq_len
    # (stage, train, reduction, family config) -> (train, reduction): defaults that depend on the
    # stage or on the family's flags (RACE), filled in where the flag was left at ``None``
    resolve: Callable | None = None
    min_length: Callable[[object], int] = lambda config: 3  # shortest --max_seq_length: [CLS] text [SEP]
    curve: bool = True  # python -m trbert tradeoff
    view: bool = True  # python -m trbert show (rows shown as they are: a question's windows each on their own)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise InputError(f"unknown task family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def pad_rows(rows: Sequence[Sequence[int]], width: int, fill: int, dtype=np.int32) -> np.ndarray:
    """``[len(rows), width]`` with every row written at its start and ``fill`` after it."""
    out = np.full((len(rows), width), fill, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def options_for(task: type, config) -> dict:
    """The fields of the dataclass ``task`` that the family config ``config`` has (its flags of those names)."""
    return {f.name: getattr(config, f.name) for f in fields(task) if hasattr(config, f.name)}
