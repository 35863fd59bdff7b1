"""Classification datasets from the Hugging Face hub, or saved with ``save_to_disk`` (``--dataset_name``).

:func:`hub_task` loads a dataset with the optional ``datasets`` package (``pip install 'trbert[hub]'``;
in full, not streamed) and returns a :class:`HubClassificationTask`: the task of :mod:`.classification`
(same features, loss and accuracy) reading the dataset's splits instead of files. Classification only.

Splits: train is ``train``; dev the first of ``validation``, ``dev``, ``valid``, ``val`` the dataset
has, else ``--dev_fraction`` of ``train`` drawn with :data:`CARVE_SEED` (not ``--seed``: every stage
of a pipeline sees the same carve-out), train the rest; test is ``test``. Labels: a ``ClassLabel`` as
it is; integer, string or boolean values numbered 0, 1, ... in sorted order of the values in the
whole train split (before any carve-out).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .base import options_for
from .classification import ClassificationTask, Example
from .files import require

logger = logging.getLogger(__name__)

CARVE_SEED = 42  # fixed, not --seed: the dev carve-out must be the same in every stage of a pipeline
DEV_NAMES = ("validation", "dev", "valid", "val")  # hub split names taken as dev, in this order
EXTRA = "pip install 'trbert[hub]' (or: pip install datasets)"
LABEL_TYPES = ("bool", "string", "large_string")  # besides integers: label values numbered in sorted order


def _datasets():
    try:
        import datasets
    except ImportError:
        raise InputError(f"--dataset_name needs the datasets package: {EXTRA}") from None
    return datasets


def is_saved(source: str) -> bool:
    """Whether ``source`` is a folder written by ``save_to_disk`` (a DatasetDict or one Dataset)."""
    return any((Path(source) / name).is_file() for name in ("dataset_dict.json", "state.json"))


def load(source: str, config: str = ""):
    """The dataset's splits as a ``DatasetDict`` (a saved single ``Dataset`` becomes its train split)."""
    datasets = _datasets()
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
        raise InputError(f"{source}: no such folder (--dataset_name: a hub name or a folder written by save_to_disk)")
    if config and is_saved(source):
        raise InputError(f"{source}: a dataset saved with save_to_disk has no configurations (no --dataset_config)")
    try:
        loaded = datasets.load_from_disk(source) if is_saved(source) else datasets.load_dataset(source, config or None)
    except Exception as e:  # datasets raises many kinds here (network, unknown config, bad files): one message
        raise InputError(f"--dataset_name {source}: cannot load it ({type(e).__name__}: {e})") from None
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)


def carve(n: int, fraction: float, where: str) -> tuple[list[int], list[int]]:
    """``(train rows, dev rows)`` of ``n`` training rows, both in dataset order: ``round(n * fraction)``
    (at least one) rows drawn with ``random.Random(CARVE_SEED)``."""
    size = max(1, round(n * fraction))
    if not 0 < fraction < 1 or size >= n:
        raise InputError(f"{where}: cannot hold out --dev_fraction {fraction} of {n} training rows as dev")
    dev = set(random.Random(CARVE_SEED).sample(range(n), size))
    return [i for i in range(n) if i not in dev], sorted(dev)


def label_values(train, column: str, where: str) -> tuple[list, bool]:
    """``(values, is_class_label)``: a ``ClassLabel``'s names, or the sorted distinct values of train."""
    datasets = _datasets()
    feature = train.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), True
    dtype = getattr(feature, "dtype", "")
    if not isinstance(feature, datasets.Value) or not (dtype.startswith(("int", "uint")) or dtype in LABEL_TYPES):
        raise InputError(f"{where}: label column {column!r} is {feature}; expected a ClassLabel, integers or strings")
    values = train.unique(column)
    require(None not in values, where, f"label column {column!r} has missing values")
    return sorted(values), False


def _name(source: str, config: str) -> str:
    """A file-name-safe name for caches and messages: ``hub-<name>[-<config>]`` or ``disk-<folder>``."""
    base = (
        f"disk-{Path(source).resolve().name}" if is_saved(source) else "-".join(filter(None, ("hub", source, config)))
    )
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base)


