"""Models registered by name. timm and torchvision names resolve after these (see `create.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from deepcat.registry import Registry

__all__ = ["MODELS", "NEW_RUN_KWARGS", "register_model"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
NEW_RUN_KWARGS: dict[str, dict[str, Any]] = {}


def register_model(
    name: str, new_runs: dict[str, Any] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: `@register_model("smallcnn") def smallcnn(num_classes, image_size): ...`.

    `new_runs`: keyword arguments written into every new run's model spec, so a changed default
    reaches new runs while runs saved earlier rebuild exactly as they were trained."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        NEW_RUN_KWARGS[name] = dict(new_runs or {})
        return MODELS.add(name, builder)

    return add
