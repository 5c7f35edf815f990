"""Frozen epochs without the backbone. While only the new head learns, the backbone's output for an image changes
with augmentation and batch-norm statistics alone, so its pooled features are computed once (eval mode, the
training images as evaluation sees them) and every frozen epoch trains the head on them: one forward pass over
the data in all, no backbone in a frozen step. The price: no augmentation and ImageNet's batch-norm statistics
while the head learns; the unfrozen epochs that follow have both. Measured in `benchmarks/finetune.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepcat.data.loader import BadInputLog, eval_loader
from deepcat.data.order import Order, Rows
from deepcat.evaluation.scores import collect_outputs
from deepcat.inference.unknown_score import WithFeatures
from deepcat.models.create import classifier_of
from deepcat.training.distributed import Dist
from deepcat.training.setup import Setup

__all__ = ["MAX_FEATURE_BYTES", "FeatureBatches", "HeadOnly", "applies", "feature_batches"]

MAX_FEATURE_BYTES = 2 << 30  # larger sets (say 250,000 images of 2,048 features) run the backbone each epoch


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
        and len(s.splits.train) * head.in_features * 4 <= MAX_FEATURE_BYTES
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


def feature_batches(s: Setup, log: BadInputLog, *, progress: bool) -> FeatureBatches:
    """The backbone's pooled features of every training input, once, as batches of the training batch size."""
    loader = eval_loader(s.splits.train, s.pre, batch_size=64, workers=s.cfg.workers)
    (features, _), labels = collect_outputs(
        WithFeatures(s.model, cast(nn.Linear, classifier_of(s.model))),  # `applies` checked it is one
        loader,
        device=s.device,
        dtype=s.dtype,
        log=log,
        desc="backbone features",
        progress=progress,
    )
    return FeatureBatches(torch.from_numpy(features), torch.from_numpy(labels), s.order)
