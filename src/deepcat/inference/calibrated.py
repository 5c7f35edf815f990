"""A fitted calibration at prediction time: the saved `Calibration` (temperature, the `unknown` threshold, the
conformal set limits), softmax at a temperature and the prediction-set rule. Fitting them is
`deepcat.evaluation.calibration`'s job; every runtime (PyTorch, ONNX Runtime, the server) reads them from here.
numpy only: the exported model's consumers use it without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

__all__ = ["DEFAULT_ACCEPT", "Calibration", "neg_log_probs", "prediction_sets", "set_limit", "softmax"]

DEFAULT_ACCEPT = 0.95


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return cast("np.ndarray", e / e.sum(1, keepdims=True))


def neg_log_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """-log softmax(logits / T), in float64: the conformal score of every class (no ties at probability 1)."""
    z = logits.astype(np.float64) / temperature
    m = z.max(1, keepdims=True)
    return cast("np.ndarray", np.log(np.exp(z - m).sum(1, keepdims=True)) + m - z)


def prediction_sets(neg_log_p: np.ndarray, limit: float | None) -> np.ndarray:
    """(N, C) booleans: which classes are in each set."""
    return neg_log_p <= (np.inf if limit is None else limit)


@dataclass
class Calibration:
    """What is saved with a model (model.json and the ONNX metadata): temperature, rejection rule, sets."""

    temperature: float = 1.0
    threshold: float | None = None  # score below which the answer is `unknown`
    score: str = "energy"  # which score (deepcat.inference.unknown_score); energy in old runs
    target_accept: float = DEFAULT_ACCEPT  # share of known validation images the threshold accepts
    images: int = 0  # validation images all of this rests on
    note: str | None = None  # why the temperature was kept at 1.0, if it was
    conformal: dict[str, float | None] | None = None  # coverage -> set limit (see `conformal_quantiles`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibration:
        return cls(**values) if values else cls()

    def rejects(self, scores: np.ndarray) -> np.ndarray:
        """True where the scores (N,) fall below the threshold."""
        if self.threshold is None:
            return np.zeros(len(scores), dtype=bool)
        return np.asarray(scores) < self.threshold

    def set_limit(self, coverage: float) -> float:
        """The set limit for `coverage` (inf: every class); raises when the model has none or `coverage` is
        off the grid."""
        from deepcat.errors import DeepcatError

        return set_limit(self.conformal, coverage, DeepcatError)


def set_limit(conformal: dict[str, float | None] | None, coverage: float, error: type[Exception]) -> float:
    """The one lookup every runtime uses (the model's metadata carries `conformal`); inf: every class."""
    if not conformal:
        raise error(
            "this model has no prediction sets: it was trained without a validation split (or before "
            "deepcat had them); retrain it to use coverage"
        )
    key = f"{coverage:.2f}"
    if key not in conformal or abs(float(key) - coverage) > 1e-9:
        raise error(f"coverage must be one of 0.50, 0.51, ..., 0.99; received {coverage}")
    limit = conformal[key]
    return float("inf") if limit is None else float(limit)
