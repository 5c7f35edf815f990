"""Prediction: `load(run).predict(images)`, for a trained run or the pretrained cat/dog/neither model."""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from deepcat.data.images import BadImage, is_image_file, load_image, to_rgb
from deepcat.data.transforms import Preprocess, eval_transform
from deepcat.errors import DeepcatError

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass
class Prediction:
    """The answer for one image: best label, its probability and the top-k; or the reason it failed."""

    source: str
    label: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "label": self.label, "probability": self.probability,
                "top": [{"label": lab, "probability": p} for lab, p in self.top], "error": self.error}


@dataclass
class Classifier:
    """A model with its class names and preprocessing: everything `predict` needs."""

    model: nn.Module
    classes: list[str]
    preprocess: Preprocess
    name: str
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None  # maps model probs to `classes`

    def __post_init__(self) -> None:
        self.transform = eval_transform(self.preprocess)
        self.model.eval()

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, len(classes)) probabilities."""
        probs = self.model(batch).float().softmax(-1)
        return self.reduce(probs) if self.reduce else probs

    def predict(self, images: ImageInput | Sequence[ImageInput], *, top_k: int = 5,
                batch_size: int = 32, progress: bool = False) -> Prediction | list[Prediction]:
        """Predict one image (path, PIL image or HxWx3 array) or a list of them.

        >>> deepcat.load("runs/pets").predict("cat.jpg").label
        'cat'
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results: list[Prediction] = []
        from tqdm import tqdm

        for start in tqdm(range(0, len(items), batch_size), disable=not progress, desc="predict"):
            chunk = items[start:start + batch_size]
            tensors, pending = [], []
            for item in chunk:
                pred = Prediction(source=str(item) if isinstance(item, (str, Path)) else type(item).__name__)
                try:
                    tensors.append(self.transform(_as_pil(item)))
                    pending.append(pred)
                except BadImage as e:
                    pred.error = str(e)
                results.append(pred)
            if tensors:
                probs = self.probabilities(torch.stack(tensors))
                k = min(top_k, len(self.classes))
                for pred, row in zip(pending, probs):
                    values, index = row.topk(k)
                    pred.top = [(self.classes[i], float(v)) for v, i in zip(values, index)]
                    pred.label, pred.probability = pred.top[0]
        return results[0] if single else results


def _as_pil(item: ImageInput) -> Image.Image:
    if isinstance(item, (str, Path)):
        return load_image(item)
    if isinstance(item, np.ndarray):
        return to_rgb(Image.fromarray(item))
    if isinstance(item, Image.Image):
        return to_rgb(item)
    raise DeepcatError(f"cannot predict on a {type(item).__name__}; pass a path, a PIL image or an array")


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Files, folders (searched recursively for images) and globs, in the order given."""
    found: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if is_image_file(p))
        elif path.exists():
            found.append(str(path))
        else:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise DeepcatError(f"no such file, folder or glob match: {pattern}")
            found += matches
    if not found:
        raise DeepcatError(f"no images found in {', '.join(patterns)}")
    return found


def pretrained_cat_dog() -> Classifier:
    """ImageNet EfficientNet-Lite0 (weights ship offline) answering cat, dog or neither."""
    from deepcat.imagenet import CAT_DOG_NEITHER, cat_dog_neither
    from deepcat.models.create import create_model, default_preprocess

    model, spec = create_model(name="tf_efficientnet_lite0", num_classes=1000, image_size=224, pretrained=True)
    pre = default_preprocess(model, spec, image_size=None, native_size=None)
    return Classifier(model, CAT_DOG_NEITHER, pre, "imagenet-efficientnet-lite0", reduce=cat_dog_neither)


def load(run: str | Path | None = None, *, which: str = "best") -> Classifier:
    """A trained run's classifier; with no run, the pretrained cat / dog / neither classifier.

    >>> clf = deepcat.load("runs/smallcnn-digits")
    >>> clf.predict(["a.png", "b.png"], top_k=3)
    """
    if run is None:
        return pretrained_cat_dog()
    from deepcat.runs import load_model

    model, meta = load_model(run, which=which)
    return Classifier(model, meta["classes"], Preprocess.from_dict(meta["preprocess"]), Path(run).name)
