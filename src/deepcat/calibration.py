"""Confidence a user can read as a probability, and "none of the above".

- Temperature scaling (Guo et al., 2017): one scalar T fitted on validation logits by
  minimising the negative log-likelihood; probabilities become softmax(logits / T).
  It never changes the top-1 answer.
- Expected calibration error over 15 equal-width confidence bins, and the reliability
  diagram's bins, before and after.
- Rejection: the calibrated maximum softmax probability (MSP) is the score, and the
  threshold is the quantile of validation scores that accepts `accept` of known images.
  MSP over energy: measured on held-out classes (`benchmarks/open_set.py`) the two
  rank unknowns about equally, and MSP is computable from the probabilities every
  runtime already outputs (ONNX, the server, the browser page).

No torch in this file: numpy and scipy only, so the exported model's consumers can use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ECE_BINS = 15
DEFAULT_ACCEPT = 0.95


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on (logits, labels); a 1-D bounded search."""
    from scipy.optimize import minimize_scalar

    logits = logits.astype(np.float64)

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float((np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and count (empty bins have count 0)."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    safe = np.maximum(count, 1)
    return {"confidence": (np.bincount(index, confidence, bins) / safe).tolist(),
            "accuracy": (np.bincount(index, correct, bins) / safe).tolist(),
            "count": count.tolist()}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of images."""
    b = reliability_bins(probs, labels, bins)
    count = np.asarray(b["count"])
    gap = np.abs(np.asarray(b["accuracy"]) - np.asarray(b["confidence"]))
    return float((gap * count).sum() / max(count.sum(), 1))


def max_probability(probs: np.ndarray) -> np.ndarray:
    """The rejection score: higher means more like the training classes."""
    return probs.max(1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T * logsumexp(logits / T) (Liu et al., 2020); higher means more known."""
    z = logits / temperature
    m = z.max(1)
    return temperature * (m + np.log(np.exp(z - m[:, None]).sum(1)))


@dataclass
class Calibration:
    """What is saved with a model (model.json and the ONNX metadata): temperature and rejection rule."""

    temperature: float = 1.0
    threshold: float | None = None          # calibrated max probability below which the answer is `unknown`
    score: str = "max_probability"
    target_accept: float = DEFAULT_ACCEPT    # share of known validation images the threshold accepts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibration:
        return cls(**values) if values else cls()

    def rejects(self, probs: np.ndarray) -> np.ndarray:
        """True where the calibrated `probs` (N, C) fall below the threshold."""
        if self.threshold is None:
            return np.zeros(len(probs), dtype=bool)
        return max_probability(probs) < self.threshold


def fit(val_logits: np.ndarray, val_labels: np.ndarray, *, accept: float = DEFAULT_ACCEPT) -> Calibration:
    """Temperature, then the threshold that accepts `accept` of the validation images."""
    t = fit_temperature(val_logits, val_labels)
    scores = max_probability(softmax(val_logits, t))
    return Calibration(temperature=t, threshold=float(np.quantile(scores, 1.0 - accept)), target_accept=accept)


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """Probability that a known image scores above an unknown one (area under the ROC curve)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(known_scores)), np.zeros(len(unknown_scores))]
    return float(roc_auc_score(y, np.r_[known_scores, unknown_scores]))


def tradeoff(probs: np.ndarray, labels: np.ndarray, points: int = 41) -> dict[str, list[float]]:
    """For thresholds over the score's range: share of images accepted and accuracy on those accepted."""
    scores, correct = max_probability(probs), probs.argmax(1) == labels
    thresholds = np.unique(np.quantile(scores, np.linspace(0, 0.99, points)))
    accepted = [(scores >= t).mean() for t in thresholds]
    accuracy = [correct[scores >= t].mean() if (scores >= t).any() else 1.0 for t in thresholds]
    return {"threshold": thresholds.tolist(), "accepted": np.asarray(accepted, float).tolist(),
            "accuracy": np.asarray(accuracy, float).tolist()}


def report(logits: np.ndarray, labels: np.ndarray, cal: Calibration) -> dict[str, Any]:
    """ECE and reliability bins before and after, share accepted, and the accept/accuracy trade-off,
    on held-out (test) logits."""
    before, after = softmax(logits), softmax(logits, cal.temperature)
    kept = ~cal.rejects(after)
    return {"temperature": cal.temperature, "threshold": cal.threshold, "images": int(len(labels)),
            "ece_before": expected_calibration_error(before, labels),
            "ece_after": expected_calibration_error(after, labels),
            "accepted": float(kept.mean()),
            "accuracy_all": float((after.argmax(1) == labels).mean()),
            "accuracy_accepted": float((after.argmax(1) == labels)[kept].mean()) if kept.any() else None,
            "tradeoff": tradeoff(after, labels),
            "reliability_before": reliability_bins(before, labels),
            "reliability_after": reliability_bins(after, labels)}
