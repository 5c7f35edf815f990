"""A fitted calibration at prediction time: the saved `Calibration` (temperature, the `unknown` threshold, the
conformal set limits; defined with the rest of the saved metadata in deepcat.run_meta), softmax at a temperature,
the prediction-set rule and the calibration error (an export's check judges its file by it too). Fitting them is
`deepcat.evaluation.calibration`'s job; every runtime (PyTorch, ONNX Runtime, the server) reads them from here.
numpy only: the exported model's consumers use it without torch.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from deepcat.run_meta import DEFAULT_ACCEPT, Calibration, set_limit  # saved with the model: its home is run_meta

__all__ = [
    "DEFAULT_ACCEPT",
    "ECE_BINS",
    "Calibration",
    "expected_calibration_error",
    "neg_log_probs",
    "prediction_sets",
    "reliability_bins",
    "set_limit",
    "softmax",
]

ECE_BINS = 15


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


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and count (empty bins have count 0)."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    safe = np.maximum(count, 1)
    return {
        "confidence": (np.bincount(index, confidence, bins) / safe).tolist(),
        "accuracy": (np.bincount(index, correct, bins) / safe).tolist(),
        "count": count.tolist(),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of images."""
    b = reliability_bins(probs, labels, bins)
    count = np.asarray(b["count"])
    gap = np.abs(np.asarray(b["accuracy"]) - np.asarray(b["confidence"]))
    return float((gap * count).sum() / max(count.sum(), 1))
