"""Losses by name (`LOSSES`): cross-entropy with label smoothing, focal; optional class weights; soft targets for
mixup. A new loss is one `@LOSSES.register(name)` builder taking `label_smoothing` and `class_weights`."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepcat.registry import Registry

__all__ = ["LOSSES", "FocalLoss", "SoftTargetLoss", "build_loss", "cross_entropy", "focal", "inverse_frequency"]

LOSSES: Registry[Any] = Registry[Any]("loss")


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): down-weights easy examples by (1 - p_true) ** gamma."""

    weight: torch.Tensor | None

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=-1)  # (B, C)
        logp_true = logp.gather(1, target[:, None]).squeeze(1)  # (B,)
        loss = -((1 - logp_true.exp()) ** self.gamma) * logp_true
        if self.weight is not None:
            loss = loss * self.weight[target]
        return loss.mean()


class SoftTargetLoss(nn.Module):
    """Cross-entropy against mixed (mixup/cutmix) target distributions, with optional class weights."""

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target * self.weight if self.weight is not None else target
        return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def inverse_frequency(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


@LOSSES.register("cross_entropy")
def cross_entropy(*, label_smoothing: float, class_weights: torch.Tensor | None) -> nn.Module:
    return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)


@LOSSES.register("focal")
def focal(*, label_smoothing: float, class_weights: torch.Tensor | None) -> nn.Module:
    return FocalLoss(weight=class_weights)  # focusing replaces smoothing


def build_loss(
    *, name: str, label_smoothing: float, class_weights: torch.Tensor | None, soft_targets: bool
) -> nn.Module:
    build = LOSSES.get(name)
    if soft_targets:  # mixup/cutmix already smooth the labels
        return SoftTargetLoss(class_weights)
    return cast("nn.Module", build(label_smoothing=label_smoothing, class_weights=class_weights))
