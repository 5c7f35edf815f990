"""What a served model sees, against what it was validated on: the field's window of answers, a drift test, an
accuracy estimated without labels, and the accuracy measured on the labels owners send back.

The reference is the validation split's answers, kept in the run at calibration (`reference_of`, in
`Calibration.reference`, so an exported file carries it): a sorted sample of the calibrated top-1 probabilities
and of the `unknown` scores, and the predicted-class counts. The monitor keeps the same three of the last
`window` answers and tests each against it: two-sample Kolmogorov-Smirnov on the probabilities and on the scores,
chi-square on the class mix, Bonferroni-corrected. These are black-box shift detection on the model's own outputs
(Rabanser et al., "Failing Loudly", 2019, found univariate tests on the softmax outputs the best of the detectors
they compared), and the `unknown` score is the model's feature space already reduced to how unlike its training
data an input is (`unknown_score.py`): nothing is computed that the graph does not already answer, so a served
answer costs a ring-buffer write. `benchmarks/drift.py` compares it with Alibi Detect's MMD on the features.

The accuracy is estimated without labels by Average Thresholded Confidence (Garg et al., ICLR 2022): the
confidence that as many validation answers exceed as were right, and the share of the window above it, with its
Wilson 95% interval. `benchmarks/drift.py` measured it against the mean calibrated confidence (NannyML's CBPE):
closer on average on both data sets, though under a strong shift both miss by tens of points, since the model
answers inputs it cannot read with confidence. That is what the drift alarm is for; labels sent back
(`/v1/feedback`) give the measured accuracy beside the estimate.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from deepcat.inference.answers import Prediction
    from deepcat.run_meta import Calibration

__all__ = ["ALPHA", "MIN_ANSWERS", "REFERENCE_SAMPLE", "WINDOW", "Monitor", "monitor_for", "reference_of"]

WINDOW = 500  # answers the statistics are over: a shift of a third of the inputs moves them past the tests' noise
MIN_ANSWERS = 100  # fewer answers than this in the window: statistics shown, no test run
ALPHA = 0.01  # the alarm's false-alarm rate per look, over the three tests together (Bonferroni)
REFERENCE_SAMPLE = 500  # validation values kept per statistic (sorted quantiles): about 8 KB in model.json
TREND_POINTS = 60  # points of the trend kept for the page
NO_SET = -1  # the set size of an answer given without a prediction set
Z95 = 1.959964


def reference_of(
    probabilities: np.ndarray, scores: np.ndarray | None, labels: np.ndarray, *, threshold: float | None
) -> dict[str, Any]:
    """The validation answers' summary the monitor compares the field with: (N, K) calibrated probabilities,
    (N,) `unknown` scores (None: the model has none), (N,) true labels, the rejection threshold."""
    confidence = probabilities.max(1)
    predicted = probabilities.argmax(1)
    levels = (np.arange(min(REFERENCE_SAMPLE, len(confidence))) + 0.5) / min(REFERENCE_SAMPLE, len(confidence))

    def sample(values: np.ndarray) -> list[float]:
        return [round(float(v), 6) for v in np.quantile(values, levels)]

    unknown = 0.0 if scores is None or threshold is None else float((scores < threshold).mean())
    return {
        "answers": int(len(confidence)),
        "confidence": sample(confidence),
        "score": None if scores is None else sample(scores),
        "predicted": np.bincount(predicted, minlength=probabilities.shape[1]).tolist(),
        "unknown_share": round(unknown, 6),
        "accuracy": round(float((predicted == labels).mean()), 6),
    }


@dataclass
class Monitor:
    """The last `window` answers of a model with `classes`, tested against `reference` (None: a model trained
    before deepcat kept one: statistics without a drift test); `threshold`: the `unknown` threshold the answers
    were given with (None: none rejected). Thread-safe. Each answer is a write into the ring buffer; each fifth of
    a window, a trend point runs the tests (about 2 ms)."""

    classes: Sequence[str]
    reference: Mapping[str, Any] | None
    threshold: float | None = None
    set_limit: float | None = None  # the 90% prediction set's limit (None: no sets)
    window: int = WINDOW
    alpha: float = ALPHA
    answered: int = 0
    trend: collections.deque[dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=TREND_POINTS))
    feedback: collections.deque[bool] = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.window < 1:
            from deepcat.errors import DeepcatError

            raise DeepcatError(
                f"the monitor's window must hold at least one answer (--monitor-window); got {self.window}"
            )
        import scipy.stats  # noqa: F401 - now, not on the server's event loop at the first trend point

        self._confidence = np.zeros(self.window, np.float32)
        self._score = np.full(self.window, np.nan, np.float32)
        self._predicted = np.zeros(self.window, np.int32)
        self._set_size = np.zeros(self.window, np.int16)
        self.feedback = collections.deque(maxlen=self.window)

    def observe(self, probabilities: np.ndarray, scores: np.ndarray | None = None) -> None:
        """Add a batch of answers: (B, K) calibrated probabilities and their (B,) `unknown` scores."""
        probabilities = np.asarray(probabilities, np.float32).reshape(-1, len(self.classes))
        in_set = None if self.set_limit is None else (probabilities >= np.exp(-self.set_limit)).sum(1)
        self._add(probabilities.max(1), probabilities.argmax(1), scores, in_set)

    def observe_predictions(self, predictions: Sequence[Prediction]) -> None:
        """Add `predict`'s answers (those without an error); set sizes where they were asked for (`coverage`)."""
        answered = [p for p in predictions if p.error is None and p.top]
        index = {c: i for i, c in enumerate(self.classes)}
        scores = None if any(p.score is None for p in answered) else np.array([p.score for p in answered])
        in_set = None if any(p.set is None for p in answered) else np.array([len(p.set or ()) for p in answered])
        confidence = np.array([p.top[0][1] for p in answered], np.float32)  # top-1, as `observe` (not a decision's)
        self._add(confidence, np.array([index[p.top[0][0]] for p in answered]), scores, in_set)

    def _add(
        self, confidence: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None, in_set: np.ndarray | None
    ) -> None:
        with self.lock:
            for i in range(len(predicted)):
                slot = self.answered % self.window
                self._confidence[slot], self._predicted[slot] = confidence[i], predicted[i]
                self._score[slot] = np.nan if scores is None else scores[i]
                self._set_size[slot] = NO_SET if in_set is None else in_set[i]
                self.answered += 1
                if self.answered % max(1, self.window // 5) == 0 and self.answered >= min(self.window, MIN_ANSWERS):
                    self.trend.append(self._trend_point())

    def add_feedback(self, correct: bool) -> None:
        """An owner's true label for an answer: whether the answer was right."""
        with self.lock:
            self.feedback.append(bool(correct))

    def report(self) -> dict[str, Any]:
        """The window's statistics, the drift tests, the accuracy (estimated, and measured where labels came
        back), the alarm with its reasons, and the trend."""
        with self.lock:
            n = min(self.answered, self.window)
            confidence, score = self._confidence[:n].copy(), self._score[:n].copy()
            predicted, set_size = self._predicted[:n].copy(), self._set_size[:n].copy()
            feedback, trend, answered = list(self.feedback), list(self.trend), self.answered
        ref = self.reference
        has_score = n > 0 and not np.isnan(score).any()
        unknown = float((score < self.threshold).mean()) if has_score and self.threshold is not None else None
        drift = self._drift(confidence, score if has_score else None, predicted)
        accuracy = {
            **_estimated_accuracy(confidence, ref),
            "validation": None if ref is None else ref.get("accuracy"),
            "measured": _measured_accuracy(feedback),
        }
        report = {
            "window": self.window,
            "answers": n,
            "answered": answered,
            "classes": _shares(predicted, self.classes),
            "confidence": {"mean": _mean(confidence), "validation": _ref_mean(ref, "confidence")},
            "unknown_share": {"now": unknown, "validation": None if ref is None else ref.get("unknown_share")},
            "set_size": {"mean": _mean(set_size) if n and set_size.min() != NO_SET else None},
            "drift": drift,
            "accuracy": accuracy,
            "trend": trend,
        }
        report["reasons"] = _reasons(report, drift, ref, self.classes, n)
        report["alarm"] = bool(report["reasons"])
        return report

    def _trend_point(self) -> dict[str, Any]:
        """A point of the trend, taken under the lock each fifth of a window."""
        n = min(self.answered, self.window)
        confidence, score = self._confidence[:n], self._score[:n]
        has_score = not np.isnan(score).any()
        drift = self._drift(confidence, score if has_score else None, self._predicted[:n])
        unknown = float((score < self.threshold).mean()) if has_score and self.threshold is not None else None
        return {
            "answered": self.answered,
            "confidence": _mean(confidence),
            "unknown_share": unknown,
            "estimated_accuracy": _estimated_accuracy(confidence, self.reference)["estimate"],
            "p_value": drift["p_value"],
        }

    def _drift(self, confidence: np.ndarray, score: np.ndarray | None, predicted: np.ndarray) -> dict[str, Any]:
        """Each test's p-value, the smallest Bonferroni-corrected, and whether it is under `alpha`."""
        ref = self.reference
        if ref is None:
            why = "the model has no reference (trained before deepcat kept one): retrain it"
            return {"p_value": None, "tests": {}, "alpha": self.alpha, "drifted": False, "why": why}
        if len(confidence) < min(self.window, MIN_ANSWERS):
            why = f"fewer than {min(self.window, MIN_ANSWERS)} answers"
            return {"p_value": None, "tests": {}, "alpha": self.alpha, "drifted": False, "why": why}
        from scipy import stats

        tests: dict[str, float] = {"confidence": float(stats.ks_2samp(confidence, ref["confidence"]).pvalue)}
        if score is not None and ref.get("score") is not None:
            tests["score"] = float(stats.ks_2samp(score, ref["score"]).pvalue)
        tests["classes"] = _class_mix_p(np.bincount(predicted, minlength=len(self.classes)), ref["predicted"])
        p_value = min(1.0, min(tests.values()) * len(tests))
        return {"p_value": p_value, "tests": tests, "alpha": self.alpha, "drifted": p_value < self.alpha, "why": None}


def monitor_for(
    classes: Sequence[str], calibration: Calibration, window: int = WINDOW, *, reject: bool = True
) -> Monitor:
    """The monitor of a model with `classes` and `calibration` (its reference, 90% set limit and, with `reject`
    as its answers were given, its `unknown` threshold)."""
    set_limit = calibration.set_limit(0.9) if calibration.conformal else None
    threshold = calibration.threshold if reject else None
    return Monitor(classes, calibration.reference, threshold=threshold, set_limit=set_limit, window=window)


def _class_mix_p(now: np.ndarray, validation: Sequence[int]) -> float:
    """Chi-square test of the predicted-class counts against validation's (classes neither predicted: left out)."""
    from scipy import stats

    table = np.array([now, validation], dtype=np.float64)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def _estimated_accuracy(confidence: np.ndarray, ref: Mapping[str, Any] | None) -> dict[str, Any]:
    """ATC: the share of the window above the confidence that as many validation answers exceed as were right,
    with its Wilson 95% interval (None: no answers, or no reference)."""
    if ref is None or len(confidence) == 0:
        return {"estimate": None, "interval": None}
    threshold = float(np.quantile(ref["confidence"], 1 - ref["accuracy"]))
    above = int((confidence > threshold).sum())
    return {"estimate": above / len(confidence), "interval": _wilson(above, len(confidence))}


def _measured_accuracy(correct: Sequence[bool]) -> dict[str, Any] | None:
    """The accuracy on the labels sent back, with its Wilson 95% interval (None: none sent)."""
    if not correct:
        return None
    return {
        "value": sum(correct) / len(correct),
        "interval": _wilson(sum(correct), len(correct)),
        "labels": len(correct),
    }


def _wilson(hits: int, n: int) -> list[float]:
    """The Wilson score 95% interval of a share `hits / n`."""
    p = hits / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return [max(0.0, float(centre - half)), min(1.0, float(centre + half))]


def _reasons(
    report: Mapping[str, Any], drift: Mapping[str, Any], ref: Mapping[str, Any] | None, classes: Sequence[str], n: int
) -> list[str]:
    """One line per failed test, in the owner's terms ("42% of the last 500 inputs unknown, validation 3%")."""
    if not drift["drifted"] or ref is None:
        return []
    failed = {name for name, p in drift["tests"].items() if p * len(drift["tests"]) < drift["alpha"]}
    reasons = []
    if "score" in failed:
        now, then = report["unknown_share"]["now"], ref.get("unknown_share")
        if now is None:  # no threshold: say it by the score itself
            reasons.append(f"the unknown score of the last {n} inputs moved from validation's (KS test)")
        else:
            reasons.append(f"{now:.0%} of the last {n} inputs unknown, validation {then:.0%}")
    if "confidence" in failed:
        mean, then = report["confidence"]["mean"], report["confidence"]["validation"]
        reasons.append(f"mean confidence {mean:.2f} over the last {n} inputs, validation {then:.2f}")
    if "classes" in failed:
        shares = report["classes"]
        total = max(1, sum(ref["predicted"]))
        then = {c: k / total for c, k in zip(classes, ref["predicted"])}
        moved = max(classes, key=lambda c: abs(shares[c] - then[c]))
        reasons.append(f"{moved} answered for {shares[moved]:.0%} of the last {n} inputs, validation {then[moved]:.0%}")
    return reasons


def _shares(predicted: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    counts = np.bincount(predicted, minlength=len(classes))
    total = max(1, int(counts.sum()))
    return {c: float(k / total) for c, k in zip(classes, counts)}


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _ref_mean(ref: Mapping[str, Any] | None, key: str) -> float | None:
    return None if ref is None or ref.get(key) is None else float(np.mean(ref[key]))
