"""Loading and saving the models of any stage: the only place that reads or writes checkpoints.

Every checkpoint directory holds ``save_pretrained`` weights (safetensors), the tokenizer, the resolved flags
(``training_args.json``) and a manifest (``trbert_stage.json``: which stage made it, from which checkpoint, the
fine-tuned baseline it descends from, the sha256 of its weights). A checkpoint is written in a temporary directory and
renamed into place when complete (into an existing folder file by file, its manifest last). Checkpoints of the
original TR-BERT release load too: their selector and head parameters are renamed (docs/differences.md N6).
"""

from __future__ import annotations

import contextlib
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
from .outputs import file_digest, read_json, writing

try:  # transformers 5 checks config.json's field types through huggingface_hub's strict dataclasses
    from huggingface_hub.errors import StrictDataclassError as ConfigFieldError
except ImportError:
    ConfigFieldError = ValueError

logger = logging.getLogger(__name__)

MANIFEST = "trbert_stage.json"
TRAINED_SELECTORS = ("train_rl", "train_both", "train_init")  # stages after which the selectors are trained
WEIGHTS = "model.safetensors"
BACKBONES = {t: "bert" for t in ("bert", "autobert", "initbert")}
BACKBONES |= {t: "distilbert" for t in ("distilbert", "distilautobert", "initdistilbert")}
REDUCTION_TYPE = {"bert": "autobert", "distilbert": "distilautobert"}  # backbone -> its TR-BERT --model_type
ORIGINAL_SELECTOR = r"^(?:bert\.encoder|distilbert\.transformer)\.linear_{}\.(\d+)\.(weight|bias)$"
# parameter names of the original TR-BERT release -> ours
SELECTOR_NAMES = [
    (re.compile(ORIGINAL_SELECTOR.format(i)), rf"selectors.\1.{ours}.\2") for i, ours in ((1, "hidden"), (2, "out"))
]


def _stored(path: Path):
    """``(name, get)`` of every tensor stored in the weight files of ``path`` (``get(name)`` reads it)."""
    for file in sorted(path.glob("model*.safetensors")):  # not a step checkpoint's optimizer state
        with safe_open(str(file), "pt") as f:
            yield from ((key, f.get_tensor) for key in f.keys())
    for file in sorted(path.glob("pytorch_model*.bin")):
        state = torch.load(file, map_location="cpu", weights_only=True)
        yield from ((key, state.get) for key in state)


@contextlib.contextmanager
def _reading(path):
    try:
        yield
    except (SafetensorError, OSError, RuntimeError) as e:
        raise InputError(f"{path}: the weights cannot be read (truncated or corrupt?): {e}") from None


def has_selectors(path) -> bool:
    """Whether the weights in ``path`` hold token selectors (ours, or the original release's)."""
    with _reading(path):
        return any(k.startswith("selectors.") or SELECTOR_NAMES[0][0].match(k) for k, _ in _stored(Path(path)))


def _renamed_weights(path: Path, cls) -> dict:
    """``{our name: tensor}`` of an original TR-BERT checkpoint's selectors and head (docs/differences.md N6)."""
    heads = [(re.compile(rf"^{old}\.(weight|bias)$"), rf"{new}.\1") for old, new in cls.original_names.items()]
    return {
        p.sub(ours, key): get(key) for key, get in _stored(path) for p, ours in SELECTOR_NAMES + heads if p.match(key)
    }


def model_config(name_or_path: str, **hub):
    """A checkpoint's or hub model's config; one message if it is not JSON, has a wrongly typed field or is missing."""
    if (Path(name_or_path) / "config.json").is_file():
        read_json(Path(name_or_path) / "config.json", "model config")
    try:
        return AutoConfig.from_pretrained(name_or_path, **hub)
    except (OSError, ValueError, TypeError, ConfigFieldError) as e:
        raise InputError(f"{name_or_path}: not a usable model checkpoint or known model name ({e})") from None


