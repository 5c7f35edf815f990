"""Preprocessing (travels with the model) and augmentation presets (training only).

`Preprocess` is saved in every checkpoint and export; prediction, evaluation and
serving rebuild their transform from it and never restate sizes or statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torchvision.transforms import InterpolationMode, v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Preprocess:
    """How raw RGB pixels become the model's input: resize shorter side, centre crop, normalise."""

    input_size: int
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(d["input_size"], d["resize"], d["interpolation"], tuple(d["mean"]), tuple(d["std"]))


def _interp(pre: Preprocess) -> InterpolationMode:
    return InterpolationMode(pre.interpolation)


def _to_float(pre: Preprocess) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))]


def eval_transform(pre: Preprocess) -> v2.Compose:
    """Resize the shorter side to `resize`, centre-crop `input_size`, normalise.

    Resizing happens before ToImage so a PIL image is resized by PIL, exactly as the
    torch-free ONNX path (`inference/onnx_model.py`), the server and the exported models' consumers do.
    """
    return v2.Compose([v2.Resize(pre.resize, interpolation=_interp(pre), antialias=True),
                       v2.CenterCrop(pre.input_size), v2.ToImage(), *_to_float(pre)])


def train_transform(pre: Preprocess, *, augment: str, hflip: bool, small_images: bool) -> v2.Compose:
    """Augmentation presets: none | light (crop + flip) | strong (light + RandAugment)."""
    if augment == "none":
        return eval_transform(pre)
    size = pre.input_size
    if small_images:  # pad-and-crop keeps the whole object, as for CIFAR/MNIST-sized images
        geometry = [v2.Resize(size, interpolation=_interp(pre), antialias=True), v2.CenterCrop(size),
                    v2.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect")]
    else:
        geometry = [v2.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=_interp(pre), antialias=True)]
    flips = [v2.RandomHorizontalFlip()] if hflip else []
    strong = [v2.RandAugment(num_ops=2, magnitude=9, interpolation=_interp(pre))] if augment == "strong" else []
    return v2.Compose([v2.ToImage(), *geometry, *flips, *strong, *_to_float(pre)])