@dataclass(frozen=True)
class HubClassificationTask(ClassificationTask):
    """A classification task whose splits come from a loaded ``DatasetDict`` (``data_dir`` is unused)."""

    source: str = ""  # --dataset_name: hub name or save_to_disk folder
    config: str = ""  # --dataset_config
    text_column: str = "text"
    label_column: str = "label"
    labels: tuple = ()  # label names (ClassLabel) or the values numbered 0, 1, ... (sorted)
    class_label: bool = True
    dev_fraction: float = 0.1
    # our split -> (the dataset's split, its rows in order or None for all of them)
    splits: dict = field(default_factory=dict, compare=False, repr=False)
    dataset: object = field(default=None, compare=False, repr=False)

    @property
    def settings(self) -> dict:
        return {"text_column": self.text_column, "label_column": self.label_column, "labels": list(self.labels)}

    def path(self, data_dir: str, split: str) -> Path:
        """The dataset (its hub name or folder), for messages; what a split holds is :meth:`source_digest`."""
        self._split(split)
        return Path(self.source)

    def features_home(self) -> Path:
        """Where features go without ``--data_dir`` or ``--features_cache_dir``: under the datasets cache."""
        return Path(_datasets().config.HF_DATASETS_CACHE) / "trbert_features"

    def source_digest(self, data_dir: str, split: str) -> str:
        """sha256 of what a split is: the dataset's own fingerprint of its split and the carve-out
        (plus the hub name and configuration; a saved folder is known by its content, not its path)."""
        name, rows = self._split(split)
        spec = {
            "dataset": "save_to_disk" if is_saved(self.source) else self.source,
            "config": self.config,
            "split": name,
            "fingerprint": self.dataset[name]._fingerprint,
            "carve": None if rows is None else {"part": split, "fraction": self.dev_fraction, "seed": CARVE_SEED},
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def _split(self, split: str) -> tuple[str, list[int] | None]:
        if split not in self.splits:
            raise InputError(f"{self.source}: no {split} split (the dataset has {', '.join(self.dataset)})")
        return self.splits[split]

    def read(self, data_dir: str, split: str) -> Iterator[Example]:
        name, rows = self._split(split)
        part = self.dataset[name].select_columns([self.text_column, self.label_column])
        if rows is not None:
            part = part.select(rows)
        number = {value: i for i, value in enumerate(self.labels)}
        where, n = f"{self.source} [{name}]", 0
        for batch in part.iter(batch_size=1024):
            for text, value in zip(batch[self.text_column], batch[self.label_column], strict=True):
                row = rows[n] if rows is not None else n
                n += 1
                if not isinstance(text, str):
                    raise InputError(f"{where} row {row}: {self.text_column!r} is {text!r}, not a string")
                label = value if self.class_label else number.get(value, -1)
                if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < self.num_labels:
                    raise InputError(
                        f"{where} row {row}: label {value!r} is not one of the labels {list(self.labels)} (-1: unlabelled)"
                    )
                yield text, label
        require(n > 0, where, "the split holds no examples")


def hub_task(config, name: str = "") -> HubClassificationTask:
    """The task of ``--dataset_name`` (``config``: the family's ``ClassificationConfig``);
    ``name`` (``--task_name``, optional) names it in caches and messages."""
    source = config.dataset_name
    dataset = load(source, config.dataset_config)
    require("train" in dataset, source, f"no train split (the dataset has {', '.join(dataset)})")
    train = dataset["train"]
    for column in (config.text_column, config.label_column):
        if column not in train.column_names:
            raise InputError(f"{source}: no column {column!r} (columns: {', '.join(train.column_names)})")
    text = train.features[config.text_column]
    if getattr(text, "dtype", "") not in ("string", "large_string"):
        raise InputError(f"{source}: text column {config.text_column!r} is {text}; expected strings")
    labels, class_label = label_values(train, config.label_column, f"{source} [train]")
    require(len(labels) >= 2, source, f"label column {config.label_column!r} holds fewer than two classes")
    dev = next((n for n in DEV_NAMES if n in dataset), None)
    splits = {"train": ("train", None), "dev": (dev, None)}
    if dev is None:
        rows, held = carve(len(train), config.dev_fraction, f"{source} [train]")
        splits.update(train=("train", rows), dev=("train", held))
        logger.info("%s: no validation split; %d of %d training rows held out as dev", source, len(held), len(train))
    if "test" in dataset:
        splits["test"] = ("test", None)
    fields = dict(source=source, config=config.dataset_config, labels=tuple(labels), class_label=class_label)
    fields.update(splits=splits, dataset=dataset, **options_for(HubClassificationTask, config))
    task_name = name or _name(source, config.dataset_config)
    return HubClassificationTask(task_name, len(labels), extension="", reader=None, **fields)
