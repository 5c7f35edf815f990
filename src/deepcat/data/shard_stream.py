"""Training batches streamed from WebDataset shards: each epoch shuffles the shards (seeded by seed and epoch),
gives each process its own share of them and each loader worker a share of that, reads every shard front to
back and mixes its inputs in a shuffle buffer before decoding. Nothing is read at random, so shards in object
storage cost one request per few megabytes.

The epoch is a function of (seed, epoch, process, worker) alone: a run resumed after a kill trains on the same
batches as one that was not, as the folder path does. Every process trains the same number of batches (DDP needs
it): each takes `len(data) // processes` inputs, reading its shards again, reshuffled, if they hold fewer. The
workers' shares are sized so the data loader's round-robin over workers gives the batches in one fixed order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from deepcat.data.order import Order
from deepcat.data.shards import ShardMembers
from deepcat.data.sources import Samples
from deepcat.errors import DeepcatError
from deepcat.inputs import BadInput, InputKind

__all__ = ["SHUFFLE_BUFFER", "ShardLoader", "ShardStream", "shard_loader"]

SHUFFLE_BUFFER = 1_000  # raw inputs held per worker to mix (WebDataset's examples use 1,000-5,000)


class ShardStream(IterableDataset[Any]):
    """One process's training inputs for one epoch (`set_epoch`), as (tensor, label) or (None, reason)."""

    def __init__(
        self,
        samples: Samples,
        transform: Callable[[Any], Any],
        kind: InputKind,
        order: Order,
        *,
        workers: int,
        min_side: int | None = None,
        buffer: int = SHUFFLE_BUFFER,
    ):
        self.members: ShardMembers = samples.items  # type: ignore[assignment]
        self.labels, self.transform, self.kind, self.order = samples.labels, transform, kind, order
        self.workers, self.min_side, self.buffer, self.epoch = max(workers, 1), min_side, buffer, 0
        self.shard_ids = np.unique(self.members.shard)
        self.per_process = len(samples) // order.world_size
        if len(self.shard_ids) < order.world_size:
            raise DeepcatError(
                f"{self.members.root} has {len(self.shard_ids)} training shard(s) for {order.world_size} processes; "
                f"each process reads its own shards. Write more, smaller shards: deepcat shard DATA --per-shard N"
            )

    def __len__(self) -> int:
        return self.per_process

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def share(self, worker: int) -> tuple[np.ndarray, int]:
        """Worker `worker`'s shards this epoch and how many inputs it yields: the batches j with j % workers ==
        worker, so the loader's round-robin over workers yields them in order."""
        o = self.order
        shards = np.random.default_rng([o.seed, self.epoch]).permutation(self.shard_ids)
        mine = shards[o.rank :: o.world_size][worker :: self.workers]
        n, size = self.per_process, o.batch_size
        count = n // size if o.drop_last else -(-n // size)
        sizes = [size] * count
        if count and not o.drop_last:
            sizes[-1] = n - (count - 1) * size
        return mine, sum(sizes[worker :: self.workers])

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        shards, wanted = self.share(worker)
        rng = np.random.default_rng([self.order.seed, self.epoch, self.order.rank, worker])
        for i in _shuffled(islice(self._positions(shards, rng), wanted), self.buffer, rng):
            try:
                yield self.transform(self.members.decode(i, self.kind, self.min_side)), int(self.labels[i])
            except BadInput as e:
                yield None, str(e)

    def _positions(self, shards: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
        """The positions of this worker's inputs, shard after shard in byte order, again (reshuffled) as
        often as the worker's share needs. Reading them in this order streams each shard file."""
        by_shard = {s: np.flatnonzero(self.members.shard == s) for s in shards}
        order = shards
        while len(order):
            for s in order:
                rows = by_shard[s]
                yield from (int(i) for i in rows[np.argsort(self.members.offset[rows])])
            order = rng.permutation(shards)


def _shuffled(items: Iterator[int], buffer: int, rng: np.random.Generator) -> Iterator[int]:
    """`items` mixed in a buffer of `buffer`: each one read replaces a random one held."""
    held: list[int] = []
    for item in items:
        if len(held) < buffer:
            held.append(item)
            continue
        k = int(rng.integers(len(held)))
        yield held[k]
        held[k] = item
    rng.shuffle(held)
    yield from held


class ShardLoader:
    """The training loader's contract (`len`, iteration, `sampler.set_epoch`) over a `ShardStream`. Workers are
    fresh each epoch, as in `make_loader`, so each gets the epoch's plan."""

    def __init__(self, stream: ShardStream, collate: Callable[..., Any], workers: int):
        self.stream, self.sampler = stream, stream
        self.loader = DataLoader(
            stream,
            batch_size=stream.order.batch_size,
            num_workers=workers,
            collate_fn=collate,
            drop_last=stream.order.drop_last,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)


def shard_loader(
    samples: Samples,
    transform: Callable[[Any], Any],
    kind: InputKind,
    order: Order,
    *,
    workers: int,
    collate: Callable[..., Any],
    min_side: int | None = None,
) -> ShardLoader:
    """Training batches streamed from `samples`' shards; at most one loader worker per shard of this process."""
    shards = len(np.unique(samples.items.shard)) // order.world_size  # type: ignore[union-attr]
    workers = min(workers, max(shards, 1))
    stream = ShardStream(samples, transform, kind, order, workers=workers, min_side=min_side)
    return ShardLoader(stream, collate, workers)
