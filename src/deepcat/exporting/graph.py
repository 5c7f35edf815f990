"""The deployable graph: pixels in, probabilities out, and the metadata that describes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from deepcat.data.transforms import Preprocess

INPUT = "pixels"
OUTPUT = "probabilities"
ENERGY = "energy"  # logsumexp of the logits: the `unknown` score (see evaluation/calibration.py)


class Deployable(nn.Module):
    """(B, 3, H, W) float32 RGB in 0..255 -> (B, C) probabilities and (B,) energy; normalisation, the
    calibration temperature and softmax inside."""

    def __init__(self, model: nn.Module, pre: Preprocess,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, temperature: float = 1.0):
        super().__init__()
        self.model, self.reduce, self.temperature = model.eval(), reduce, float(temperature)
        # (x / 255 - mean) / std == (x - 255 mean) / (255 std)
        self.register_buffer("shift", torch.tensor(pre.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("scale", 1.0 / (torch.tensor(pre.std).view(1, 3, 1, 1) * 255.0))
        self.eval()

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model((pixels - self.shift) * self.scale).float()
        probs = (logits / self.temperature).softmax(-1)
        return (self.reduce(probs) if self.reduce is not None else probs), logits.logsumexp(-1)


def metadata(*, name: str, classes: list[str], pre: Preprocess, version: str, source: str,
             calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a consumer needs to feed the model and read its answer; stored as JSON under the key `deepcat`.
    `calibration.threshold`: below this energy (second output) the answer is `unknown`."""
    from deepcat import __version__

    return {"name": name, "version": version, "source": source, "classes": classes, **pre.to_dict(),
            "calibration": calibration,
            "input": {"name": INPUT, "layout": "NCHW", "dtype": "float32", "range": [0, 255], "color": "RGB"},
            "output": {"name": OUTPUT, "kind": "probabilities"}, "score_output": ENERGY,
            "deepcat_version": __version__}


def metadata_props(meta: dict[str, Any]) -> dict[str, str]:
    return {"deepcat": json.dumps(meta)}
