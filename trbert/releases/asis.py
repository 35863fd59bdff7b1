"""Releases the entry scripts read as they are: WikiHop, RACE, SQuAD 2.0 and MRQA.

What this file is: for each, find the release's files (in its folder or archive), check them with
the reader the task uses (WikiHop with the checks below), and copy them under the names the entry
script reads, decompressed. Nothing is changed inside the files.

- wikihop: ``qangaroo_v1.1/wikihop/train.json`` and ``dev.json`` (``qangaroo_v1.1.zip``) ->
  ``train.json``, ``dev.json``; every question needs ``id``, ``query``, ``candidates``,
  ``supports`` and an ``answer`` among the candidates.
- race: ``RACE/{train,dev,test}/{high,middle}/*.txt`` (``RACE.tar.gz``) -> the same tree.
- squad: ``train-v2.0.json``, ``dev-v2.0.json`` (``--version 1.1``: the v1.1 files) -> same names.
- mrqa: ``train/<name>.jsonl.gz`` and ``dev/<name>.jsonl.gz`` as MRQA's download scripts save them
  (``--name NewsQA``) -> ``train.jsonl``, ``dev.jsonl``. The original authors re-split the MRQA
  data in a way that was not released; these are MRQA's own train and dev splits.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

from ..errors import InputError
from ..tasks.files import checked_questions
from ..tasks.mrqa import read_mrqa
from ..tasks.race import read_race
from ..tasks.squad import read_squad
from .common import Release, iter_json_list, open_text, reading


def _copy(release: Release, source: Path, target: Path, check) -> int:
    """Copy ``source`` (decompressed) to ``target``, then ``check(target)`` -> count; errors name the source."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with reading(release.where(source)), open_text(source, newline="") as f:
        with open(target, "w", encoding="utf-8", newline="") as g:
            shutil.copyfileobj(f, g, 1 << 20)
    try:
        return check(target)
    except InputError as e:
        raise InputError(str(e).replace(str(target), release.where(source))) from None


def _require(release: Release, files: dict, names) -> None:
    for name in names:
        if name not in files:
            raise InputError(f"{release.source}: {name} not found")


# ---- WikiHop -----------------------------------------------------------------------------------

WIKIHOP = re.compile(r"(?:^|^wikihop/|/wikihop/)((?:train|dev)\.json)$")


def _check_wikihop(path: Path) -> int:
    count = 0
    for k, item in enumerate(iter_json_list(path, str(path))):
        where = f"{path}: question {item.get('id', k)}"
        for field, kind in (("id", str), ("query", str), ("candidates", list), ("supports", list), ("answer", str)):
            if not isinstance(item.get(field), kind):
                raise InputError(f'{where}: "{field}" must be a {kind.__name__}')
        if item["answer"] not in item["candidates"]:
            raise InputError(f"{where}: answer {item['answer']!r} is not among the candidates")
        count += 1
    if not count:
        raise InputError(f"{path}: no questions")
    return count


def wikihop(release: Release, out: Path) -> dict:
    files = release.find(WIKIHOP)
    _require(release, files, ("train.json", "dev.json"))
    return {name: {"questions": _copy(release, files[name], out / name, _check_wikihop)} for name in sorted(files)}


# ---- RACE --------------------------------------------------------------------------------------

RACE = re.compile(r"(?:^|/)((?:train|dev|test)/(?:high|middle)/[^/]+\.txt)$")


def race(release: Release, out: Path) -> dict:
    files = release.find(RACE)
    counts = {}
    for split in ("train", "dev", "test"):
        keys = sorted(k for k in files if k.startswith(f"{split}/"))
        if not keys:
            raise InputError(f"{release.source}: no {split}/high or {split}/middle files (is this the RACE release?)")
        root = Path(str(files[keys[0]])[: -len(keys[0])])  # the folder holding the split folders
        questions = read_race(root / split)  # the task's own reader checks every file
        for key in keys:
            (out / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(files[key], out / key)
        counts[split] = {"questions": len(questions), "passages": len(keys)}
    return counts


# ---- SQuAD -------------------------------------------------------------------------------------

SQUAD = re.compile(r"(?:^|/)((?:train|dev)-v(?:2\.0|1\.1)\.json)$")


def _squad_counts(path: Path) -> dict:
    examples = list(checked_questions(read_squad(path), str(path)))  # a repeated id is refused
    if not examples:
        raise InputError(f"{path}: no questions")
    return {"questions": len(examples), "unanswerable": sum(not e.answers for e in examples)}


def squad(release: Release, out: Path, version: str = "2.0") -> dict:
    names = (f"train-v{version}.json", f"dev-v{version}.json")
    files = release.find(SQUAD, names=set(names))
    _require(release, files, names)
    return {name: _copy(release, files[name], out / name, _squad_counts) for name in names}


# ---- MRQA --------------------------------------------------------------------------------------


def _mrqa_counts(path: Path) -> dict:
    examples = list(read_mrqa(path))
    if not examples:
        raise InputError(f"{path}: no questions")
    return dict(Counter(questions=len(examples), contexts=len({e.context for e in examples})))


def mrqa(release: Release, out: Path, name: str = "NewsQA") -> dict:
    pattern = re.compile(rf"(?:^|/)((?:train|dev)/{re.escape(name)}\.jsonl)$")
    files = release.find(pattern)
    _require(release, files, (f"train/{name}.jsonl", f"dev/{name}.jsonl"))
    return {
        f"{s}.jsonl": _copy(release, files[f"{s}/{name}.jsonl"], out / f"{s}.jsonl", _mrqa_counts)
        for s in ("train", "dev")
    }
