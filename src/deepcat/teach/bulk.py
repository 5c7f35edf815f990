"""Accept pre-labels in bulk with a guarantee: every unlabelled input whose prediction set holds one class (its
top probability at least a threshold lambda > 1/2, so no other class can be in the set) takes its predicted label.
The threshold is set on the labelled inputs, one of two ways (`guarantee`):

- "overall": conformal risk control (Angelopoulos et al., "Conformal Risk Control", 2022) with the loss
  1[accepted and wrong]: bounded by 1 and never larger at a larger lambda, as CRC needs. lambda is the lowest
  threshold whose bound (errors accepted + 1) / (n + 1) is at most alpha (the + 1: CRC's finite-sample
  correction). Guaranteed: the expected share of the *whole pool* accepted with a wrong label is at most alpha.
  Among the accepted the error is then up to alpha / (share accepted): 2% of the pool is 4% of half of it.
- "among_accepted" (the default: what a user means by "accept at 2% error"): the share of wrong pre-labels
  among those accepted. Its loss is a ratio, which CRC does not control: holding CRC's bound at alpha times the
  share accepted lets the scan stop where the labelled inputs happened to err little, and on calibrated toy sets
  that accepted 6-13% wrong at alpha = 5% (tests/test_teach_choose.py). So the threshold comes from Learn then
  Test (Angelopoulos, Bates et al., 2021): from the highest threshold down, each is tested with a one-sided
  binomial test of "more than alpha of the accepted are wrong" at level delta, stopping at the first that cannot
  be rejected (fixed-sequence testing: no correction for the many thresholds). Guaranteed: with probability at
  least 1 - delta, at most alpha of the accepted are wrong in expectation over new inputs.

Both need labelled inputs that are exchangeable with the pool (a random sample of it: labels chosen for
uncertainty over-represent hard inputs, which makes the threshold cautious, not wrong) and probabilities from a
model that did not learn their labels (out-of-fold). And both need enough labels for alpha to be attainable at
all (`labels_needed`): "overall" ceil(1/alpha) - 1 (49 at 2%); "among_accepted" the m with (1 - alpha)^m <= delta,
all accepted and right (114 at 2%, delta = 10%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepcat.errors import DeepcatError

__all__ = ["DELTA", "GUARANTEES", "BulkAccept", "bulk_accept", "labels_needed"]

GUARANTEES = ("among_accepted", "overall")
DELTA = 0.1  # among_accepted: the chance that the labelled inputs mislead the threshold


@dataclass(frozen=True)
class BulkAccept:
    """Which pre-labels to accept, and on what grounds."""

    alpha: float  # the error rate the user asked for
    guarantee: str  # what alpha bounds: "among_accepted" or "overall" (see the module's docstring)
    threshold: float | None  # accept where the top probability >= this; None: no threshold meets alpha
    accepted: np.ndarray  # (m,) indices into the pool, each taking its predicted class
    labels: int  # labelled inputs the threshold was set on
    labels_needed: int  # the fewest labels with which alpha is attainable at all

    @property
    def message(self) -> str:
        """What the page says beside the button."""
        if self.threshold is None:
            return (
                f"no pre-label can be accepted at {self.alpha:.0%} error yet: label more inputs (at random) "
                f"or allow a larger error"
            )
        what = "of them" if self.guarantee == "among_accepted" else "of all unlabelled inputs"
        return (
            f"{len(self.accepted)} pre-labels with probability >= {self.threshold:.3f}: at most {self.alpha:.0%} "
            f"{what} wrong, judged on {self.labels} labelled inputs (at least {self.labels_needed} are needed; "
            f"it holds when they are a random sample of the rest)"
        )


def labels_needed(alpha: float, guarantee: str = "among_accepted", delta: float = DELTA) -> int:
    """The fewest labels with which `alpha` can be met at all, every one accepted and right: for "overall" the n
    with 1/(n+1) <= alpha; for "among_accepted" the n with (1 - alpha)^n <= delta."""
    if not 0 < alpha < 1:
        raise DeepcatError(f"alpha must be an error rate between 0 and 1, received alpha={alpha}; e.g. 0.02")
    if guarantee not in GUARANTEES:
        raise DeepcatError(f"guarantee must be one of {', '.join(GUARANTEES)}, received {guarantee!r}")
    if guarantee == "overall":
        return max(1, math.ceil(1 / alpha - 1 - 1e-9))
    return max(1, math.ceil(math.log(delta) / math.log(1 - alpha) - 1e-9))


def bulk_accept(
    *,
    calibration_probs: np.ndarray,
    calibration_labels: np.ndarray,
    pool_probs: np.ndarray,
    alpha: float = 0.02,
    guarantee: str = "among_accepted",
    delta: float = DELTA,
) -> BulkAccept:
    """The pool inputs whose pre-label can be accepted at error rate `alpha`.

    Args:
        calibration_probs: (n, k) probabilities of the labelled inputs from a model that did not learn their
            labels (out-of-fold).
        calibration_labels: (n,) their labels.
        pool_probs: (N, k) the model's probabilities for the unlabelled inputs.
        alpha: the error rate the user accepts.
        guarantee: "among_accepted" (alpha bounds the wrong share of the accepted, with probability 1 - delta)
            or "overall" (CRC: alpha bounds the expected share of the whole pool accepted and wrong).
        delta: for "among_accepted", the chance the guarantee fails.

    Returns:
        BulkAccept: the threshold, the accepted indices, and `message` for the page.

    Raises:
        DeepcatError: with fewer than `labels_needed` labels, naming how many more are needed.

    >>> rng = np.random.default_rng(0)
    >>> probs = rng.dirichlet([0.2] * 3, 2000)
    >>> labels = (probs.cumsum(1) > rng.random((2000, 1))).argmax(1)  # calibrated: drawn from each row
    >>> found = bulk_accept(calibration_probs=probs, calibration_labels=labels, pool_probs=probs, alpha=0.05)
    >>> 0.5 < found.threshold < 1.0
    True
    """
    need, n = labels_needed(alpha, guarantee, delta), len(calibration_labels)
    if len(calibration_probs) != n:
        raise DeepcatError(f"{len(calibration_probs)} rows of calibration_probs for {n} labels: one row per label")
    if n < need:
        raise DeepcatError(
            f"{n} labelled inputs cannot promise {alpha:.1%} error: the bound needs at least {need} "
            f"even when every one is right. Label {need - n} more, or raise alpha"
        )
    top = calibration_probs.max(1)
    wrong = calibration_probs.argmax(1) != np.asarray(calibration_labels)
    pool_top = pool_probs.max(1)
    thresholds = np.unique(pool_top[pool_top > 0.5])[::-1]  # (m,) highest first; above 1/2 a set holds one class
    accepted = len(top) - np.searchsorted(np.sort(top), thresholds, side="left")  # calibration inputs >= each
    errors = len(top[wrong]) - np.searchsorted(np.sort(top[wrong]), thresholds, side="left")
    if guarantee == "overall":
        holds = (errors + 1) / (n + 1) <= alpha  # CRC's bound, loss 1[accepted and wrong], B = 1: monotone
        first = 0
    else:
        holds = _binomial_rejects(errors, accepted, alpha, delta)
        # the fixed sequence starts at the first threshold that accepts enough labelled inputs for a rejection
        # to be possible (it depends on their probabilities alone, not their labels)
        first = int(np.searchsorted(accepted, need, side="left"))  # accepted grows as the threshold falls
    run = np.flatnonzero(~holds[first:])
    last = first + (int(run[0]) if len(run) else len(holds) - first) - 1
    if last < first:
        return BulkAccept(alpha, guarantee, None, np.zeros(0, np.int64), n, need)
    threshold = float(thresholds[last])
    return BulkAccept(alpha, guarantee, threshold, np.flatnonzero(pool_top >= threshold), n, need)


def _binomial_rejects(errors: np.ndarray, accepted: np.ndarray, alpha: float, delta: float) -> np.ndarray:
    """Where "more than alpha of the accepted are wrong" is rejected at level delta: P(Binomial(m, alpha) <= k)."""
    from scipy.stats import binom

    return np.asarray(binom.cdf(errors, accepted, alpha) <= delta) & (accepted > 0)
