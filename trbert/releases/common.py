"""Reading a public dataset release as it is downloaded, and writing its converted splits safely.

What this file is: the parts every converter shares — :class:`Release` (a folder, a ``.tar.gz`` /
``.tgz`` / ``.tar.bz2`` / ``.zip`` archive, or one ``.gz`` / ``.bz2`` file) that finds the
release's files by a pattern whatever folder they sit in, :func:`staged_output` (everything is built
in a temporary folder beside the output folder and renamed into place at the end, so a refused
release leaves nothing behind), the seeded dev carve-out, TF-IDF paragraph ranking and a streaming
reader of large JSON lists. What it is not: it knows no dataset.

Archives are read as a stream, member after member: only the members a converter asks for are
written (to a scratch folder inside the temporary output), never the whole archive into memory.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import logging
import lzma
import os
import random
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..tools.prepare import write_jsonl

logger = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".tar")
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
TAR_OPENERS = {".gz": gzip.open, ".tgz": gzip.open, ".bz2": bz2.open, ".tbz2": bz2.open, ".xz": lzma.open}
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError, zipfile.BadZipFile)


def open_text(path: Path, encoding: str = "utf-8", newline=None):
    """A text stream of ``path``, decompressed when its name ends in ``.gz``, ``.bz2`` or ``.xz``."""
    opener = COMPRESSED.get(Path(path).suffix, open)
    return opener(path, "rt", encoding=encoding, newline=newline)


@contextlib.contextmanager
def reading(where: str):
    """Turn a read failure inside the block (a truncated ``.gz``, bad bytes) into one InputError."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: not valid text ({e.reason} at byte {e.start})") from None
    except READ_ERRORS as e:
        raise InputError(f"{where}: cannot be read ({e})") from None


def read_text(path: Path, where: str, encoding: str = "utf-8") -> str:
    with reading(where), open_text(path, encoding) as f:
        return f.read()


def read_json(path: Path, where: str):
    text = read_text(path, where)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}:{e.lineno}: not valid JSON ({e.msg})") from None


def iter_json_list(path: Path, where: str, chunk: int = 1 << 20) -> Iterator[dict]:
    """The objects of a file holding one JSON list, decoded one at a time (the list is never held).
    Each item must be an object, so a partly read item can never decode by accident."""
    decoder, buffer, position = json.JSONDecoder(), "", 0
    with reading(where), open_text(path) as f:

        def fill() -> bool:
            nonlocal buffer, position
            more = f.read(chunk)
            buffer, position = buffer[position:] + more, 0
            return bool(more)

        def next_char() -> str:
            nonlocal position
            while True:
                while position < len(buffer) and buffer[position].isspace():
                    position += 1
                if position < len(buffer):
                    return buffer[position]
                if not fill():
                    raise InputError(f"{where}: the JSON list ends early (truncated file?)")

        if next_char() != "[":
            raise InputError(f"{where}: expected a JSON list of objects")
        position += 1
        if next_char() == "]":
            return
        while True:
            if next_char() != "{":
                raise InputError(f"{where}: expected a JSON object inside the list")
            while True:
                try:
                    item, position = decoder.raw_decode(buffer, position)
                    break
                except json.JSONDecodeError as e:
                    if not fill():
                        raise InputError(f"{where}: not valid JSON ({e.msg})") from None
            yield item
            separator = next_char()
            position += 1
            if separator == "]":
                return
            if separator != ",":
                raise InputError(f"{where}: expected ',' or ']' between list items, found {separator!r}")


