"""A model described as a stack of layers in YAML, for people who design their own.

    activation: relu            # relu | gelu | silu | tanh
    layers:
      - conv: 32                # 3x3 conv, 32 channels, + batch norm + activation
      - conv: {channels: 64, kernel: 5, stride: 2, batchnorm: false}
      - pool: max               # 2x2 max (or avg) pooling
      - global_pool: avg        # (B, C, H, W) -> (B, C)
      - linear: 128             # + activation
      - dropout: 0.2

A final linear layer to the number of classes is added; spatial maps are
flattened before the first linear layer automatically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from deepcat.errors import DeepcatError
from deepcat.registry import Registry

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "Stack",
    "build_layer_stack",
    "conv",
    "dropout",
    "global_pool",
    "linear",
    "pool",
    "read_spec",
]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class Stack:
    """The stack being built: its layers so far and the shape of what they output."""

    act: type[nn.Module]
    layers: list[nn.Module] = field(default_factory=list)
    channels: int = 3
    flat: bool = False

    def flatten(self) -> None:
        if not self.flat:
            self.layers.append(nn.Flatten())
            self.flat = True


LAYERS: Registry[Callable[[Stack, Any], None]] = Registry("layer kind")


@LAYERS.register("conv")
def conv(stack: Stack, value: Any) -> None:
    """3x3 (or `kernel`) convolution + batch norm (unless `batchnorm: false`) + activation."""
    opts = value if isinstance(value, dict) else {"channels": value}
    out, k = int(opts["channels"]), int(opts.get("kernel", 3))
    bn = bool(opts.get("batchnorm", True))
    stack.layers += [nn.Conv2d(stack.channels, out, k, stride=int(opts.get("stride", 1)), padding=k // 2, bias=not bn)]
    stack.layers += [nn.BatchNorm2d(out)] if bn else []
    stack.layers += [stack.act()]
    stack.channels = out


@LAYERS.register("pool")
def pool(stack: Stack, value: Any) -> None:
    stack.layers.append(nn.AvgPool2d(2) if value == "avg" else nn.MaxPool2d(2))


@LAYERS.register("global_pool")
def global_pool(stack: Stack, value: Any) -> None:
    stack.layers += [nn.AdaptiveAvgPool2d(1) if value != "max" else nn.AdaptiveMaxPool2d(1)]
    stack.flatten()


@LAYERS.register("linear")
def linear(stack: Stack, value: Any) -> None:
    stack.flatten()
    stack.layers += [nn.LazyLinear(int(value)), stack.act()]


@LAYERS.register("dropout")
def dropout(stack: Stack, value: Any) -> None:
    stack.layers.append(nn.Dropout(float(value)))


def read_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DeepcatError(f"layers file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise DeepcatError(f"{path} must have a non-empty `layers:` list; see `deepcat train --help`")
    return spec


def _layer(entry: Any, index: int) -> tuple[Callable[[Stack, Any], None], Any]:
    if isinstance(entry, str):
        entry = {entry: None}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise DeepcatError(f"layer {index} must be one `kind: value` pair; received {entry!r}")
    kind, value = next(iter(entry.items()))
    try:
        return LAYERS.get(kind), value
    except DeepcatError as e:
        raise DeepcatError(f"layer {index}: {e}") from None


def build_layer_stack(spec: dict[str, Any], *, num_classes: int, image_size: int) -> nn.Sequential:
    act_name = spec.get("activation", "relu")
    if act_name not in ACTIVATIONS:
        raise DeepcatError(f"activation must be one of {', '.join(ACTIVATIONS)}; received {act_name!r}")
    stack = Stack(ACTIVATIONS[act_name])
    for i, entry in enumerate(spec["layers"]):
        add, value = _layer(entry, i)
        add(stack, value)
    stack.flatten()
    model = nn.Sequential(*stack.layers, nn.LazyLinear(num_classes))
    with torch.no_grad():  # materialise the lazy linear layers for this input size
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    return model.train()
