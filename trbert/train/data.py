"""Features on disk and in batches: a dict of arrays with one row per dataset item (``input_ids [N, T]``,
``lengths [N]``, labels, stage inputs such as ``guide [N, S, T]`` or ``teacher [N, C]``), built a chunk
of examples at a time straight into files and read back memory-mapped (memory stays flat in the number
of documents); batches are trimmed to the longest sequence they hold.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import InputError
from ..store.outputs import file_digest, writing

logger = logging.getLogger(__name__)

FORMAT = 2  # feature cache layout: a folder of .npy files and meta.json (1 was one .npz)
CHUNK = 2048  # examples featurised at a time
HEADER = 256  # bytes at the start of every cached .npy file for its header (data stays aligned)
TOKEN_ARRAYS = ("input_ids", "token_type_ids", "guide", "ranks")  # arrays whose last axis is the token axis
HOST_ONLY = ("offsets", "max_context", "origin", "sent_ids")  # decoding aids that never go into a batch


def tokenizer_digest(tokenizer) -> str:
    """Everything about the tokenizer that changes ids: its class, vocabulary and normalisation."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())  # less the call-time settings, not part of what the tokenizer is
        state = json.dumps({k: v for k, v in spec.items() if k not in ("truncation", "padding")}, sort_keys=True)
    else:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256((type(tokenizer).__name__ + state).encode()).hexdigest()


def dataset_fingerprint(task, data_dir: str, split: str, tokenizer, max_length: int) -> dict:
    """What identifies a featurised split (also stored next to every stage file); its source: the task's
    own ``source_digest`` where it has one (a hub dataset's fingerprint), else the split file's sha256."""
    own = getattr(task, "source_digest", None)
    return {
        "task": task.name,
        "split": split,
        "source_sha256": own(data_dir, split) if own is not None else file_digest(task.path(data_dir, split)),
        "tokenizer_sha256": tokenizer_digest(tokenizer),
        "max_seq_length": max_length,
        **task.settings,
    }


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 ``.npy`` header of exactly ``HEADER`` bytes: the format's dict padded with
    spaces, so it can be written over the room left for it once the row count is known."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    room = HEADER - 10  # magic string, version and the header's length take 10 bytes
    if len(text) >= room:
        raise ValueError(f"no room for the .npy header of shape {shape}")
    return np.lib.format.magic(1, 0) + room.to_bytes(2, "little") + (text.ljust(room - 1) + "\n").encode("latin1")


class ArrayWriter:
    """Rows appended chunk by chunk to ``<name>.npy`` files after room for the header, which :meth:`finish`
    writes: no memory map or second copy, whose resident size or disk traffic would grow with the split."""

    def __init__(self, folder: Path):
        self.folder, self.rows, self.kinds = Path(folder), 0, {}

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        if self.kinds and set(arrays) != set(self.kinds):
            raise ValueError(f"chunks disagree on their features ({sorted(self.kinds)} vs {sorted(arrays)})")
        for name, array in arrays.items():
            kind = (array.dtype.str, array.shape[1:])
            if name not in self.kinds:
                (self.folder / f"{name}.npy").write_bytes(bytes(HEADER))
            if self.kinds.setdefault(name, kind) != kind:
                raise ValueError(f"feature {name}: chunks disagree ({self.kinds[name]} vs {kind})")
            with open(self.folder / f"{name}.npy", "ab") as f:
                np.ascontiguousarray(array).tofile(f)
        self.rows += len(arrays["lengths"])

    def finish(self) -> dict:
        """Write the header of every ``<name>.npy``; returns their shapes and dtypes."""
        for name, (dtype, tail) in self.kinds.items():
            with open(self.folder / f"{name}.npy", "r+b") as f:
                f.write(_npy_header(dtype, (self.rows, *tail)))
        return {name: {"shape": [self.rows, *tail], "dtype": dtype} for name, (dtype, tail) in self.kinds.items()}


def _featurize(task, data_dir, split, tokenizer, max_length, folder: Path) -> dict:
    """Stream the split's examples through ``task.featurize`` into ``folder``."""
    writer, counts, first, examples = ArrayWriter(folder), Counter(), 0, iter(task.read(data_dir, split))
    while chunk := list(itertools.islice(examples, CHUNK)):
        writer.append(task.featurize(chunk, tokenizer, max_length, split, first, counts))
        first += len(chunk)
    for what, count in sorted(counts.items()):
        logger.warning("%s %s: %d %s", task.name, split, count, what.replace("_", " "))
    if writer.rows == 0:
        raise InputError(f"{task.path(data_dir, split)}: no usable example (see the warnings above)")
    return writer.finish()


