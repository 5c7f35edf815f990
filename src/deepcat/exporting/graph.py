"""The deployable graph: the raw input (an image's pixels) in, probabilities out, and the metadata that describes it.
What the graph takes is the input kind's (`deepcat.inputs`): its front end is the graph's first layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from deepcat.inference.unknown_score import UnknownScore, WithFeatures
from deepcat.inputs import input_kind
from deepcat.run_meta import PROBABILITIES, Calibration, Decision, ExportMeta

__all__ = ["LOGITS", "OUTPUT", "SCORE", "Deployable", "metadata", "metadata_props"]

OUTPUT = "probabilities"
SCORE = "unknown_score"  # higher = more like the training data; below the threshold: `unknown`
LOGITS = (
    "logits"  # before temperature and softmax: what the export check compares (saturated probabilities hide errors)
)


class Deployable(nn.Module):
    """The raw input (images: (B, 3, H, W) float32 RGB in 0..255) -> (B, C) probabilities, (B,) `unknown`
    score and the (B, K) logits; the kind's front end (images: normalisation), the calibration temperature,
    softmax and the score (deepcat.inference.unknown_score; energy when none is given) inside."""

    def __init__(
        self,
        model: nn.Module,
        pre: Any,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        temperature: float = 1.0,
        unknown: UnknownScore | None = None,
    ):
        super().__init__()
        self.front_end = input_kind(pre.kind).front_end(pre)
        self.model, self.reduce, self.temperature = model.eval(), reduce, float(temperature)
        self.unknown = unknown or UnknownScore("energy")
        self.with_features = WithFeatures.for_score(model, self.unknown)
        self.eval()

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.front_end(raw)
        features, logits = self.with_features(x)
        probs = (logits / self.temperature).softmax(-1)
        return (self.reduce(probs) if self.reduce is not None else probs), self.unknown(features, logits), logits


def metadata(
    *,
    name: str,
    classes: list[str],
    pre: Any,
    version: str,
    source: str,
    calibration: Calibration | None = None,
    decision: Decision | None = None,
) -> ExportMeta:
    """What a consumer needs to feed the model and read its answer (deepcat.run_meta.ExportMeta); stored as JSON
    under the key `deepcat`. `calibration.threshold`: below this score (second output) the answer is `unknown`;
    `calibration.conformal`: the prediction sets' limits (see deepcat.evaluation.calibration)."""
    from deepcat.version import __version__

    return ExportMeta(
        name=name,
        version=version,
        source=source,
        classes=tuple(classes),
        preprocess=pre,
        calibration=calibration,
        input=input_kind(pre.kind).input_spec(pre),
        output={**PROBABILITIES, "name": OUTPUT},
        score_output=SCORE,
        logits_output=LOGITS,
        deepcat_version=__version__,
        decision=decision,
    )


def metadata_props(meta: ExportMeta) -> dict[str, str]:
    return {"deepcat": meta.to_json()}
