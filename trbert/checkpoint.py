"""Loading and saving models of any stage, and the stage artifacts passed between stages.

What this file is: the only place that reads or writes checkpoints and stage files. Every
checkpoint directory holds ``save_pretrained`` weights (safetensors), the tokenizer, the resolved
arguments (``training_args.json``) and a manifest (``trbert_stage.json``: which stage made it and
from which checkpoint). Per-row stage files (token scores, teacher logits, rank targets) are
``.npy`` arrays with a ``.json`` sidecar naming the dataset they belong to (D28 fixed).
Everything is written to a temporary name first and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoConfig

from .errors import InputError
from .heads import (
    TRBertForHotpotQA,
    TRBertForMultipleChoice,
    TRBertForQuestionAnswering,
    TRBertForSequenceClassification,
    TRBertForWikihop,
    TRDistilBertForMultipleChoice,
    TRDistilBertForQuestionAnswering,
    TRDistilBertForSequenceClassification,
)

logger = logging.getLogger(__name__)

MANIFEST = "trbert_stage.json"
# --model_type -> backbone (model_type in config.json); (backbone, head) -> model class
MODEL_TYPES = {
    **{t: "bert" for t in ("bert", "autobert", "initbert")},
    **{t: "distilbert" for t in ("distilbert", "distilautobert", "initdistilbert")},
}
MODEL_CLASSES = {
    ("bert", "classification"): TRBertForSequenceClassification,
    ("distilbert", "classification"): TRDistilBertForSequenceClassification,
    ("bert", "span"): TRBertForQuestionAnswering,
    ("distilbert", "span"): TRDistilBertForQuestionAnswering,
    ("bert", "choice"): TRBertForMultipleChoice,
    ("distilbert", "choice"): TRDistilBertForMultipleChoice,
    # the original has no DistilBERT model for these two either
    ("bert", "hotpot"): TRBertForHotpotQA,
    ("bert", "wikihop"): TRBertForWikihop,
}
# selector weights in checkpoints of the original TR-BERT release (spec §1.1)
ORIGINAL_SELECTOR = re.compile(r"^(?:bert\.encoder|distilbert\.transformer)\.linear_([12])\.(\d+)\.(weight|bias)$")


def _original_selector_weights(path: Path) -> dict:
    """``{"selectors.<w>.<hidden|out>.<weight|bias>": tensor}`` read from an original TR-BERT
    checkpoint directory; empty for any other checkpoint or a hub name."""
    if not path.is_dir():
        return {}
    found = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            found.update({k: f.get_tensor(k) for k in f.keys() if ORIGINAL_SELECTOR.match(k)})
    for file in sorted(path.glob("pytorch_model*.bin")):
        state = torch.load(file, map_location="cpu", weights_only=True)
        found.update({k: v for k, v in state.items() if ORIGINAL_SELECTOR.match(k)})
    renamed = {}
    for key, value in found.items():
        layer, w, kind = ORIGINAL_SELECTOR.match(key).groups()
        renamed[f"selectors.{w}.{'hidden' if layer == '1' else 'out'}.{kind}"] = value
    return renamed


def load_model(
    name_or_path: str,
    model_type: str,
    num_labels: int,
    family: str = "classification",
    head: str = "classification",
    **hub,
):
    """Load any stage's checkpoint (or a stock / hub BERT) into our model class for ``head``, with checks."""
    if model_type not in MODEL_TYPES:
        raise InputError(f"unknown --model_type {model_type!r}; known: {', '.join(MODEL_TYPES)}")
    backbone = MODEL_TYPES[model_type]
    if (backbone, head) not in MODEL_CLASSES:
        raise InputError(f"--model_type {model_type}: no {backbone} model with a {head} head (use a bert type)")
    cls = MODEL_CLASSES[backbone, head]
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub)
    except (OSError, ValueError) as e:
        raise InputError(f"{name_or_path}: not a model checkpoint or known model name ({e})") from None
    if config.model_type != backbone:
        raise InputError(
            f"{name_or_path}: a {config.model_type} checkpoint cannot be used with --model_type {model_type}"
        )
    made_for = getattr(config, "tr_head", None) or (
        "classification" if getattr(config, "tr_task_family", None) == "classification" else None
    )
    if made_for not in (None, head):
        raise InputError(f"{name_or_path}: a checkpoint with a {made_for} head cannot be used for {family} ({head})")
    has_head = any("SequenceClassification" in a for a in (config.architectures or []))
    if has_head and config.num_labels != num_labels:
        raise InputError(f"{name_or_path}: its classifier has {config.num_labels} labels, the task has {num_labels}")
    config.num_labels = num_labels
    config.tr_task_family = family
    config.tr_head = head
    model, info = cls.from_pretrained(name_or_path, config=config, output_loading_info=True, **hub)
    missing = set(info.get("missing_keys", []))
    original = _original_selector_weights(Path(name_or_path))
    if original:
        model.load_state_dict(original, strict=False)
        missing -= set(original)
        logger.info("%s: original TR-BERT checkpoint, its selector weights renamed", name_or_path)
    fresh = sorted({k.split(".")[1] for k in missing if k.startswith("selectors.")})
    if fresh:
        logger.info("token selectors %s are not in %s: newly initialised", ", ".join(fresh), name_or_path)
    other = [k for k in missing if not k.startswith("selectors.")]
    if other:
        logger.info("newly initialised (not in the checkpoint): %s", ", ".join(sorted(other)))
    return model


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """A new directory is renamed into place in one step; into an existing one (the output
    directory of a stage, which may hold stage files) each file is renamed."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    for item in tmp.iterdir():
        os.replace(item, out_dir / item.name)
    tmp.rmdir()


def save_checkpoint(model, tokenizer, out_dir, args: dict, stage: str, source: str | None, extra=None) -> None:
    """Write a complete checkpoint into ``out_dir`` (weights, tokenizer, arguments, manifest, and
    whatever ``extra(folder)`` adds) in a temporary directory first, so it appears complete or not at all."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "training_args.json").write_text(json.dumps(args, indent=2, sort_keys=True, default=str))
        manifest = {"stage": stage, "source": str(source) if source else None, "baseline": baseline_of(source)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if extra is not None:
            extra(tmp)
        _move_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("saved %s checkpoint to %s", stage, out_dir)


def read_manifest(model_dir) -> dict:
    path = Path(model_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def baseline_of(model_dir) -> str | None:
    """The fine-tuned baseline a checkpoint descends from (itself when it is one)."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    manifest = read_manifest(model_dir)
    if manifest.get("stage") == "finetune":
        return str(Path(model_dir).resolve())
    return manifest.get("baseline")


def find_artifact(model_dir, filename: str) -> Path | None:
    """A stage file next to ``model_dir`` or next to the baseline it descends from."""
    for folder in (model_dir, baseline_of(model_dir)):
        if folder and (Path(folder) / filename).is_file():
            return Path(folder) / filename
    return None


def atomic_write(path, write) -> None:
    """Call ``write(binary file)`` on a temporary file next to ``path``, then rename it to ``path``:
    readers never see a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def save_array(path, array: np.ndarray, meta: dict) -> None:
    """Write ``array`` as ``path`` (.npy) plus ``path.json`` describing it, both atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "shape": list(array.shape), "dtype": str(array.dtype)}
    atomic_write(path, lambda f: np.save(f, array))
    write_json(_sidecar(path), meta)
    logger.info("wrote %s %s", path, tuple(array.shape))


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def load_array(path, fingerprint: dict, what: str, made_by: str) -> np.ndarray:
    """Read a stage file and check that it was made for this dataset (same rows, same features)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; it is made by {made_by}")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
        meta = json.loads(_sidecar(path).read_text()) if _sidecar(path).is_file() else {}
    except (ValueError, OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable {what} file ({e})") from None
    made_for = meta.get("dataset", {})
    for key in fingerprint:
        if key in made_for and made_for[key] != fingerprint[key]:
            raise InputError(
                f"{path}: {what} made for another dataset ({key} differs: {made_for[key]} vs {fingerprint[key]})"
            )
    return array


def check_rows(array: np.ndarray, n: int, path, what: str) -> None:
    if array.shape[0] != n:
        raise InputError(f"{path}: {what} has {array.shape[0]} rows but the training set has {n} examples")