class Release:
    """The downloaded release at ``source``; archive members are extracted into ``scratch`` on demand.

    :meth:`find` returns ``{key: path}`` where ``key`` is the pattern's first group (the file's name
    inside the release, without any enclosing folder and without a ``.gz``/``.bz2`` suffix) and
    ``path`` a readable file (possibly compressed: open it with :func:`open_text`).
    """

    def __init__(self, source: Path, scratch: Path):
        self.source, self.scratch = Path(source), Path(scratch)
        if not self.source.exists():
            raise InputError(f"{self.source}: not found (--source is the downloaded folder or archive)")
        name = self.source.name.lower()
        if self.source.is_dir():
            self.kind = "folder"
        elif name.endswith(TAR_SUFFIXES):
            self.kind = "tar"
        elif name.endswith(".zip"):
            self.kind = "zip"
        else:
            self.kind = "file"
        # where the release's files may sit: the source (or scratch) folder and its subfolders
        top = self.source if self.kind == "folder" else self.scratch
        self.roots: list[Path] = [top, *sorted(p for p in top.glob("*") if p.is_dir())]

    def where(self, path: Path) -> str:
        """How a file of this release is named in messages (``archive:member`` for archives)."""
        path = Path(path)
        if self.kind in ("tar", "zip") and path.is_relative_to(self.scratch):
            return f"{self.source}:{path.relative_to(self.scratch).as_posix()}"
        return str(path)

    def describe(self, message: str) -> str:
        """``message`` with scratch paths shown as archive members."""
        if self.kind in ("tar", "zip"):
            return message.replace(f"{self.scratch}{os.sep}", f"{self.source}:")
        return message

    def find(self, pattern: re.Pattern, names: Collection[str] | None = None) -> dict[str, Path]:
        """Every file whose path matches ``pattern`` (searched, group 1 = key); with ``names`` only
        those keys (and an archive is read only until all of them are found)."""
        if self.kind == "folder" and names is not None:
            return self._lookup(pattern, names)
        found: dict[str, Path] = {}
        for member, key, path in self._candidates(pattern, names):
            if key in found:
                raise InputError(f"{self.source}: two copies of {key} ({self.where(found[key])} and {member})")
            found[key] = path
            if names is not None and len(found) == len(names):
                break
        return found

    def _lookup(self, pattern: re.Pattern, names: Collection[str]) -> dict[str, Path]:
        found = {}
        for key in names:
            path = next(
                (r / f"{key}{s}" for r in self.roots for s in ("", *COMPRESSED) if (r / f"{key}{s}").is_file()), None
            )
            if path is not None and pattern.search(key):
                found[key] = path
                self._remember(path, key)
        return found

    def _candidates(self, pattern, names) -> Iterator[tuple[str, str, Path]]:
        """``(name in the release, key, readable path)`` of the matching files."""
        if self.kind == "folder":
            for folder, _, files in os.walk(self.source):
                for file in sorted(files):
                    path = Path(folder) / file
                    member = path.relative_to(self.source).as_posix()
                    key = _key(pattern, member, names)
                    if key is not None:
                        self._remember(path, key)
                        yield member, key, path
        elif self.kind == "file":
            key = _key(pattern, self.source.name, names)
            if key is not None:
                yield self.source.name, key, self.source
        else:
            yield from self._extract(pattern, names)

    def _remember(self, path: Path, key: str) -> None:
        """The folder holding the release's files (for later :meth:`find` calls with ``names``)."""
        text = path.as_posix()
        bare = next((text[: -len(s)] for s in COMPRESSED if text.endswith(s)), text)
        root = Path(bare[: -len(key)])
        if self.roots[0] != root:
            self.roots = [root, *(r for r in self.roots if r != root)]

    def _extract(self, pattern, names) -> Iterator[tuple[str, str, Path]]:
        try:
            for member, key, stream in self._members(pattern, names):
                if ".." in Path(member).parts or Path(member).is_absolute():
                    continue  # never write outside the scratch folder
                target = self.scratch / member
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as out:
                    shutil.copyfileobj(stream, out, 1 << 20)
                yield member, key, target
        except READ_ERRORS as e:
            raise InputError(
                f"{self.source}: the archive is truncated or damaged ({e or type(e).__name__}); download it again"
            ) from None

    def _members(self, pattern, names) -> Iterator[tuple[str, str, io.BufferedIOBase]]:
        if self.kind == "zip":
            with zipfile.ZipFile(self.source) as archive:
                for info in archive.infolist():
                    key = None if info.is_dir() else _key(pattern, info.filename, names)
                    if key is not None:
                        with archive.open(info) as stream:
                            yield info.filename, key, stream
            return
        name = self.source.name.lower()
        opener = next((o for s, o in TAR_OPENERS.items() if name.endswith(s)), open)
        with opener(self.source, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as archive:
            for info in archive:  # a stream: members in order, nothing held
                key = _key(pattern, info.name, names) if info.isfile() else None
                if key is not None:
                    yield info.name, key, archive.extractfile(info)
            # tarfile takes a header cut short for the end of the archive: reading a compressed
            # stream to its end checks its end marker and checksum; a plain tar must show its own
            # end marker (zero blocks) where the members stopped
            while raw.read(1 << 20):
                pass
            if opener is open and raw.seek(archive.offset) is not None and raw.read(1024) != bytes(1024):
                raise tarfile.ReadError("the end-of-archive marker is missing")


def _key(pattern: re.Pattern, member: str, names) -> str | None:
    """The release key of ``member`` (compression suffix dropped), or None when not wanted."""
    bare = next((member[: -len(s)] for s in COMPRESSED if member.endswith(s)), member)
    match = pattern.search(bare)
    if match is None or (names is not None and match.group(1) not in names):
        return None
    return match.group(1)


@contextlib.contextmanager
def staged_output(output_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``output_dir``; renamed to ``output_dir`` when the block succeeds,
    removed with everything in it when it fails. An existing non-empty ``output_dir`` is refused."""
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not empty; choose a new --output_dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):  # what a killed earlier run into it left
        shutil.rmtree(stale, ignore_errors=True)
        logger.warning("removed %s, left by a run that did not finish", stale)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def carve_dev(n: int, dev_size: int, seed: int, where: str) -> set[int]:
    """Indices of ``dev_size`` of ``n`` training examples drawn with ``random.Random(seed)``."""
    if not 0 < dev_size < n:
        raise InputError(f"{where}: --dev_size {dev_size} must be between 1 and {n - 1} (the training examples)")
    return set(random.Random(seed).sample(range(n), dev_size))


def rank_paragraphs(question: str, paragraphs: list[str]) -> list[int]:
    """Paragraph indices, most similar to ``question`` first: cosine similarity of TF-IDF vectors
    (English stop words removed) fitted on these paragraphs; ties keep the given order."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(paragraphs) < 2:
        return list(range(len(paragraphs)))
    vectorizer = TfidfVectorizer(stop_words="english")
    try:
        matrix = vectorizer.fit_transform(paragraphs)
    except ValueError:  # nothing but stop words: no vocabulary to rank with
        return list(range(len(paragraphs)))
    scores = (matrix @ vectorizer.transform([question]).T).toarray().ravel()
    return np.argsort(-scores, kind="stable").tolist()


def write_jsonl_splits(out: Path, train: list[dict], test: list[dict], dev_size: int, seed: int, where: str) -> dict:
    """``train.jsonl`` (``train`` less the dev draw), ``dev.jsonl`` (the draw, in release order) and
    ``test.jsonl`` in ``out``; returns the label counts per file."""
    dev_rows = carve_dev(len(train), dev_size, seed, where)
    splits = {
        "train": [row for i, row in enumerate(train) if i not in dev_rows],
        "dev": [row for i, row in enumerate(train) if i in dev_rows],
        "test": test,
    }
    for split, rows in splits.items():
        write_jsonl(out / f"{split}.jsonl", rows)
    return {f"{split}.jsonl": label_counts(row["label"] for row in rows) for split, rows in splits.items()}


def write_json_list(path: Path, items) -> int:
    """Write the iterable ``items`` as one JSON list, one item per line, without holding them."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for item in items:
            f.write(",\n" if count else "\n")
            f.write(json.dumps(item, ensure_ascii=False))
            count += 1
        f.write("\n]\n")
    return count


def label_counts(labels) -> dict[str, int]:
    """``{"examples": n, "label <y>": count, ...}`` in label order."""
    values, counts = np.unique(np.asarray(list(labels)), return_counts=True)
    return {"examples": int(counts.sum()), **{f"label {v}": int(c) for v, c in zip(values, counts, strict=True)}}
