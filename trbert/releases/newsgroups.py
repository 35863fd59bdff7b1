"""20 Newsgroups, "bydate" version (``20news-bydate.tar.gz`` or its folder): 11,314 + 7,532 posts.

Reads ``20news-bydate-train/<group>/<id>`` and ``20news-bydate-test/<group>/<id>`` (latin-1 text)
and writes ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (``{"text", "label"}``) for
``run_classification.py --task_name 20news``. Labels are the positions of the groups in
:data:`GROUPS` (the group names sorted, 0 = alt.atheism ... 19 = talk.religion.misc); both splits
must hold exactly these 20 groups. The dev split is ``--dev_size`` posts drawn from the training
posts with ``random.Random(--seed)``.

``--remove`` (any of ``headers,footers,quotes``; by default everything is kept) strips, by these
rules of ours:

- headers: everything before the first empty line (the ``From:``/``Subject:`` block);
- footers: the signature, from the last line that is ``--`` (optionally followed by spaces) to the end;
- quotes: lines starting with ``>`` or ``|`` (after spaces), and the lines that announce a quote
  (``In article <...>`` or ending in ``writes:`` / ``wrote:``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..errors import InputError
from .common import Release, read_text, write_jsonl_splits

logger = logging.getLogger(__name__)

MEMBER = re.compile(r"(?:^|/)(20news-bydate-(?:train|test)/[^/]+/[^/]+)$")
GROUPS = (
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)
PARTS = ("headers", "footers", "quotes")
DEV_SIZE = 1000  # about 9 % of the 11,314 training posts
SIGNATURE = re.compile(r"^--\s*$")
QUOTE_INTRO = re.compile(r"^\s*In article <|(?:writes|wrote):\s*$")


def _parts(value) -> tuple[str, ...]:
    """``"headers,quotes"`` (or a sequence of names) -> the checked names."""
    parts = tuple(p.strip() for p in (value.split(",") if isinstance(value, str) else value) if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise InputError(f"--remove: unknown part(s) {', '.join(unknown)}; choose from {','.join(PARTS)}")
    return parts


def add_arguments(parser) -> None:
    parser.add_argument("--dev_size", type=int, default=DEV_SIZE, help="training posts held out as dev.jsonl")
    parser.add_argument("--seed", type=int, default=42, help="seed of the dev draw")
    parser.add_argument("--remove", default="", help="strip any of headers,footers,quotes (default: keep everything)")


def strip_post(text: str, remove: tuple[str, ...]) -> str:
    """``text`` without the parts named in ``remove`` (the rules are in the module docstring)."""
    lines = text.splitlines()
    if "headers" in remove and "" in [line.strip() for line in lines]:
        lines = lines[[line.strip() for line in lines].index("") + 1 :]
    if "footers" in remove:
        marks = [i for i, line in enumerate(lines) if SIGNATURE.match(line)]
        lines = lines[: marks[-1]] if marks else lines
    if "quotes" in remove:
        lines = [x for x in lines if not x.lstrip().startswith((">", "|")) and not QUOTE_INTRO.search(x)]
    return "\n".join(lines).strip()


def _posts(release: Release, files: dict[str, Path], split: str, remove) -> list[dict]:
    folder = f"20news-bydate-{split}"
    by_group: dict[str, list[str]] = {}
    for key in files:
        if key.startswith(folder + "/"):
            by_group.setdefault(key.split("/")[1], []).append(key)
    if not by_group:
        raise InputError(f"{release.source}: no {folder}/<group>/<id> posts (is this the 20news-bydate release?)")
    missing, unknown = sorted(set(GROUPS) - set(by_group)), sorted(set(by_group) - set(GROUPS))
    if missing:
        raise InputError(f"{release.source}: {folder}/{missing[0]}/ is missing (the release has 20 groups)")
    if unknown:
        raise InputError(f"{release.source}: {folder}/{unknown[0]}/ is not one of the 20 newsgroups")
    rows = []
    for label, group in enumerate(GROUPS):
        for key in sorted(by_group[group], key=lambda k: (len(k), k)):  # numeric ids in numeric order
            text = read_text(files[key], release.where(files[key]), encoding="latin-1")
            rows.append({"text": strip_post(text, remove), "label": label})
    return rows


def convert(release: Release, out: Path, dev_size: int = DEV_SIZE, seed: int = 42, remove="") -> dict:
    remove = _parts(remove)
    files = release.find(MEMBER)
    test = _posts(release, files, "test", remove)
    train = _posts(release, files, "train", remove)
    empty = sum(not row["text"] for row in train + test)
    if empty:
        logger.warning("20news: %d posts are empty after --remove %s", empty, ",".join(remove))
    return write_jsonl_splits(out, train, test, dev_size, seed, f"{release.source}: 20news-bydate-train")
