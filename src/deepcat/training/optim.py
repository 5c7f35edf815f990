"""Optimiser and learning-rate schedule.

The schedule is a pure function of the step, so resuming needs only the step count.
Fine-tuning has two phases (head only, then all), each with its own one-cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from deepcat.registry import Registry

__all__ = ["OPTIMIZERS", "OptimizerRecipe", "build_optimizer", "lr_at", "schedule_factor", "set_lr"]


@dataclass(frozen=True)
class OptimizerRecipe:
    build: Callable[[list[dict[str, Any]], float], torch.optim.Optimizer]  # (parameter groups, lr) -> optimiser
    default_lr: float  # the peak lr when --lr is auto


OPTIMIZERS: Registry[OptimizerRecipe] = Registry("optimizer")
OPTIMIZERS.add("adamw", OptimizerRecipe(lambda groups, lr: torch.optim.AdamW(groups, lr=lr), 2e-3))
# the small CNN from scratch: 0.1 beat 0.05 and 0.2 over 6 epochs
OPTIMIZERS.add(
    "sgd", OptimizerRecipe(lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True), 0.1)
)


def build_optimizer(model: nn.Module, *, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """No weight decay on biases and norm parameters (1-D tensors)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return OPTIMIZERS.get(name).build(groups, lr)


def schedule_factor(step: int, total: int, *, kind: str, warmup: int) -> float:
    """Multiplier of the peak lr at `step` of `total`: one-cycle (25% up, cosine down) or warm-up + cosine."""
    if kind == "onecycle":
        warmup = max(1, int(0.25 * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * 0.99 + 0.01


def lr_at(
    step: int, *, peak: float, steps_per_epoch: int, epochs: int, freeze_epochs: int, kind: str, warmup_epochs: float
) -> float:
    """Learning rate for global `step`; the unfrozen phase restarts the cycle at half the peak (as fastai)."""
    frozen_steps = freeze_epochs * steps_per_epoch
    warmup = int(warmup_epochs * steps_per_epoch)
    if step < frozen_steps:
        return peak * schedule_factor(step, frozen_steps, kind=kind, warmup=warmup)
    total = (epochs - freeze_epochs) * steps_per_epoch
    scale = 0.5 if freeze_epochs else 1.0
    return peak * scale * schedule_factor(step - frozen_steps, total, kind=kind, warmup=warmup)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
