"""Reading the datasets' files, with one clear error naming the file and line: the helpers every
reader shares (a JSON document, JSON lines, plain or gzip-compressed, with their ``file:line``, a
check raising :class:`InputError`, the refusal of repeated question ids, a split's file path).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError


def require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise InputError(f"{where}: {what}")


def _distinct(items: Iterable, where: str, qid=lambda item: item) -> Iterator:
    """``items`` as they come, refusing the first whose question id (``qid(item)``) was seen before:
    predictions and gold answers are keyed by id, so a repeat would be scored as one question fewer."""
    seen = set()
    for item in items:
        if qid(item) in seen:
            raise InputError(f"{where}: question id {qid(item)!r} appears more than once")
        seen.add(qid(item))
        yield item


def checked_questions(examples: Iterable, where: str) -> Iterator:
    """``examples`` (with a ``qid``) as they come, refusing a repeated id and a file without any."""
    example = None
    for example in _distinct(examples, where, lambda e: e.qid):
        yield example
    require(example is not None, where, "the file holds no questions")


def unique_ids(ids: Iterable[str], where: str) -> None:
    """Refuse repeated question ids, naming the first id seen twice."""
    for _ in _distinct(ids, where):
        pass


def load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason})") from None


def json_lines(path: Path) -> Iterator[tuple[str, int, object]]:
    """``(where, line number, item)`` for every non-blank line; ``.gz`` files are decompressed."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{where}: not valid JSON ({e.msg})") from None
                yield where, number, item
    except (OSError, EOFError, UnicodeDecodeError) as e:  # e.g. a truncated .gz
        raise InputError(f"{path}: cannot be read ({e})") from None


def split_file(data_dir: str, split: str, train_file: str, predict_file: str) -> Path:
    """The file of ``split`` (``train`` or an evaluation split); an error naming it when missing."""
    path = Path(data_dir) / (train_file if split == "train" else predict_file)
    if not path.is_file():
        flag = "--train_file" if split == "train" else "--predict_file"
        raise InputError(f"{path}: data file not found (set {flag} or --data_dir)")
    return path
