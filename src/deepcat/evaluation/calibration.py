"""Confidence a user can read as a probability, "none of the above", and sets with a coverage guarantee.

- Temperature scaling (Guo et al., 2017): one scalar T fitted on validation logits by minimising the negative
  log-likelihood, with a weak prior on log T (sigma 0.5) so that a small validation split cannot drive T to its
  bound; a split with no mistakes says nothing about over-confidence, so T stays 1.0 with a note. The ECE
  "after" is judged out of sample: on the test split, or cross-fitted over folds of val when there is none.
- Rejection: a score from `deepcat.inference.unknown_score` (higher = more like the training data) and the
  threshold that accepts `accept` of the validation images.
- Prediction sets (split conformal, the least-ambiguous-set rule of Sadinle et al., 2019): a class is in the
  set when -log of its calibrated probability is at most the quantile of the true class's -log probability on
  validation; such sets hold the true class with probability >= the coverage asked for, and are the smallest
  on average. An empty set means no class is plausible enough at that coverage.

This file fits; `deepcat.inference.calibrated` holds what a fitted calibration means when a model predicts (the
saved `Calibration`, softmax at a temperature, set limits), which every runtime reads. No torch here either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepcat.inference.calibrated import (
    DEFAULT_ACCEPT,
    ECE_BINS,
    Calibration,
    expected_calibration_error,
    neg_log_probs,
    prediction_sets,
    reliability_bins,
    softmax,
)

__all__ = [
    "COVERAGES",
    "CROSS_FIT_FOLDS",
    "Calibration",
    "DEFAULT_ACCEPT",
    "ECE_BINS",
    "LOG_T_PRIOR",
    "NO_MISTAKES",
    "REPORTED_COVERAGES",
    "auroc",
    "conformal_quantiles",
    "coverage_table",
    "cross_fitted_probs",
    "expected_calibration_error",
    "fit",
    "fit_temperature",
    "neg_log_probs",
    "prediction_sets",
    "reliability_bins",
    "report",
    "softmax",
    "tradeoff",
]

LOG_T_PRIOR = 0.5  # sd of the prior on log T: negligible at 10,000 images, decisive at 50
CROSS_FIT_FOLDS = 5
COVERAGES = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))  # 0.50 .. 0.99: what --coverage accepts
REPORTED_COVERAGES = (0.8, 0.9, 0.95)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on (logits, labels) plus the prior on log T;
    1.0 when every image is right (nothing to judge over-confidence by)."""
    from scipy.optimize import minimize_scalar

    logits = logits.astype(np.float64)
    if (logits.argmax(1) == labels).all():
        return 1.0

    def penalised_nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        nll = (np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]).sum()
        return float(nll + log_t**2 / (2 * LOG_T_PRIOR**2))

    return float(np.exp(minimize_scalar(penalised_nll, bounds=(-3.0, 3.0), method="bounded").x))


def cross_fitted_probs(
    logits: np.ndarray, labels: np.ndarray, folds: int = CROSS_FIT_FOLDS, seed: int = 0
) -> np.ndarray:
    """Each image's probabilities at a temperature fitted on the other folds: for judging calibration on the
    images it was fitted on, without flattering it."""
    order = np.random.default_rng(seed).permutation(len(labels))
    probs = np.empty(logits.shape, dtype=np.float64)
    for part in np.array_split(order, min(folds, len(labels))):
        rest = np.setdiff1d(order, part)
        t = fit_temperature(logits[rest], labels[rest]) if len(rest) else 1.0
        probs[part] = softmax(logits[part].astype(np.float64), t)
    return probs


def conformal_quantiles(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float | None]:
    """Coverage ("0.90") -> the largest -log probability a class may have and be in the set; None means every
    class (too few validation images to promise that coverage)."""
    true = np.sort(neg_log_probs(logits, temperature)[np.arange(len(labels)), labels])
    n, out = len(true), {}
    for coverage in COVERAGES:
        rank = int(np.ceil((n + 1) * coverage))  # the finite-sample correction of split conformal
        out[f"{coverage:.2f}"] = float(true[rank - 1]) if rank <= n else None
    return out


