"""Data parallelism across processes started by ``torchrun``: the process group (NCCL on GPUs, gloo on
CPU), DDP for training, the rows of each rank in the inference passes and the gathering of their
outputs on rank 0, every rank's RNG states for exact resumes. A single process is the world of one:
every function here is then a no-op or the identity. (Training batches: :func:`.loop.epoch_slices`.)
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

from ..errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    active: bool = False  # started by torchrun: a process group (also of one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(no_cuda: bool = False, local_rank: int = -1) -> World:
    """Join the process group torchrun's environment describes (``WORLD_SIZE``...), else one process;
    ``--local_rank`` (the original launcher's) counts where ``LOCAL_RANK`` is not set."""
    cuda = torch.cuda.is_available() and not no_cuda
    local = int(os.environ.get("LOCAL_RANK", max(local_rank, 0)))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if "WORLD_SIZE" not in os.environ:  # a plain process
        return World(device=torch.device("cuda") if cuda else device)
    if cuda and local >= torch.cuda.device_count():
        raise InputError(f"process {local} of this node has no GPU ({torch.cuda.device_count()} here): fewer "
                         "--nproc_per_node, or --no_cuda for CPU processes")  # fmt: skip
    if cuda:
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group("nccl" if cuda else "gloo")
    world = World(td.get_rank(), td.get_world_size(), device, active=True)
    if not world.is_main:  # only rank 0 logs
        logging.getLogger("trbert").setLevel(logging.WARNING)
    logger.info("process group: %d ranks (%s)", world.size, td.get_backend())
    return world


def progress(iterable, desc: str):
    """A tqdm bar on rank 0 (and only on a terminal); plain iteration on the other ranks."""
    quiet = td.is_initialized() and td.get_rank() != 0
    return tqdm(iterable, desc=desc, disable=True if quiet else None)


def teardown(world: World) -> None:
    if world.active and td.is_initialized():
        td.destroy_process_group()


def barrier(world: World) -> None:
    if world.active:
        td.barrier()


def wrap(model: torch.nn.Module, world: World, unused_parameters: bool):
    """DDP around ``model`` on several ranks (rank 0's weights, gradients averaged), the model itself on one.
    ``unused_parameters``: a parameter may get no gradient in a step (a selector skipped: only [CLS] left)."""
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
    return np.concatenate([rows, np.full(-(-n // world.size) - len(rows), rows[-1] if len(rows) else 0)])


def _gather(t: torch.Tensor, world: World) -> list[torch.Tensor]:
    """Every rank's ``t`` (all of one shape), in rank order: a collective."""
    parts = [_comm(torch.empty_like(t), world) for _ in range(world.size)]
    td.all_gather(parts, _comm(t, world))
    return parts


def gather_into(out: np.ndarray | None, index: np.ndarray, values: np.ndarray, world: World) -> None:
    """Write every rank's ``values [b, ...]`` at its dataset rows ``index [b]`` into ``out`` (rank 0; the
    others pass ``None``). A collective: every rank calls it once per batch, with batches of one shape."""
    if not world.active:
        out[index] = values
        return
    rows, parts = (_gather(torch.from_numpy(np.ascontiguousarray(a)), world) for a in (index, values))
    if out is not None:
        for where, part in zip(rows, parts, strict=True):
            out[where.cpu().numpy()] = part.cpu().numpy()


def _reduce(value, dtype: torch.dtype, op: str, world: World):
    if not world.active:
        return value
    t = _comm(torch.tensor([value], dtype=dtype), world)
    td.all_reduce(t, op=getattr(td.ReduceOp, op))
    return t.item()


def all_succeed(ok: bool, world: World) -> bool:
    """Whether every rank succeeded (a collective: every rank calls it with its own outcome)."""
    return bool(_reduce(int(ok), torch.int64, "MIN", world))


def maximum(value: float, world: World) -> float:
    return float(_reduce(value, torch.float64, "MAX", world))


def rng_states(world: World) -> dict[str, torch.Tensor]:
    """The torch generator states (CPU and this rank's GPU) of every rank, ``{name.rank: uint8}``."""
    mine = {"cpu": torch.get_rng_state()}
    if world.device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(world.device)
    parts = {name: _gather(state, world) if world.active else [state] for name, state in mine.items()}
    return {f"{name}.{r}": p.cpu() for name, states in parts.items() for r, p in enumerate(states)}


def restore_rng(states: dict[str, torch.Tensor], world: World) -> None:
    torch.set_rng_state(states[f"cpu.{world.rank}"])
    if world.device.type == "cuda" and f"cuda.{world.rank}" in states:
        torch.cuda.set_rng_state(states[f"cuda.{world.rank}"], world.device)
