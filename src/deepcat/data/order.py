"""Which rows a batcher yields, in which order and in batches of what size: one process's share of a seeded
shuffle (a DistributedSampler, world size 1 when not distributed), so one process and N processes see the same
global order. Every batcher (the DataLoader, the whole-tensor paths, cached features) takes one `Order`.

`WHOLE_BATCHES` holds each kind of input's whole-batch fast path, by the kind's name (`tensor_batches.py` for small
in-memory images, `clip_batches.py` for sound clips that fit in memory); a kind without one reads through the
DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from deepcat.registry import Registry

__all__ = ["WHOLE_BATCHES", "Order", "Rows", "WholeBatches"]


@dataclass(frozen=True)
class Order:
    batch_size: int
    shuffle: bool = False  # False: the data's own order (evaluation)
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False

    def sampler(self, count: int) -> DistributedSampler[Any] | None:
        """The training order over `count` rows; None keeps the data's order. `set_epoch` reshuffles it."""
        if not self.shuffle:
            return None
        return DistributedSampler(
            range(count),  # type: ignore[arg-type]  # the sampler reads only its length
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


@dataclass(frozen=True)
class WholeBatches:
    """A kind's whole-batch path: whether it applies to (samples, preprocessing, augment), and the batcher
    (samples, pre, order, *, augment, hflip, noise_files, progress) -> yields (x, y, bad) as the DataLoader does."""

    fits: Callable[[Any, Any, str], bool]
    build: Callable[..., Any]


WHOLE_BATCHES: Registry[WholeBatches] = Registry("whole-batch path")
