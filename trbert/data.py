"""Features on disk and in batches: the feature cache, the dataset and the batch collation.

What this file is: everything between a task's examples and the tensors the model eats.
Features are a dict of numpy arrays with one row per dataset item (``input_ids [N, T]``,
``lengths [N]``, labels, and stage inputs such as ``guide [N, S, T]`` or ``teacher [N, C]``).
Batches are trimmed to the longest sequence they hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

logger = logging.getLogger(__name__)

TOKEN_ARRAYS = ("input_ids", "token_type_ids", "guide", "ranks")  # arrays whose last axis is the token axis
HOST_ONLY = ("offsets", "max_context", "origin")  # decoding aids that never go into a batch


def file_digest(path: Path) -> str:
    """sha256 of a file; of a folder (RACE's splits): of its files' names and digests."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{item.relative_to(path)}:{file_digest(item)}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """Everything about the tokenizer that changes ids: its class, vocabulary and normalisation."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # call-time settings, not part of what the tokenizer is
        spec.pop("padding", None)
        state = json.dumps(spec, sort_keys=True)
    else:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256((type(tokenizer).__name__ + state).encode()).hexdigest()


def dataset_fingerprint(task, data_dir: str, split: str, tokenizer, max_length: int) -> dict:
    """What identifies a featurised split; also stored next to every per-row stage file."""
    path = task.path(data_dir, split)
    return {
        "task": task.name,
        "split": split,
        "source_sha256": file_digest(path),
        "tokenizer_sha256": tokenizer_digest(tokenizer),
        "max_seq_length": max_length,
        **task.settings,
    }


def load_features(task, data_dir, split, tokenizer, max_length, cache_dir=None, overwrite=False):
    """Featurise a split, through a cache keyed by everything that changes the features (D20 fixed).

    Returns ``(arrays, fingerprint)``. The cache is ``.npz`` (no pickle), written atomically."""
    fingerprint = dataset_fingerprint(task, data_dir, split, tokenizer, max_length)
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:20]
    cache = Path(cache_dir or Path(data_dir) / "cached_features") / f"{task.name}_{split}_{max_length}_{key}.npz"
    if cache.is_file() and not overwrite:
        with np.load(cache, allow_pickle=False) as z:
            logger.info("loaded features from %s", cache)
            return {k: z[k] for k in z.files}, fingerprint
    arrays = task.featurize(task.read(data_dir, split), tokenizer, max_length, split)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
        logger.info("cached %d %s features in %s", len(arrays["lengths"]), split, cache)
    except OSError as e:  # a read-only data directory only costs the cache
        logger.warning("could not write the feature cache %s (%s)", cache, e)
    return arrays, fingerprint


def collate(arrays: dict[str, np.ndarray], index: list[int]) -> dict[str, torch.Tensor]:
    """Rows ``index`` of every array as tensors, trimmed to the longest sequence of the batch."""
    index = np.asarray(index)
    lengths = arrays["lengths"][index]
    width = int(lengths.max())
    batch = {"index": torch.from_numpy(index)}
    for name, array in arrays.items():
        if name in HOST_ONLY:
            continue
        rows = array[index]
        if name in TOKEN_ARRAYS or (name == "teacher" and array.ndim >= 3):  # span teachers: [N, (S,) 2, T]
            rows = rows[..., :width]
        batch[name] = torch.from_numpy(np.ascontiguousarray(rows))
    batch["input_ids"] = batch["input_ids"].long()
    if "token_type_ids" in batch:
        batch["token_type_ids"] = batch["token_type_ids"].long()
    batch["attention_mask"] = torch.arange(width) < batch["lengths"][..., None].long()
    return batch


def loader_of(arrays, index_lists: list[list[int]]) -> DataLoader:
    """A loader collating the given rows, batch by batch. Its own generator: iterating it never
    draws from the global torch RNG (which dropout uses and a resumed run restores)."""
    return DataLoader(
        range(len(arrays["lengths"])),
        batch_sampler=index_lists,
        collate_fn=lambda ix: collate(arrays, ix),
        generator=torch.Generator(),
    )


def batches(arrays, batch_size: int, by_length: bool = False) -> DataLoader:
    """Collated batches in dataset order, or sorted by length (``by_length``, for fast inference;
    every batch carries its rows' ``index``)."""
    n = len(arrays["lengths"])
    size = arrays["lengths"].reshape(n, -1).sum(1)  # tokens of an example (of all its windows)
    order = np.argsort(-size, kind="stable") if by_length else np.arange(n)
    return loader_of(arrays, [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)])


def real_windows(lengths):
    """Which windows ``[N, S]`` hold text: filler windows of a short example hold only [CLS]."""
    return lengths > 1


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
