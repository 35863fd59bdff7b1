"""IMDB: the Large Movie Review Dataset release (``aclImdb_v1.tar.gz`` or its ``aclImdb`` folder).

Reads ``train|test/pos|neg/<id>_<rating>.txt`` (``unsup/`` and the bag-of-words files are
ignored) and writes ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (``{"text", "label"}``,
neg = 0, pos = 1) for ``run_classification.py --task_name imdb``. The dev split is ``--dev_size``
reviews drawn from the training reviews with ``random.Random(--seed)``; the test split is the
release's test set. HTML line breaks (``<br />``) become spaces. What it is not: no tokenising.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError
from .common import Release, read_text, write_jsonl_splits

MEMBER = re.compile(r"(?:^|/)((train|test)/(pos|neg)/[^/]+\.txt)$")
LABELS = {"neg": 0, "pos": 1}
BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
DEV_SIZE = 2500  # 10 % of the 25,000 training reviews


def add_arguments(parser) -> None:
    parser.add_argument("--dev_size", type=int, default=DEV_SIZE, help="training reviews held out as dev.jsonl")
    parser.add_argument("--seed", type=int, default=42, help="seed of the dev draw")


def _reviews(release: Release, files: dict[str, Path], split: str) -> list[dict]:
    rows = []
    for polarity, label in LABELS.items():
        keys = sorted(k for k in files if k.startswith(f"{split}/{polarity}/"))
        if not keys:
            raise InputError(f"{release.source}: no {split}/{polarity}/*.txt reviews (is this the aclImdb release?)")
        for key in keys:
            text = read_text(files[key], release.where(files[key]))
            rows.append({"text": BREAK.sub(" ", text).strip(), "label": label})
    return rows


def convert(release: Release, out: Path, dev_size: int = DEV_SIZE, seed: int = 42) -> dict:
    files = release.find(MEMBER)
    test = _reviews(release, files, "test")
    train = _reviews(release, files, "train")
    return write_jsonl_splits(out, train, test, dev_size, seed, f"{release.source}: train")
