"""Loading and saving the models of any stage.

What this file is: the only place that reads or writes checkpoints. Every checkpoint directory
holds ``save_pretrained`` weights (safetensors), the tokenizer, the resolved flags
(``training_args.json``) and a manifest (``trbert_stage.json``: which stage made it, from which
checkpoint, the fine-tuned baseline it descends from, the sha256 of its weights). A checkpoint is
written in a temporary directory and renamed into place when complete. Checkpoints of the
original TR-BERT release load too: their selector and head parameters are renamed
(docs/differences.md N6).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig

from ..core.heads import HEADS
from ..errors import InputError
from .outputs import file_digest, read_json

logger = logging.getLogger(__name__)

MANIFEST = "trbert_stage.json"
TRAINED_SELECTORS = ("train_rl", "train_both", "train_init")  # stages after which the selectors are trained
WEIGHTS = "model.safetensors"
BACKBONES = {t: "bert" for t in ("bert", "autobert", "initbert")}
BACKBONES |= {t: "distilbert" for t in ("distilbert", "distilautobert", "initdistilbert")}
# parameter names of the original TR-BERT release -> ours
SELECTOR_NAMES = [
    (
        re.compile(r"^(?:bert\.encoder|distilbert\.transformer)\.linear_1\.(\d+)\.(weight|bias)$"),
        r"selectors.\1.hidden.\2",
    ),
    (
        re.compile(r"^(?:bert\.encoder|distilbert\.transformer)\.linear_2\.(\d+)\.(weight|bias)$"),
        r"selectors.\1.out.\2",
    ),
]


def _original_names(cls) -> list:
    """Renames of the original release's selector and head parameters (docs/differences.md N6)."""
    heads = [(re.compile(rf"^{old}\.(weight|bias)$"), rf"{new}.\1") for old, new in cls.original_names.items()]
    return SELECTOR_NAMES + heads


def _renamed_weights(path: Path, renames) -> dict:
    """``{our name: tensor}`` for the tensors of an original TR-BERT checkpoint named by ``renames``."""
    found = {}

    def take(key, get) -> None:
        for pattern, ours in renames:
            if pattern.match(key):
                found[pattern.sub(ours, key)] = get(key)

    if not path.is_dir():
        return found
    for file in sorted(path.glob("model*.safetensors")):  # not a step checkpoint's optimizer state
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                take(key, f.get_tensor)
    for file in sorted(path.glob("pytorch_model*.bin")):
        state = torch.load(file, map_location="cpu", weights_only=True)
        for key in state:
            take(key, state.get)
    return found


def _config(name_or_path: str, model_type: str, **hub):
    if (Path(name_or_path) / "config.json").is_file():
        read_json(Path(name_or_path) / "config.json", "model config")  # one clear message if it is not JSON
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub)
    except (OSError, ValueError) as e:
        raise InputError(f"{name_or_path}: not a model checkpoint or known model name ({e})") from None
    if config.model_type.removeprefix("tr") != BACKBONES[model_type]:  # ours say trbert / trdistilbert
        raise InputError(
            f"{name_or_path}: a {config.model_type} checkpoint cannot be used with --model_type {model_type}"
        )
    return config


def load_model(name_or_path: str, model_type: str, num_labels: int, head: str = "classification", **hub):
    """Load any stage's checkpoint (or a stock / hub BERT) into our model class for ``head``, with checks."""
    if model_type not in BACKBONES:
        raise InputError(f"unknown --model_type {model_type!r}; known: {', '.join(BACKBONES)}")
    cls = HEADS[head].get(BACKBONES[model_type])
    if cls is None:
        raise InputError(
            f"--model_type {model_type}: no {BACKBONES[model_type]} model with a {head} head (use a bert type)"
        )
    config = _config(name_or_path, model_type, **hub)
    made_for = getattr(config, "tr_head", None) or (
        "classification" if getattr(config, "tr_task_family", None) else None
    )
    if made_for not in (None, head):
        raise InputError(f"{name_or_path}: a checkpoint with a {made_for} head cannot be used for a {head} task")
    has_head = any("SequenceClassification" in a for a in (config.architectures or []))
    if has_head and config.num_labels != num_labels:
        raise InputError(f"{name_or_path}: its classifier has {config.num_labels} labels, the task has {num_labels}")
    values = {k: v for k, v in config.to_dict().items() if k != "model_type"}  # ours: trbert / trdistilbert
    config = cls.config_class.from_dict({**values, "num_labels": num_labels, "tr_head": head})
    try:
        model, info = cls.from_pretrained(name_or_path, config=config, output_loading_info=True, **hub)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise InputError(f"{name_or_path}: the weights cannot be read (truncated or corrupt?): {e}") from None
    missing = set(info.get("missing_keys", []))
    try:
        original = _renamed_weights(Path(name_or_path), _original_names(cls))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise InputError(f"{name_or_path}: the weights cannot be read (truncated or corrupt?): {e}") from None
    if original:
        model.load_state_dict(original, strict=False)
        missing -= set(original)
        logger.info("%s: original TR-BERT checkpoint, %d parameters renamed", name_or_path, len(original))
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
        target = out_dir / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()


def save_checkpoint(model, tokenizer, out_dir, flags: dict, stage: str, source: str | None, extra=None) -> None:
    """Write a complete checkpoint into ``out_dir`` (weights, tokenizer, flags, manifest, and
    whatever ``extra(folder)`` adds) in a temporary directory first, so it appears complete or not at all."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".saving-{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        config = read_json(tmp / "config.json", "model config")  # what a plain call runs (the model is left as it is)
        config["tr_selection"] = "threshold" if stage in TRAINED_SELECTORS else "off"
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        tokenizer.save_pretrained(tmp)
        (tmp / "training_args.json").write_text(json.dumps(flags, indent=2, sort_keys=True, default=str))
        manifest = {
            "stage": stage,
            "source": str(source) if source else None,
            "baseline": baseline_of(source) if stage != "finetune" else str(out_dir.resolve()),
            "weights_sha256": file_digest(tmp / WEIGHTS),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if extra is not None:
            extra(tmp)
        _move_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("saved %s checkpoint to %s", stage, out_dir)


def read_manifest(model_dir) -> dict:
    path = Path(model_dir) / MANIFEST
    return read_json(path, "checkpoint manifest") if path.is_file() else {}


def backbone_of(model_dir) -> str:
    """``bert`` or ``distilbert``: the backbone of a stock checkpoint or of one of ours
    (``trbert`` / ``trdistilbert``) in ``model_dir``."""
    config = read_json(Path(model_dir) / "config.json", "model config")
    return "distilbert" if str(config.get("model_type", "bert")).removeprefix("tr") == "distilbert" else "bert"


def baseline_of(model_dir) -> str | None:
    """The fine-tuned baseline a checkpoint descends from (itself when it is one)."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    manifest = read_manifest(model_dir)
    if manifest.get("stage") == "finetune":
        return str(Path(model_dir).resolve())
    return manifest.get("baseline")


def weights_digest(model_dir) -> str | None:
    """The sha256 of a checkpoint's weights as its manifest records it (None for other models)."""
    return read_manifest(model_dir).get("weights_sha256") if model_dir and Path(model_dir).is_dir() else None


def find_artifact(model_dir, filename: str) -> Path | None:
    """A stage file next to ``model_dir`` or next to the baseline it descends from."""
    for folder in (model_dir, baseline_of(model_dir)):
        if folder and (Path(folder) / filename).is_file():
            return Path(folder) / filename
    return None
