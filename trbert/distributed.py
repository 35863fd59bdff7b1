"""Data parallelism across processes started by ``torchrun`` (or ``torch.distributed.launch``).

What this file is: the process group (from torchrun's environment; NCCL on GPUs, gloo on CPU),
the few collectives the stages need (gradient mean, parameter broadcast, rows gathered back into
dataset order, RNG states of every rank) and the split of data between ranks. A single process
is the world of one: every function here is then a no-op or the identity.

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
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def setup(no_cuda: bool = False, local_rank: int = -1) -> World:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``...); one process without them. ``--local_rank`` of the
    original launcher is honoured when ``LOCAL_RANK`` is not set."""
    cuda = torch.cuda.is_available() and not no_cuda
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", max(local_rank, 0)))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if size == 1:
        return World(device=torch.device("cuda") if cuda else device)
    if cuda:
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group("nccl" if cuda else "gloo")
    world = World(td.get_rank(), td.get_world_size(), device)
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


def _comm(t: torch.Tensor, world: World) -> torch.Tensor:
    """Collectives run on the rank's device under NCCL, on the CPU under gloo."""
    return t.to(world.device if td.get_backend() == "nccl" else "cpu")


def mean_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Average ``.grad`` over ranks in one flat all-reduce (a missing gradient counts as zero)."""
    if not world.active:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = _comm(torch.cat([g.reshape(-1).float() for g in grads]), world)
    td.all_reduce(flat)
    flat /= world.size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g).to(g.device, g.dtype)
        offset += g.numel()


def broadcast_parameters(model: torch.nn.Module, world: World) -> None:
    """Every rank starts from rank 0's weights (selectors a checkpoint lacks are random)."""
    if not world.active:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        data = _comm(t.data, world)
        td.broadcast(data, 0)
        t.data.copy_(data)


def shard(arrays: dict[str, np.ndarray], world: World) -> dict[str, np.ndarray]:
    """This rank's rows ``rank, rank + size, ...`` of every feature array."""
    if not world.active:
        return arrays
    return {k: v[world.rank :: world.size] for k, v in arrays.items()}


def gather_rows(local: np.ndarray, n: int, world: World) -> np.ndarray:
    """Inverse of :func:`shard`: every rank's rows back in dataset order ``[n, ...]`` (on all ranks)."""
    if not world.active:
        return local
    width = -(-n // world.size)
    padded = np.zeros((width, *local.shape[1:]), dtype=local.dtype)
    padded[: len(local)] = local
    parts = [_comm(torch.empty(padded.shape, dtype=torch.from_numpy(padded).dtype), world) for _ in range(world.size)]
    td.all_gather(parts, _comm(torch.from_numpy(padded), world))
    full = np.zeros((n, *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(parts):
        rows = full[r :: world.size]
        rows[...] = part.cpu().numpy()[: len(rows)]
    return full


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