def load_model(name_or_path: str, model_type: str, num_labels: int, head: str = "classification", **hub):
    """Load any stage's checkpoint (or a stock / hub BERT) into our model class for ``head``, with checks."""
    if model_type not in BACKBONES:
        raise InputError(f"unknown --model_type {model_type!r}; known: {', '.join(BACKBONES)}")
    backbone = BACKBONES[model_type]
    if (cls := HEADS[head].get(backbone)) is None:
        raise InputError(f"--model_type {model_type}: no {backbone} model with a {head} head (use a bert type)")
    config = model_config(name_or_path, **hub)
    if config.model_type.removeprefix("tr") != backbone:  # ours say trbert / trdistilbert
        raise InputError(
            f"{name_or_path}: a {config.model_type} checkpoint cannot be used with --model_type {model_type}"
        )
    family = "classification" if getattr(config, "tr_task_family", None) else None
    if (made_for := getattr(config, "tr_head", None) or family) not in (None, head):
        raise InputError(f"{name_or_path}: a checkpoint with a {made_for} head cannot be used for a {head} task")
    if config.num_labels != num_labels and any("SequenceClassification" in a for a in (config.architectures or [])):
        raise InputError(f"{name_or_path}: its classifier has {config.num_labels} labels, the task has {num_labels}")
    values = {k: v for k, v in config.to_dict().items() if k != "model_type"}  # ours: trbert / trdistilbert
    config = cls.config_class.from_dict({**values, "num_labels": num_labels, "tr_head": head})
    with _reading(name_or_path):
        model, info = cls.from_pretrained(name_or_path, config=config, output_loading_info=True, **hub)
        original = _renamed_weights(Path(name_or_path), cls)
    missing = set(info.get("missing_keys", []))
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
    """Rename ``tmp`` to ``out_dir``, at once if it is new, else file by file (it may hold a stage's files): the old
    manifest goes first and the new one comes last, so a move cut short is no finished stage; weight files the new save
    does not have (an original release's ``pytorch_model.bin``) go too, as they would load over it."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for old in [*out_dir.glob("model*.safetensors*"), *out_dir.glob("pytorch_model*.bin*")]:
        if not (tmp / old.name).exists():
            old.unlink()
    for item in sorted(tmp.iterdir(), key=lambda item: item.name == MANIFEST):
        target = out_dir / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()


def save_checkpoint(model, tokenizer, out_dir, flags: dict, stage: str, source, dataset=None, extra=None) -> None:
    """Write a checkpoint (weights, tokenizer, flags, manifest with the data's fingerprint ``dataset``, what
    ``extra(folder)`` adds) into ``out_dir`` through a temporary folder; refused if a weight is not finite."""
    out_dir = Path(out_dir)
    bad = [n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise InputError(f"{out_dir}: not saved: {len(bad)} weight tensors hold NaN or infinite values ({bad[0]}, ...)")
    with writing(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".saving-{out_dir.name}~", dir=out_dir.parent))  # ~: never a sibling's
        try:
            _write(model, tokenizer, tmp, out_dir, flags, stage, source, dataset, extra)
            _move_into_place(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("saved %s checkpoint to %s", stage, out_dir)


def _write(model, tokenizer, tmp: Path, out_dir: Path, flags: dict, stage: str, source, dataset, extra) -> None:
    """The checkpoint's files into ``tmp``; ``config.json`` says what a plain call runs (the model is left as it is)."""
    try:
        model.save_pretrained(tmp)
    except SafetensorError as e:  # safetensors reports a full disk as its own error
        raise OSError(str(e)) from None
    config = read_json(tmp / "config.json", "model config")
    config["tr_selection"] = "threshold" if stage in TRAINED_SELECTORS else "off"
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer.save_pretrained(tmp)
    (tmp / "training_args.json").write_text(json.dumps(flags, indent=2, sort_keys=True, default=str))
    weights = file_digest(tmp / WEIGHTS)
    manifest = {
        "stage": stage,
        "source": str(source) if source else None,
        "source_sha256": weights_digest(source),
        "baseline": baseline_of(source) if stage != "finetune" else str(out_dir.resolve()),
        "baseline_sha256": baseline_digest(source) if stage != "finetune" else weights,
        "weights_sha256": weights,
        "dataset": dataset,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if extra is not None:
        extra(tmp)


def read_manifest(model_dir) -> dict:
    """The manifest of a checkpoint of ours; ``{}`` for any other (or None)."""
    path = Path(model_dir) / MANIFEST if model_dir else None
    return read_json(path, "checkpoint manifest") if path and path.is_file() else {}


def backbone_of(model_dir) -> str:
    """``bert`` or ``distilbert``: the backbone of the stock or TR-BERT checkpoint (``trbert``...) in ``model_dir``."""
    config = read_json(Path(model_dir) / "config.json", "model config")
    return "distilbert" if str(config.get("model_type", "bert")).removeprefix("tr") == "distilbert" else "bert"


def baseline_of(model_dir) -> str | None:
    """The fine-tuned baseline a checkpoint descends from (itself when it is one)."""
    manifest = read_manifest(model_dir)
    return str(Path(model_dir).resolve()) if manifest.get("stage") == "finetune" else manifest.get("baseline")


def baseline_digest(model_dir) -> str | None:
    """The weights digest of the fine-tuned baseline a checkpoint descends from, as recorded when it was made (a
    baseline retrained in place since has another digest); a model not made here is its own baseline."""
    manifest = read_manifest(model_dir)
    if not manifest:
        return weights_digest(model_dir)
    return manifest.get("weights_sha256") if manifest.get("stage") == "finetune" else manifest.get("baseline_sha256")


def weights_digest(model_dir) -> str | None:
    """sha256 of a checkpoint's weights: as its manifest records it, else of its weights file (None for a hub name)."""
    files = [f for name in (WEIGHTS, "pytorch_model.bin") if model_dir and (f := Path(model_dir) / name).is_file()]
    return read_manifest(model_dir).get("weights_sha256") or (file_digest(files[0]) if files else None)


def find_artifact(model_dir, filename: str) -> Path | None:
    """A stage file next to ``model_dir`` or next to the baseline it descends from."""
    for folder in (model_dir, baseline_of(model_dir)):
        if folder and (Path(folder) / filename).is_file():
            return Path(folder) / filename
    return None