NO_MISTAKES = (
    "every validation example was classified right, so over-confidence cannot be measured; the "
    "temperature stays 1.0 (more validation examples would let it be fitted)"
)


def fit(
    val_logits: np.ndarray, val_labels: np.ndarray, scores: np.ndarray, *, score: str, accept: float = DEFAULT_ACCEPT
) -> Calibration:
    """Temperature, the `unknown` threshold that accepts `accept` of the validation `scores`, and the
    conformal set limits, all from the validation split."""
    t = fit_temperature(val_logits, val_labels)
    note = NO_MISTAKES if (val_logits.argmax(1) == val_labels).all() else None
    return Calibration(
        temperature=t,
        threshold=float(np.quantile(scores, 1.0 - accept)),
        score=score,
        target_accept=accept,
        images=int(len(val_labels)),
        note=note,
        conformal=conformal_quantiles(val_logits, val_labels, t),
    )


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """Probability that a known image scores above an unknown one (area under the ROC curve)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(known_scores)), np.zeros(len(unknown_scores))]
    return float(roc_auc_score(y, np.r_[known_scores, unknown_scores]))


def tradeoff(scores: np.ndarray, correct: np.ndarray, points: int = 41) -> dict[str, list[float]]:
    """For thresholds over the score's range: share of images accepted and accuracy on those accepted."""
    thresholds = np.unique(np.quantile(scores, np.linspace(0, 0.99, points)))
    accepted = [(scores >= t).mean() for t in thresholds]
    accuracy = [correct[scores >= t].mean() if (scores >= t).any() else 1.0 for t in thresholds]
    return {
        "threshold": thresholds.tolist(),
        "accepted": np.asarray(accepted, float).tolist(),
        "accuracy": np.asarray(accuracy, float).tolist(),
    }


def coverage_table(logits: np.ndarray, labels: np.ndarray, cal: Calibration) -> list[dict[str, float]]:
    """Measured coverage and mean set size at the reported coverages, on held-out logits."""
    if not cal.conformal:
        return []
    scores, rows = neg_log_probs(logits, cal.temperature), []
    for coverage in REPORTED_COVERAGES:
        sets = prediction_sets(scores, cal.conformal[f"{coverage:.2f}"])
        rows.append(
            {
                "coverage": coverage,
                "measured": float(sets[np.arange(len(labels)), labels].mean()),
                "mean_size": float(sets.sum(1).mean()),
                "empty": float((sets.sum(1) == 0).mean()),
            }
        )
    return rows


def report(
    logits: np.ndarray, labels: np.ndarray, scores: np.ndarray, cal: Calibration, *, fitted_on: bool
) -> dict[str, Any]:
    """ECE and reliability bins before and after, share accepted, the accept/accuracy trade-off and the
    prediction sets' coverage, on the logits and `unknown` scores of one split. `fitted_on`: the split is
    the one the temperature was fitted on, so "after" is cross-fitted over its folds."""
    before = softmax(logits)
    after = cross_fitted_probs(logits, labels) if fitted_on else softmax(logits, cal.temperature)
    kept = ~cal.rejects(scores)
    correct = softmax(logits, cal.temperature).argmax(1) == labels
    return {
        "temperature": cal.temperature,
        "threshold": cal.threshold,
        "score": cal.score,
        "target_accept": cal.target_accept,
        "images": int(len(labels)),
        "calibration_images": cal.images,
        "note": cal.note,
        "ece_after_measured_on": (
            f"the fitting images, cross-fitted over {CROSS_FIT_FOLDS} folds"
            if fitted_on
            else "images the temperature was not fitted on"
        ),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "accepted": float(kept.mean()),
        "accuracy_all": float(correct.mean()),
        "accuracy_accepted": float(correct[kept].mean()) if kept.any() else None,
        "tradeoff": tradeoff(scores, correct),
        "coverage": coverage_table(logits, labels, cal),
        "reliability_before": reliability_bins(before, labels),
        "reliability_after": reliability_bins(after, labels),
    }
