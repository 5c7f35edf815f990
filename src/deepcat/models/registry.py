"""Models registered by name. timm and torchvision names resolve after these (see `create.py`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch.nn as nn

MODELS: dict[str, Callable[..., nn.Module]] = {}
NEW_RUN_KWARGS: dict[str, dict[str, Any]] = {}


def register_model(name: str, new_runs: dict[str, Any] | None = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: `@register_model("smallcnn") def smallcnn(num_classes, image_size): ...`.

    `new_runs`: keyword arguments written into every new run's model spec, so a changed default
    reaches new runs while runs saved earlier rebuild exactly as they were trained."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            warnings.warn(f"model {name!r} registered twice; the later definition wins", stacklevel=2)
        MODELS[name] = builder
        NEW_RUN_KWARGS[name] = dict(new_runs or {})
        return builder

    return add
