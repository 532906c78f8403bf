"""``torch.distributed`` helpers: set-up from ``torchrun``'s environment, reductions, rank-0 gating.

``torchrun --nproc_per_node N -m pointlib train ...`` (or ``--no-python pointlib train ...``) sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_distributed` then joins the process group with
NCCL on CUDA and gloo on CPU. Without those variables everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistInfo",
    "all_reduce",
    "barrier",
    "broadcast_buffers",
    "cleanup",
    "init_distributed",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``is_main`` writes the files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process).

    ``device`` picks the backend: NCCL when the run uses CUDA, gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """Reduce ``t`` across processes (``sum`` or ``max``) and return it; identity without DDP.

    Works for CPU tensors under NCCL too (moved to the current CUDA device for the reduction).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t
    work = t
    if dist.get_backend() == "nccl" and not t.is_cuda:
        work = t.cuda()
    dist.all_reduce(work, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return work.to(t.device)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every buffer (BatchNorm running statistics) of ``module`` from rank ``src``.

    DDP syncs buffers at the start of each forward, so after the last training step each rank
    holds its own statistics; the engine calls this at the end of every epoch so that
    validation, test and checkpoints use rank 0's model on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for b in module.buffers():
        dist.broadcast(b.data, src)


def barrier() -> None:
    """Synchronise all processes (no-op without DDP)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
