"""Dataset and DataLoader for any kind of input: unreadable files are skipped with one warning per file."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from deepcat.data.order import WHOLE_BATCHES, Order
from deepcat.data.sources import Samples
from deepcat.inputs import BadInput, InputKind, input_kind

__all__ = [
    "BadInputLog",
    "InputDataset",
    "batches",
    "collate_skipping_bad",
    "default_workers",
    "eval_loader",
    "make_loader",
    "whole_batches",
]


class InputDataset(Dataset[Any]):
    """Yields (input tensor, label), or (None, reason) for a file that cannot be read."""

    def __init__(self, samples: Samples, transform: Callable[..., Any], kind: InputKind, min_side: int | None = None):
        self.samples, self.transform, self.kind, self.min_side = samples, transform, kind, min_side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        try:
            decoded = self.samples.decode(i, self.kind, self.min_side)
        except BadInput as e:
            return None, str(e)
        return self.transform(decoded), int(self.samples.labels[i])


def collate_skipping_bad(batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the good samples; return the reasons for the bad ones so the main process warns once."""
    good = [b for b in batch if b[0] is not None]
    bad = [b[1] for b in batch if b[0] is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    x, y = default_collate(good)
    return x, y, bad


class BadInputLog:
    """Prints one warning line per unreadable file, the first time it is met."""

    def __init__(self, quiet: bool = False) -> None:
        self.seen: set[str] = set()
        self.quiet = quiet  # count, do not print (a later pass over files already reported)

    def report(self, reasons: list[str]) -> None:
        for reason in reasons:
            if reason not in self.seen:
                self.seen.add(reason)
                if not self.quiet:
                    print(f"warning: skipping unreadable input {reason}", file=sys.stderr)


def default_workers(samples: Samples, requested: int | None) -> int:
    if requested is not None:
        return requested
    return 0 if samples.in_memory else min(4, os.cpu_count() or 1)


def eval_loader(samples: Samples, pre: Any, *, batch_size: int, workers: int | None = None) -> Any:
    """Evaluation batches: whole-tensor batches for in-memory images at the input size and for sound clips that
    fit in memory, else the DataLoader.
    `pre` is the kind's preprocessing (it names its kind)."""
    order = Order(batch_size)
    fast = whole_batches(samples, pre, order, progress=False)
    if fast is not None:
        return fast
    kind = input_kind(pre.kind)
    return make_loader(samples, kind.eval_transform(pre), kind, order, workers=workers)


def make_loader(
    samples: Samples,
    transform: Callable[..., Any],
    kind: InputKind,
    order: Order,
    *,
    workers: int | None = None,
    min_side: int | None = None,
) -> DataLoader[Any]:
    """One loader for every use, in `order` (see `deepcat.data.order`). `min_side`: see `Samples.decode`.
    Training on shards streams them (`shard_stream.py`); evaluation reads their inputs in order."""
    if order.shuffle and not samples.in_memory and not isinstance(samples.items, list):
        from deepcat.data.shard_stream import shard_loader

        workers = default_workers(samples, workers)
        return shard_loader(  # type: ignore[return-value]
            samples, transform, kind, order, workers=workers, collate=collate_skipping_bad, min_side=min_side
        )
    dataset = InputDataset(samples, transform, kind, min_side)
    sampler = order.sampler(len(dataset))
    # Workers are not persistent: fresh ones each epoch are seeded from the epoch's seed, so a resumed
    # run replays the same augmentations.
    return DataLoader(
        dataset,
        batch_size=order.batch_size,
        sampler=sampler,
        num_workers=default_workers(samples, workers),
        collate_fn=collate_skipping_bad,
        drop_last=order.drop_last,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def batches(loader: DataLoader[Any], log: BadInputLog) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate (x, y), warning about bad images and dropping empty batches."""
    for x, y, bad in loader:
        log.report(bad)
        if len(y):
            yield x, y


def whole_batches(
    samples: Any,
    pre: Any,
    order: Order,
    *,
    augment: str = "none",
    hflip: bool = False,
    noise_files: list[str] | None = None,
    progress: bool = True,
) -> Any | None:
    """The whole-batch batcher of `pre`'s kind when it has one and it applies, else None (read per input)."""
    from deepcat.data import clip_batches, tensor_batches  # noqa: F401 - register the built-in kinds' paths

    path = WHOLE_BATCHES.get(pre.kind) if pre.kind in WHOLE_BATCHES else None
    if path is None or not path.fits(samples, pre, augment):
        return None
    return path.build(
        samples, pre, order, augment=augment, hflip=hflip, noise_files=list(noise_files or []), progress=progress
    )
