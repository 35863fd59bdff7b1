"""Data parallelism across processes started by ``torchrun`` (or ``torch.distributed.launch``).

What this file is: the process group (from torchrun's environment; NCCL on GPUs, gloo on CPU),
the model wrapper for training (stock ``DistributedDataParallel``), the split of rows between
ranks for the inference passes and the per-batch gathering of their outputs into one array on
rank 0, and every rank's RNG states for exact resumes. A single process is the world of one:
every function here is then a no-op or the identity.

Not here: which rows form a training batch (:func:`trbert.loop.train` cuts every global batch into
one contiguous slice per rank, so a run with batch ``b`` on ``N`` ranks sees the batches of a
1-process run with batch ``N * b``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as td
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    grouped: bool = False  # started by torchrun: a process group (also of one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.grouped


def setup(no_cuda: bool = False, local_rank: int = -1) -> World:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``...); one process without them. ``--local_rank`` of the
    original launcher is honoured when ``LOCAL_RANK`` is not set."""
    cuda = torch.cuda.is_available() and not no_cuda
    local = int(os.environ.get("LOCAL_RANK", max(local_rank, 0)))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if "WORLD_SIZE" not in os.environ:  # a plain process
        return World(device=torch.device("cuda") if cuda else device)
    if cuda:
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group("nccl" if cuda else "gloo")
    world = World(td.get_rank(), td.get_world_size(), device, grouped=True)
    if not world.is_main:  # only rank 0 logs
        logging.getLogger("trbert").setLevel(logging.WARNING)
    logger.info("process group: %d ranks (%s)", world.size, td.get_backend())
    return world


def progress(iterable, desc: str, **kwargs):
    """A tqdm bar on rank 0 (and only on a terminal); plain iteration on the other ranks."""
    quiet = td.is_initialized() and td.get_rank() != 0
    return tqdm(iterable, desc=desc, disable=True if quiet else None, **kwargs)


def teardown(world: World) -> None:
    if world.active and td.is_initialized():
        td.destroy_process_group()


def barrier(world: World) -> None:
    if world.active:
        td.barrier()


def wrap(model: torch.nn.Module, world: World, unused_parameters: bool):
    """``DistributedDataParallel`` around ``model`` on several ranks (it starts every rank from rank 0's
    weights and averages gradients during the backward pass); the model itself on one.
    ``unused_parameters``: some trainable parameters may get no gradient in a step (a selector
    skipped because only [CLS] was left)."""
    if not world.active:
        return model
    ids = [world.device] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused_parameters)


def _comm(t: torch.Tensor, world: World) -> torch.Tensor:
    """Collectives run on the rank's device under NCCL, on the CPU under gloo."""
    return t.to(world.device if td.get_backend() == "nccl" else "cpu")


def shard(n: int, world: World) -> np.ndarray:
    """This rank's dataset rows ``rank, rank + size, ...`` of ``n``. Every rank gets the same number,
    the shorter ones repeating their last row, so that the per-batch gathers line up."""
    rows = np.arange(world.rank, n, world.size)
    want = -(-n // world.size)
    if len(rows) < want:
        rows = np.concatenate([rows, np.full(want - len(rows), rows[-1] if len(rows) else 0)])
    return rows


def gather_into(out: np.ndarray | None, index: np.ndarray, values: np.ndarray, world: World) -> None:
    """Write every rank's ``values [b, ...]`` at its dataset rows ``index [b]`` into ``out`` (rank 0
    only; the others pass ``None``). A collective: every rank calls it once per batch, with
    batches of one shape."""
    if not world.active:
        out[index] = values
        return
    ranks = range(world.size)
    tensors = [_comm(torch.from_numpy(np.ascontiguousarray(a)), world) for a in (index, values)]
    parts = [[torch.empty_like(t) for _ in ranks] for t in tensors]
    for part, t in zip(parts, tensors, strict=True):
        td.all_gather(part, t)
    if out is not None:
        for rows, part in zip(*parts, strict=True):
            out[rows.cpu().numpy()] = part.cpu().numpy()


def all_succeed(ok: bool, world: World) -> bool:
    """Whether every rank succeeded (a collective: every rank calls it with its own outcome)."""
    if not world.active:
        return ok
    t = _comm(torch.tensor([int(ok)]), world)
    td.all_reduce(t, op=td.ReduceOp.MIN)
    return bool(t.item())


def maximum(value: float, world: World) -> float:
    if not world.active:
        return value
    t = _comm(torch.tensor([value], dtype=torch.float64), world)
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return float(t.item())


def rng_states(world: World) -> dict[str, torch.Tensor]:
    """The torch generator states (CPU and this rank's GPU) of every rank, ``{name.rank: uint8}``."""
    mine = {"cpu": torch.get_rng_state()}
    if world.device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(world.device)
    states = {}
    for name, state in mine.items():
        parts = [state] if not world.active else [_comm(torch.empty_like(state), world) for _ in range(world.size)]
        if world.active:
            td.all_gather(parts, _comm(state, world))
        states.update({f"{name}.{r}": p.cpu() for r, p in enumerate(parts)})
    return states


def restore_rng(states: dict[str, torch.Tensor], world: World) -> None:
    torch.set_rng_state(states[f"cpu.{world.rank}"])
    if world.device.type == "cuda" and f"cuda.{world.rank}" in states:
        torch.cuda.set_rng_state(states[f"cuda.{world.rank}"], world.device)
