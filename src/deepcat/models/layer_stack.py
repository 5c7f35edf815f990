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

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from deepcat.errors import DeepcatError, did_you_mean

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
LAYER_KINDS = ("conv", "pool", "global_pool", "linear", "dropout")


def read_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DeepcatError(f"layers file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise DeepcatError(f"{path} must have a non-empty `layers:` list; see `deepcat train --help`")
    return spec


def _layer(entry: Any, index: int) -> tuple[str, Any]:
    if isinstance(entry, str):
        entry = {entry: None}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise DeepcatError(f"layer {index} must be one `kind: value` pair; received {entry!r}")
    kind, value = next(iter(entry.items()))
    if kind not in LAYER_KINDS:
        raise DeepcatError(f"layer {index}: unknown kind {kind!r}.{did_you_mean(kind, LAYER_KINDS)} "
                           f"Valid kinds: {', '.join(LAYER_KINDS)}")
    return kind, value


def build_layer_stack(spec: dict[str, Any], *, num_classes: int, image_size: int) -> nn.Sequential:
    act_name = spec.get("activation", "relu")
    if act_name not in ACTIVATIONS:
        raise DeepcatError(f"activation must be one of {', '.join(ACTIVATIONS)}; received {act_name!r}")
    act = ACTIVATIONS[act_name]
    layers: list[nn.Module] = []
    channels, flat = 3, False
    for i, entry in enumerate(spec["layers"]):
        kind, value = _layer(entry, i)
        if kind == "conv":
            opts = value if isinstance(value, dict) else {"channels": value}
            out, k = int(opts["channels"]), int(opts.get("kernel", 3))
            bn = bool(opts.get("batchnorm", True))
            layers += [nn.Conv2d(channels, out, k, stride=int(opts.get("stride", 1)), padding=k // 2, bias=not bn)]
            layers += [nn.BatchNorm2d(out)] if bn else []
            layers += [act()]
            channels = out
        elif kind == "pool":
            layers.append(nn.AvgPool2d(2) if value == "avg" else nn.MaxPool2d(2))
        elif kind == "global_pool":
            layers += [nn.AdaptiveAvgPool2d(1) if value != "max" else nn.AdaptiveMaxPool2d(1), nn.Flatten()]
            flat = True
        elif kind == "linear":
            if not flat:
                layers.append(nn.Flatten())
                flat = True
            layers += [nn.LazyLinear(int(value)), act()]
        elif kind == "dropout":
            layers.append(nn.Dropout(float(value)))
    if not flat:
        layers.append(nn.Flatten())
    layers.append(nn.LazyLinear(num_classes))
    model = nn.Sequential(*layers)
    with torch.no_grad():  # materialise the lazy linear layers for this input size
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    return model.train()
