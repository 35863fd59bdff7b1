"""Step checkpoints that a killed job continues from exactly (``--save_steps``, ``--resume_from_checkpoint``).

The training state next to a step checkpoint's model (saved as any checkpoint): optimizer tensors
(``optimizer.safetensors``), every rank's generator states (``rng.safetensors``), and ``training_state.json`` (step,
sampler position, scheduler and scaler state, a sha256 per file, and the run's identity: stage, world size, the
configuration fields marked ``fixed``, the data's fingerprint and the starting model). Nothing is pickled. The JSON is
written last and the directory renamed into place when complete (:func:`.checkpoint.save_checkpoint`): a checkpoint
without it, or whose files do not match it, was never finished and is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import InputError
from .checkpoint import save_checkpoint
from .outputs import file_digest, read_json

logger = logging.getLogger(__name__)

STATE = "training_state.json"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
STEP_DIR = re.compile(r"checkpoint-(\d+)$")


def fixed_values(*configs) -> dict:
    """The fields a resumed run must keep (metadata ``fixed``) of the given config dataclasses."""
    return {f.name: getattr(c, f.name) for c in configs for f in dataclasses.fields(c) if f.metadata.get("fixed")}


@dataclass
class Position:
    """Where training stands after ``step`` optimizer steps: the next micro-batch ``micro`` of ``epoch``."""

    step: int = 0
    epoch: int = 0
    micro: int = 0


@dataclass
class Saver:
    """Where the loop writes its step checkpoints, and what they say about the run."""

    output_dir: Path
    tokenizer: object
    flags: dict  # training_args.json
    stage: str
    source: str  # the checkpoint training started from
    identity: dict  # what a resume must share: arguments, dataset, source (see _differences)
    keep: int = 0  # --save_total_limit

    def path(self, step: int) -> Path:
        return Path(self.output_dir) / f"checkpoint-{step}"

    def step(self, model, position: Position, run, rng: dict, world_size: int) -> Path:
        """``checkpoint-<step>``: the model and the state to resume from, with every rank's generator
        states ``rng`` (the caller's rank 0 writes; the others wait)."""
        path = self.path(position.step)
        identity = {**self.identity, "stage": self.stage, "world_size": world_size}
        state = lambda folder: write_training_state(folder, position, run, rng, identity)  # noqa: E731
        save_checkpoint(model, self.tokenizer, path, self.flags, self.stage, self.source, extra=state)
        prune(self.output_dir, self.keep)
        return path


def _flatten(optimizer_state: dict) -> dict[str, torch.Tensor]:
    return {
        f"{index}.{name}": value.detach().cpu().contiguous()
        for index, slots in optimizer_state["state"].items()
        for name, value in slots.items()
        if torch.is_tensor(value)
    }


def _unflatten(tensors: dict[str, torch.Tensor], param_groups: list) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": param_groups}


def write_training_state(folder: Path, position: Position, run, rng: dict, identity: dict) -> None:
    """Fill ``folder`` (a checkpoint being written) with the training state; the JSON goes last."""
    optimizer = run.optimizer.state_dict()
    save_file(_flatten(optimizer), folder / OPTIMIZER)
    save_file({k: v.contiguous() for k, v in rng.items()}, folder / RNG)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    state = {
        **dataclasses.asdict(position),  # step, epoch, micro
        **identity,
        "param_groups": optimizer["param_groups"],
        "scheduler": {k: v for k, v in run.scheduler.state_dict().items() if k != "lr_lambdas"},
        "scaler": run.scaler.state_dict(),
        "sha256": {name: file_digest(folder / name) for name in files},
    }
    (folder / STATE).write_text(json.dumps(state, indent=2))


def step_of(folder: Path) -> int:
    m = STEP_DIR.search(folder.name)
    return int(m.group(1)) if m else -1


def step_checkpoints(output_dir) -> list[Path]:
    """Complete step checkpoints under ``output_dir``, oldest first."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if step_of(p) >= 0 and (p / STATE).is_file()]
    return sorted(found, key=step_of)


def resolve(path: str, output_dir) -> Path:
    """``--resume_from_checkpoint``: a checkpoint directory, or ``latest`` under ``--output_dir``."""
    if path != "latest":
        return Path(path)
    if not (found := step_checkpoints(output_dir)):
        raise InputError(f"{output_dir}: no complete step checkpoint to resume from (checkpoint-*/{STATE})")
    return found[-1]


def _differences(state: dict, identity: dict) -> list[str]:
    """What differs between the saved run's identity and this one's, in words."""
    problems = []
    if state.get("stage") != identity["stage"]:
        problems.append(f"stage {state.get('stage')} vs {identity['stage']} now")
    if state.get("world_size") != identity["world_size"]:
        problems.append(f"world size {state.get('world_size')} vs {identity['world_size']} now")
    for key, value in state.get("arguments", {}).items():
        if (now := identity["arguments"].get(key)) != value:
            problems.append(f"--{key} {value} vs {now} now")
    for key, value in state.get("dataset", {}).items():
        if identity["dataset"].get(key) != value:
            problems.append(f"the training data differs ({key}: {value} vs {identity['dataset'].get(key)} now)")
            break
    if state.get("source") != identity["source"]:
        problems.append(f"the starting model differs ({state.get('source')} vs {identity['source']} now)")
    return problems


def read_training_state(folder: Path, identity: dict) -> dict:
    """Check a step checkpoint (complete, unchanged files, same run) and read its state."""
    if not (folder / STATE).is_file():
        raise InputError(f"{folder}: not a complete step checkpoint ({STATE} missing: killed while saving?)")
    state = read_json(folder / STATE, "training state")
    for name, digest in state["sha256"].items():
        if not (folder / name).is_file() or file_digest(folder / name) != digest:
            raise InputError(f"{folder}: {name} is missing or differs from when it was saved (truncated or corrupt)")
    if problems := _differences(state, identity):
        raise InputError(f"{folder}: cannot resume a different run: " + "; ".join(problems))
    try:
        state["optimizer"] = _unflatten(load_file(folder / OPTIMIZER), state.pop("param_groups"))
        state["rng"] = load_file(folder / RNG)
    except (SafetensorError, OSError) as e:
        raise InputError(f"{folder}: unreadable training state ({e})") from None
    return state


def restore(run, state: dict, device) -> Position:
    """Load optimizer, scheduler and scaler state into ``run`` (a ``train.loop.Optimization``); the saved position."""
    run.optimizer.load_state_dict(state["optimizer"])
    for slots in run.optimizer.state.values():
        for name, value in slots.items():
            if torch.is_tensor(value) and name != "step":
                slots[name] = value.to(device)
    run.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(run.optimizer.param_groups)})
    if state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    return Position(state["step"], state["epoch"], state["micro"])


def prune(output_dir, limit: int) -> None:
    """``--save_total_limit``: delete the oldest step checkpoints beyond ``limit`` (0 keeps all)."""
    if limit <= 0:
        return
    for old in step_checkpoints(output_dir)[:-limit]:
        shutil.rmtree(old, ignore_errors=True)
        logger.info("deleted %s (--save_total_limit %d)", old, limit)
