"""Models registered by name. timm and torchvision names resolve after these (see `create.py`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch.nn as nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: `@register_model("smallcnn") def smallcnn(num_classes, image_size): ...`."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            warnings.warn(f"model {name!r} registered twice; the later definition wins", stacklevel=2)
        MODELS[name] = builder
        return builder

    return add
