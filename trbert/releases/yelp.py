"""Yelp review full (``yelp_review_full_csv.tar.gz`` or its folder): 5-star labels, 650k + 50k reviews.

Reads ``train.csv`` and ``test.csv`` (rows ``"label","text"``, labels 1..5, newlines written as the
two characters ``\\n``) and writes ``train.csv``, ``dev.csv``, ``test.csv`` as ``label,text`` rows
(labels kept 1-based) for ``run_classification.py --task_name yelp_f``. The escaped newlines
``\\n`` become spaces and ``\\"`` a plain quote, so every review is one line. The dev split is
``--dev_size`` rows drawn from the training rows with ``random.Random(--seed)``.

The files are streamed: a first pass counts and checks the training rows, the second writes each
row to ``train.csv`` or ``dev.csv``; only the set of dev row numbers is held.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

from ..errors import InputError
from .common import Release, carve_dev, open_text, reading

MEMBER = re.compile(r"(?:^|/)((?:train|test)\.csv)$")
DEV_SIZE = 10000  # about 1.5 % of the 650,000 training reviews
LABELS = ("1", "2", "3", "4", "5")


def add_arguments(parser) -> None:
    parser.add_argument("--dev_size", type=int, default=DEV_SIZE, help="training reviews held out as dev.csv")
    parser.add_argument("--seed", type=int, default=42, help="seed of the dev draw")


def _rows(path: Path, where: str):
    """``(label, text)`` of every row, checked; the text unescaped."""
    number = 0
    with reading(where), open_text(path, newline="") as f:
        try:
            for number, row in enumerate(csv.reader(f, strict=True), 1):  # strict: a quote left open is an error
                if len(row) != 2 or row[0].strip() not in LABELS:
                    raise InputError(
                        f'{where}:{number}: expected a row "label","text" with a label 1..5, found {row[:2]}'
                    )
                yield row[0].strip(), row[1].replace("\\n", " ").replace('\\"', '"').strip()
        except csv.Error as e:
            raise InputError(f"{where}: not valid CSV after row {number} ({e})") from None


def _write(rows, paths: dict[str, Path], choose) -> dict[str, Counter]:
    """Write ``rows`` to the file ``choose(index)`` names; label counts per file."""
    counts = {name: Counter() for name in paths}
    handles = {name: open(path, "w", encoding="utf-8", newline="") for name, path in paths.items()}
    try:
        writers = {name: csv.writer(f, lineterminator="\n") for name, f in handles.items()}
        for index, (label, text) in enumerate(rows):
            name = choose(index)
            writers[name].writerow((label, text))
            counts[name][label] += 1
    finally:
        for f in handles.values():
            f.close()
    return counts


def convert(release: Release, out: Path, dev_size: int = DEV_SIZE, seed: int = 42) -> dict:
    files = release.find(MEMBER)
    for name in ("train.csv", "test.csv"):
        if name not in files:
            raise InputError(f"{release.source}: {name} not found (is this the yelp_review_full_csv release?)")
    train, test = files["train.csv"], files["test.csv"]
    n = sum(1 for _ in _rows(train, release.where(train)))
    dev_rows = carve_dev(n, dev_size, seed, release.where(train))
    counts = _write(
        _rows(train, release.where(train)),
        {"train.csv": out / "train.csv", "dev.csv": out / "dev.csv"},
        lambda i: "dev.csv" if i in dev_rows else "train.csv",
    )
    counts.update(_write(_rows(test, release.where(test)), {"test.csv": out / "test.csv"}, lambda i: "test.csv"))
    if not counts["test.csv"]:
        raise InputError(f"{release.where(test)}: no reviews")
    return {
        name: {"examples": sum(c.values()), **{f"label {k}": c[k] for k in sorted(c)}} for name, c in counts.items()
    }
