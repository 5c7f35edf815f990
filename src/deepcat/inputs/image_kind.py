"""The image kind, registered as `INPUT_KINDS["image"]`: `image.py`'s numpy side (decoding, the audit's checks,
the model's raw input) and `image_tensors.py`'s torch side (transforms, the graph's normalisation), which loads
when one of its members is first called, so ONNX Runtime and the server run images without torch."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from deepcat.inputs import INPUT_KINDS, Hints, InputKind, ModelChoice, Words
from deepcat.inputs.image import (
    FLAG_LABELS,
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    Preprocess,
    decode_bytes,
    flags,
    from_memory,
    input_spec,
    inspect_array,
    inspect_file,
    load_image,
    native_size,
    pixels,
)

__all__ = ["FEW_PER_CLASS", "IMAGE", "TINY_SIDE", "auto_model", "few_per_class"]

# Small images with fewer labelled per class to train on than this train the ImageNet-pretrained backbone, not the
# small CNN from scratch (measured: benchmarks/results/auto_model.json). Tiny ones (the digits' 8 px) hold little
# an ImageNet feature adds, so from scratch wins sooner there.
TINY_SIDE = 16
FEW_PER_CLASS = {"tiny": 20, "small": 1000}


def eval_transform(pre: Preprocess) -> Any:
    from deepcat.inputs.image_tensors import eval_transform as build

    return build(pre)


def train_transform(pre: Preprocess, splits: Any, *, augment: str, hflip: bool) -> Any:
    from deepcat.inputs.image_tensors import train_transform as build

    return build(pre, augment=augment, hflip=hflip, small_images=splits.small_images)


def front_end(pre: Preprocess) -> Any:
    from deepcat.inputs.image_tensors import Normalise

    return Normalise(pre)


def picture(x: Any, pre: Preprocess) -> np.ndarray:
    """The network's input (3, H, W), normalised, back as the (H, W, 3) uint8 crop it saw."""
    import torch

    mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
    return cast("np.ndarray", ((x * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy())


def example(pre: Preprocess, batch: int) -> Any:
    import torch

    return torch.rand(batch, 3, pre.input_size, pre.input_size) * 255


def default_preprocess(hints: Hints) -> Preprocess:
    """The model's own preprocessing (timm's pretrained config) or, for deepcat's own CNNs, the data's size
    (32 px when unknown), normalised to [-1, 1]."""
    if hints.model_config is None:
        size = hints.input_size or hints.native_size or 32
        return Preprocess(size, size, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    cfg = hints.model_config
    size = hints.input_size or cfg["input_size"][-1]
    crop_pct = cfg.get("crop_pct", 0.875)
    return Preprocess(
        size, int(round(size / crop_pct)), cfg.get("interpolation", "bilinear"), tuple(cfg["mean"]), tuple(cfg["std"])
    )


def few_per_class(side: int | None) -> int:
    """Below this many labelled per class to train on, images of `side` px train the pretrained backbone."""
    return FEW_PER_CLASS["tiny" if side is not None and side <= TINY_SIDE else "small"]


def auto_model(splits: Any) -> ModelChoice:
    """Photos, or small images (<= 64 px) with few labelled per class (`few_per_class`): ImageNet EfficientNet-Lite0,
    fine-tuned; small images with more: deepcat's small CNN from scratch at their own size, as accurate there and
    ten times faster."""
    if not splits.small_images:
        return ModelChoice("tf_efficientnet_lite0", "photos: an ImageNet-pretrained backbone, fine-tuned")
    size = f"{splits.native_size}-px images" if splits.native_size else "small images (<= 64 px)"
    per_class, few = splits.train_per_class(), few_per_class(splits.native_size)
    if per_class < few:
        return ModelChoice(
            "tf_efficientnet_lite0",
            f"{size}, {per_class} per class to train on (under {few}): an ImageNet-pretrained backbone, "
            "fine-tuned at its own 224 px, is more accurate there than the small CNN from scratch, if slower "
            "(--model smallcnn for speed)",
        )
    return ModelChoice(
        "smallcnn",
        f"{size}, {per_class} per class to train on: the small CNN from scratch at their own size, as accurate "
        "there as a pretrained backbone and ten times faster",
    )


def unchanged(image: Any) -> Any:
    """What `show` draws for an image: the image itself."""
    return image


def twice_the_resize(pre: Preprocess) -> int:
    """A large JPEG is decoded at reduced scale, keeping twice the resize so a random crop still has full detail
    (a 12-megapixel photo at 1/4 scale)."""
    return 2 * int(pre.resize)


WORDS = Words(
    noun="image", plural="images", sizes="sizes", picture="image", source="same kind of camera, framing and content"
)

IMAGE = INPUT_KINDS.add(
    "image",
    InputKind(
        name="image",
        suffixes=IMAGE_SUFFIXES,
        media_types=("image/",),
        read=load_image,
        from_memory=from_memory,
        decode_bytes=decode_bytes,
        preprocess=Preprocess.from_dict,
        to_model_input=pixels,
        eval_transform=eval_transform,
        train_transform=train_transform,
        front_end=front_end,
        picture=picture,
        show=unchanged,
        example=example,
        input_spec=input_spec,
        inspect_file=inspect_file,
        inspect_array=inspect_array,
        flags=flags,
        flag_labels=FLAG_LABELS,
        native_size=native_size,
        default_limit=MAX_PIXELS,
        words=WORDS,
        default_preprocess=default_preprocess,
        auto_model=auto_model,
        min_side=twice_the_resize,
    ),
)
