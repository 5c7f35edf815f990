"""Frozen epochs without the backbone. While only the new head learns, the backbone's output for an image changes
with augmentation and batch-norm statistics alone, so its pooled features are computed once (eval mode, the
training images as evaluation sees them) and every frozen epoch trains the head on them: one forward pass over
the data in all, no backbone in a frozen step. The price: no augmentation and ImageNet's batch-norm statistics
while the head learns; the unfrozen epochs that follow have both. Measured in `benchmarks/finetune.py`.

Up to `MEMORY_FEATURE_BYTES` the features stay in memory; beyond, in a memory-mapped file in the run folder
(removed as soon as it is mapped, where the system allows), so resident memory stays flat however many images
there are: 1.28 million images of 1,280 features are 6.5 GB on disk, read a batch at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepcat.data.loader import BadInputLog, eval_loader
from deepcat.data.order import Order, Rows
from deepcat.evaluation.scores import iter_outputs
from deepcat.inference.unknown_score import WithFeatures
from deepcat.models.create import classifier_of
from deepcat.training.distributed import Dist
from deepcat.training.setup import Setup

__all__ = ["MEMORY_FEATURE_BYTES", "FeatureBatches", "HeadOnly", "applies", "feature_batches"]

MEMORY_FEATURE_BYTES = 256 << 20  # larger feature sets (50,000 images of 1,280 features) go to a mapped file


def applies(s: Setup, dist: Dist) -> bool:
    """The frozen epochs can train on cached features: a linear head that is the model's last layer, one
    process (each would need its shard's features), no mixup (it mixes images, not features)."""
    head = classifier_of(s.model)
    return (
        s.cfg.head_from_features
        and s.cfg.freeze_epochs > 0
        and not dist.enabled
        and s.mixup is None
        and isinstance(head, nn.Linear)
    )


class HeadOnly(nn.Module):
    """The head as the model applies it to its pooled features: dropout (timm's `drop_rate`), then the layer."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.head, self.drop_rate = classifier_of(model), float(getattr(model, "drop_rate", 0.0) or 0.0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return cast("torch.Tensor", self.head(F.dropout(features, self.drop_rate, self.training)))


class FeatureBatches:
    """(features, labels, []) batches in the training order, reshuffled each epoch: the training loader's contract."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, order: Order):
        self.features, self.labels = features, labels
        self.rows = Rows(len(labels), order)
        self.sampler = self.rows.sampler  # the loop's set_epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for index in self.rows.batches():
            yield self.features[index], self.labels[index], []


def feature_batches(s: Setup, log: BadInputLog, *, progress: bool, folder: Path | None = None) -> FeatureBatches:
    """The backbone's pooled features of every training input, once, as batches of the training batch size;
    in `folder` (a memory-mapped file) when they are more than `MEMORY_FEATURE_BYTES`."""
    head = cast(nn.Linear, classifier_of(s.model))  # `applies` checked it is one
    rows, width = len(s.splits.train), head.in_features
    if rows * width * 4 <= MEMORY_FEATURE_BYTES or folder is None:
        store = np.empty((rows, width), np.float32)
    else:
        path = folder / "head_features.npy"
        store = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, width))
        try:
            os.unlink(path)  # the mapping keeps the file while training uses it; nothing is left behind
        except OSError:
            pass  # Windows keeps an open file: it stays until the next run folder clean-up
    labels = np.empty(rows, np.int64)
    filled = 0
    for (features, _), y in iter_outputs(
        WithFeatures(s.model, head),
        eval_loader(s.splits.train, s.pre, batch_size=64, workers=s.cfg.workers),
        device=s.device,
        dtype=s.dtype,
        log=log,
        desc="backbone features",
        progress=progress,
    ):
        store[filled : filled + len(y)] = features.numpy()  # (B, width)
        labels[filled : filled + len(y)] = y.numpy()
        filled += len(y)
    return FeatureBatches(torch.from_numpy(store[:filled]), torch.from_numpy(labels[:filled]), s.order)
