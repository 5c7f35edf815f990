"""Prediction: `load(run).predict(images)`, for a trained run or the pretrained cat/dog/neither model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn as nn

from deepcat.device import keep_freed_memory
from deepcat.inference.answers import InputItem, Prediction, Rule, predict_batches
from deepcat.inference.calibrated import Calibration
from deepcat.inference.unknown_score import UnknownScore, WithFeatures, load_score
from deepcat.inputs import Preprocessing, input_kind
from deepcat.run_meta import Decision

__all__ = ["Classifier", "load_run", "pretrained_cat_dog"]


@dataclass
class Classifier:
    """A model with its class names and preprocessing: everything `predict` needs."""

    model: nn.Module
    classes: list[str]
    preprocess: Preprocessing
    name: str
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None  # maps model probs to `classes`
    calibration: Calibration = field(default_factory=Calibration)  # temperature, `unknown` threshold, sets
    unknown: UnknownScore | None = None  # the `unknown` score (energy if None)
    decision: Decision | None = None  # the run's decision.json: thresholds and costs (None: the likeliest class)

    def __post_init__(self) -> None:
        keep_freed_memory()  # it runs on the CPU: each batch reuses the memory the last one freed
        self.kind = input_kind(self.preprocess.kind)
        self.transform = self.kind.eval_transform(self.preprocess)
        self.model.eval()
        self.unknown = self.unknown or UnknownScore("energy")
        self.with_features = WithFeatures.for_score(self.model, self.unknown)

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, len(classes)) calibrated probabilities."""
        return self.infer(batch)[0]

    @torch.no_grad()
    def infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated probabilities (B, len(classes)) and `unknown` scores (B,), as the exported graph outputs."""
        features, logits = self.with_features(batch)
        probs = (logits / self.calibration.temperature).softmax(-1)
        reduced = self.reduce(probs) if self.reduce is not None else probs
        return reduced, self.unknown(features, logits)  # type: ignore[misc]  # load_run always sets a score

    def predict(
        self,
        images: InputItem | Sequence[InputItem],
        *,
        top_k: int = 5,
        reject: bool = True,
        coverage: float | None = None,
        batch_size: int = 32,
        progress: bool = False,
        decision: Decision | None = None,
    ) -> Prediction | list[Prediction]:
        """Predict one image (path, PIL image or HxWx3 array) or a list of them. With `reject`, an image
        whose `unknown` score is below the run's threshold is labelled `unknown`; with `coverage` (0.5 to
        0.99) each answer carries the prediction set that holds the true class that often. `decision` replaces
        the run's own (its decision.json).

        >>> deepcat.load("runs/pets").predict("cat.jpg", coverage=0.9).set
        ['cat']
        """
        single = not isinstance(images, (list, tuple))
        rule = Rule(
            self.classes,
            top_k,
            self.calibration.threshold if reject else None,
            None if coverage is None else self.calibration.set_limit(coverage),
            decision or self.decision,
        )
        items = [cast(InputItem, images)] if single else list(cast(Sequence[InputItem], images))

        def infer(batch: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
            probs, scores = self.infer(torch.stack(batch))
            return probs.numpy(), scores.numpy()

        results = predict_batches(
            items,
            rule,
            kind=self.kind,
            prepare=self.transform,
            infer=infer,
            batch_size=batch_size,
            progress=progress,
        )
        return results[0] if single else results


def pretrained_cat_dog() -> Classifier:
    """ImageNet EfficientNet-Lite0 (weights ship offline) answering cat, dog or neither."""
    from deepcat.inference.imagenet import CAT_DOG_NEITHER, cat_dog_neither
    from deepcat.models.create import create_model, default_preprocess

    model, spec = create_model(name="tf_efficientnet_lite0", num_classes=1000, image_size=224, pretrained=True)
    pre = default_preprocess(model, spec, image_size=None, native_size=None)
    return Classifier(model, CAT_DOG_NEITHER, pre, "imagenet-efficientnet-lite0", reduce=cat_dog_neither)


def load_run(run: str | Path, *, which: str = "best") -> Classifier:
    """A trained run's classifier (`deepcat.load(run)`)."""
    from deepcat.run_folder import load_model, read_decision

    model, meta = load_model(run, which=which)
    calibration = meta.calibration_or_default
    return Classifier(
        model,
        list(meta.classes),
        meta.preprocess,
        Path(run).name,
        calibration=calibration,
        unknown=load_score(calibration.score, Path(run)),
        decision=read_decision(Path(run), meta.classes),
    )
