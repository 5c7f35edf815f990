"""The image kind's tensor side: eval and training transforms (torchvision), and the normalisation that sits
inside every exported graph. `Preprocess` (in `image.py`) decides them all; nothing here restates sizes."""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.transforms import InterpolationMode, v2

from deepcat.inputs.image import Preprocess

__all__ = ["Normalise", "eval_transform", "train_transform"]


def _interp(pre: Preprocess) -> InterpolationMode:
    return InterpolationMode(pre.interpolation)


def _to_float(pre: Preprocess) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))]


def eval_transform(pre: Preprocess) -> v2.Compose:
    """Resize the shorter side to `resize`, centre-crop `input_size`, normalise.

    Resizing happens before ToImage so a PIL image is resized by PIL, exactly as the
    torch-free ONNX path (`image.pixels`), the server and the exported models' consumers do.
    """
    return v2.Compose(
        [
            v2.Resize(pre.resize, interpolation=_interp(pre), antialias=True),
            v2.CenterCrop(pre.input_size),
            v2.ToImage(),
            *_to_float(pre),
        ]
    )


def train_transform(pre: Preprocess, *, augment: str, hflip: bool, small_images: bool) -> v2.Compose:
    """Augmentation presets: none | light (crop + flip) | strong (light + RandAugment)."""
    if augment == "none":
        return eval_transform(pre)
    size = pre.input_size
    if small_images:  # pad-and-crop keeps the whole object, as for CIFAR/MNIST-sized images
        geometry = [
            v2.Resize(size, interpolation=_interp(pre), antialias=True),
            v2.CenterCrop(size),
            v2.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect"),
        ]
    else:
        geometry = [v2.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=_interp(pre), antialias=True)]
    flips = [v2.RandomHorizontalFlip()] if hflip else []
    strong = [v2.RandAugment(num_ops=2, magnitude=9, interpolation=_interp(pre))] if augment == "strong" else []
    return v2.Compose([v2.ToImage(), *geometry, *flips, *strong, *_to_float(pre)])


class Normalise(nn.Module):
    """(B, 3, H, W) float32 RGB in 0..255 -> the network's normalised input; the first layer of every export."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, pre: Preprocess):
        super().__init__()
        # (x / 255 - mean) / std == (x - 255 mean) / (255 std)
        self.register_buffer("shift", torch.tensor(pre.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("scale", 1.0 / (torch.tensor(pre.std).view(1, 3, 1, 1) * 255.0))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.shift) * self.scale
