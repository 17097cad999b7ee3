"""Process-group setup for ``torchrun``: one process per GPU (or CPU processes with gloo).

``torchrun --nproc_per_node=N -m edgeexplore train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them training runs as a single process and no group is created, so
the same code path serves one GPU, a CPU and many nodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import EdgeExploreError


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    #: processes on this node (they share its CPUs for data loading)
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Dist:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = torch.cuda.is_available() if device in (None, "auto") else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise EdgeExploreError(f"device {device} requested but CUDA is not available here")
    if want_cuda:
        if local >= torch.cuda.device_count():
            raise EdgeExploreError(
                f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); "
                "lower --nproc_per_node"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        # NCCL between GPUs; gloo on CPU, where the same command runs for tests and debugging
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", device_id=
                                dev if dev.type == "cuda" else None)
    return Dist(rank, world, local, dev, int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather(d: Dist, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (the single process's own, alone)."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def all_sum(d: Dist, tensor: torch.Tensor) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
