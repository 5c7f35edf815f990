"""Which rows a batcher yields, in which order and in batches of what size: one process's share of a seeded
shuffle (a DistributedSampler, world size 1 when not distributed), so one process and N processes see the same
global order. Every batcher (the DataLoader, the whole-tensor paths, cached features) takes one `Order`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DistributedSampler

__all__ = ["Order", "Rows"]


@dataclass(frozen=True)
class Order:
    batch_size: int
    shuffle: bool = False  # False: the data's own order (evaluation)
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False

    def sampler(self, count: int) -> DistributedSampler | None:
        """The training order over `count` rows; None keeps the data's order. `set_epoch` reshuffles it."""
        if not self.shuffle:
            return None
        return DistributedSampler(
            range(count),
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=self.drop_last,
        )


class Rows:
    """`count` rows in `order`: how many batches an epoch has and each batch's indices."""

    def __init__(self, count: int, order: Order):
        self.count, self.order, self.sampler = count, order, order.sampler(count)

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else self.count
        size = self.order.batch_size
        return n // size if self.order.drop_last else -(-n // size)

    def batches(self) -> Iterator[torch.Tensor]:
        """The indices of each batch, in the sampler's order for this epoch."""
        rows = torch.tensor(list(self.sampler)) if self.sampler is not None else torch.arange(self.count)
        size = self.order.batch_size
        for start in range(0, len(self) * size, size):
            yield rows[start : start + size]
