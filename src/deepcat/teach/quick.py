"""The quick head: a linear classifier on frozen backbone features, refit from scratch after every label.

With a few labels per class the class means are the better classifier (prototypes, Snell et al., 2017: cosine
similarity to each class's mean feature direction); with more, a multinomial logistic regression on standardised
features (scikit-learn's L-BFGS). `fit_quick` picks by the smallest class's count, at the crossing measured in
`benchmarks/teach_head.py` (Fashion-MNIST through Lite0). Either way the result is one linear layer, logits =
features @ weight.T + bias (the standardisation is folded into it; prototypes divide by the labelled features'
median length rather than each input's own, which keeps every prediction), so the page, `train --quick`'s run
folder and its export all answer with the same numbers.

The fit runs on one thread: a refit is a small problem, and BLAS threads on cores that are busy embedding (or
shared) wait on each other far longer than the fit itself takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepcat.errors import DeepcatError, did_you_mean

__all__ = ["NO_EXAMPLES_LOGIT", "PROTOTYPES_BELOW", "PROTOTYPE_SCALE", "REGULARISATION", "QuickHead", "fit_quick"]

PROTOTYPES_BELOW = 6  # prototypes up to 5 labels in the smallest class; the linear head won from 10
PROTOTYPE_SCALE = 20.0  # logits per unit of cosine similarity (the prototypes' inverse temperature)
REGULARISATION = 0.01  # scikit-learn's C: the inverse strength of the L2 penalty on standardised features
NO_EXAMPLES_LOGIT = -1e4  # a class without a label yet: never predicted (probability 0)


@dataclass(frozen=True)
class QuickHead:
    """A fitted quick head: logits = features @ weight.T + bias, one column per class.

    Args:
        classes: the class names, in the columns' order.
        weight: (K, D) float32.
        bias: (K,) float32.
        kind: how it was fitted: "linear" or "prototypes".
        labelled: how many labelled inputs it was fitted on.
    """

    classes: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray
    kind: str
    labelled: int

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(n, D) features -> (n, K) logits."""
        return np.asarray(np.asarray(features, np.float32) @ self.weight.T + self.bias)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, D) features -> (n, K) probabilities (softmax of the logits), rows summing to 1."""
        logits = self.logits(features)
        logits -= logits.max(1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(1, keepdims=True), np.float32)

    def predict(self, features: np.ndarray) -> list[str]:
        """(n, D) features -> the n most probable class names."""
        return [self.classes[i] for i in self.logits(features).argmax(1)]


def fit_quick(
    features: np.ndarray,
    labels: Sequence[str | None] | np.ndarray,
    classes: Sequence[str] | None = None,
    *,
    kind: str = "auto",
) -> QuickHead:
    """Fit the quick head on the labelled rows of `features`; unlabelled rows are ignored.

    Args:
        features: (n, D) backbone features (`FeatureCache.features(...).features`).
        labels: n class names with None for unlabelled, or n class indices with -1 for unlabelled.
        classes: every class name, in the order of the head's columns (default: the labels' sorted names, or
            "0", "1", ... for indices). A class without a label yet gets probability 0.
        kind: "linear", "prototypes" or "auto" (prototypes while the smallest labelled class has fewer than
            PROTOTYPES_BELOW labels).

    Returns:
        The head; `predict_proba(features)` scores any rows.

    >>> head = fit_quick(found.features, ["cat", None, "dog", None], classes=["cat", "dog"])
    >>> head.predict_proba(found.features)  # (4, 2)
    """
    x = np.asarray(features, np.float32)
    names, y = _codes(labels, classes)
    if x.ndim != 2 or len(x) != len(y):
        raise DeepcatError(
            f"features must be (n, D) with one row per label; received shape {x.shape} and {len(y)} labels"
        )
    known = y >= 0
    if not known.any():
        raise DeepcatError("no labelled inputs: label at least one input per class before fitting a head")
    counts = np.bincount(y[known], minlength=len(names))
    present = np.flatnonzero(counts)
    if kind == "auto":
        kind = "prototypes" if counts[present].min() < PROTOTYPES_BELOW else "linear"
    if kind not in ("linear", "prototypes"):
        raise DeepcatError(f"kind must be linear, prototypes or auto; received {kind!r}")
    weight = np.zeros((len(names), x.shape[1]), np.float32)
    bias = np.full(len(names), NO_EXAMPLES_LOGIT, np.float32)
    if len(present) == 1:
        bias[present] = 0.0  # one class labelled so far: it is the answer
    elif kind == "prototypes":
        weight[present], bias[present] = _prototypes(x[known], y[known], present)
    else:
        weight[present], bias[present] = _linear(x[known], y[known], present)
    return QuickHead(tuple(names), weight, bias, kind, int(known.sum()))


def _codes(labels: Sequence[str | None] | np.ndarray, classes: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """(class names, (n,) int codes with -1 for unlabelled)."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        y = labels.astype(np.int64)
        names = list(classes) if classes is not None else [str(i) for i in range(int(y.max(initial=-1)) + 1)]
        if y.max(initial=-1) >= len(names) or y.min(initial=0) < -1:
            raise DeepcatError(
                f"label indices must be -1 (unlabelled) or 0..{len(names) - 1} for {len(names)} classes; "
                f"received {int(y.min())}..{int(y.max())}"
            )
        return names, y
    given = [None if label is None else str(label) for label in labels]
    names = list(classes) if classes is not None else sorted({label for label in given if label is not None})
    index = {name: i for i, name in enumerate(names)}
    for label in given:
        if label is not None and label not in index:
            raise DeepcatError(f"label {label!r} is not one of the classes {names}.{did_you_mean(label, names)}")
    return names, np.array([-1 if label is None else index[label] for label in given], np.int64)


def _prototypes(x: np.ndarray, y: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each class's mean direction, scaled by PROTOTYPE_SCALE over the features' median length: cosine similarity
    as one linear layer."""
    means = np.stack([x[y == c].mean(0) for c in present])  # (k, D)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    length = float(np.median(np.linalg.norm(x, axis=1))) or 1.0
    return means * (PROTOTYPE_SCALE / length), np.zeros(len(present), np.float32)


def _linear(x: np.ndarray, y: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised features, the standardisation folded into the layer."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    mean = x.mean(0)
    spread = x.std(0)
    spread = np.maximum(spread, 0.01 * float(spread.mean()) + 1e-12)  # a feature constant in the labels stays tame
    with threadpool_limits(limits=1):
        fitted = LogisticRegression(C=REGULARISATION, max_iter=1000).fit((x - mean) / spread, y)
    coef, intercept = fitted.coef_, fitted.intercept_  # (k, D), (k,): the rows of `present`, in its sorted order
    if len(present) == 2:  # scikit-learn's binary form, one row for the second class: split it between the two
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    weight = coef / spread
    return weight.astype(np.float32), (intercept - weight @ mean).astype(np.float32)