def _open(folder: Path, fingerprint: dict) -> dict[str, np.ndarray] | None:
    """The cached arrays of ``folder``, memory-mapped; None when absent, incomplete or corrupt."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta["fingerprint"] != fingerprint:
            return None
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
        if any(
            list(arrays[k].shape) != v["shape"] or arrays[k].dtype.str != v["dtype"] for k, v in meta["arrays"].items()
        ):
            raise ValueError("shapes differ from meta.json")
        return arrays
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        logger.warning("%s: unreadable feature cache (%s); building it again", folder, e)
        return None


def load_features(task, data_dir, split, tokenizer, max_length, cache_dir=None, overwrite=False):
    """``(arrays, fingerprint)`` of a split, memory-mapped from a cache keyed by all that changes the features:
    a folder renamed into place when complete, under ``cache_dir``, the task's ``features_home()`` (a hub
    dataset's) or ``<data_dir>/cached_features``; where none can be written, a temporary one for this run."""
    fingerprint = {**dataset_fingerprint(task, data_dir, split, tokenizer, max_length), "format": FORMAT}
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:20]
    home = getattr(task, "features_home", None)
    root = cache_dir or (home() if home is not None else Path(data_dir) / "cached_features")
    folder = Path(root) / f"{task.name}_{split}_{max_length}_{key}"
    if not overwrite and (cached := _open(folder, fingerprint)) is not None:
        logger.info("loaded features from %s", folder)
        return cached, fingerprint
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    except OSError as e:  # a read-only data directory: features for this run only
        logger.warning("cannot write the feature cache under %s (%s); using a temporary folder", folder.parent, e)
        folder = tmp = Path(tempfile.mkdtemp(prefix="trbert-features-"))
    try:
        with writing(folder):  # a full disk: one message; the half-built folder goes below
            meta = {"fingerprint": fingerprint, "arrays": _featurize(task, data_dir, split, tokenizer, max_length, tmp)}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if tmp != folder:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
    finally:
        if tmp != folder:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("cached %s features in %s", split, folder)
    return _open(folder, fingerprint), fingerprint


def collate(arrays: dict[str, np.ndarray], index: list[int]) -> dict[str, torch.Tensor]:
    """Rows ``index`` of every array as tensors, trimmed to the longest sequence of the batch."""
    index = np.asarray(index)
    width = int(np.asarray(arrays["lengths"][index]).max())
    batch = {"index": torch.from_numpy(index)}
    for name, array in arrays.items():
        if name in HOST_ONLY:
            continue
        rows = array[index]
        if name in TOKEN_ARRAYS or (name == "teacher" and array.ndim >= 3):  # span teachers: [N, (S,) 2, T]
            rows = rows[..., :width]
        rows = torch.from_numpy(np.ascontiguousarray(rows))
        batch[name] = rows.long() if name in ("input_ids", "token_type_ids") else rows
    batch["attention_mask"] = torch.arange(width) < batch["lengths"][..., None].long()
    return batch


def loader_of(arrays, index_lists: list[list[int]]) -> DataLoader:
    """A loader collating the given rows, batch by batch. Its own generator: iterating it never
    draws from the global torch RNG (which dropout uses and a resumed run restores)."""
    every = range(len(arrays["lengths"]))
    return DataLoader(
        every, batch_sampler=index_lists, collate_fn=partial(collate, arrays), generator=torch.Generator()
    )


def batches(arrays, batch_size: int, by_length: bool = False, rows: np.ndarray | None = None) -> DataLoader:
    """Collated batches of ``rows`` (default: all), in order or longest first (``by_length``), with their ``index``."""
    rows = np.arange(len(arrays["lengths"])) if rows is None else np.asarray(rows)
    if by_length:  # tokens of an example (of all its windows), longest first
        size = np.asarray(arrays["lengths"]).reshape(len(arrays["lengths"]), -1).sum(1)
        rows = rows[np.argsort(-size[rows], kind="stable")]
    return loader_of(arrays, [rows[i : i + batch_size].tolist() for i in range(0, len(rows), batch_size)])


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
