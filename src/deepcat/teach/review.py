"""What the labelling page shows for review besides the next inputs to label: labels the model's out-of-fold
probabilities contradict (likely label errors, by cleanlab's confident learning) and groups of near-duplicate
inputs (the audit's perceptual-hash search, confirmed on thumbnails). Thin wrappers, numpy and paths in and out.

The out-of-fold probabilities are the recipe of `deepcat.evaluation.label_errors.out_of_fold_probs` (standardised
features, logistic regression, stratified folds), written here because that module is the report's and only the
fronts import it (tests/test_architecture.py).
"""

from __future__ import annotations

import threading

import numpy as np

from deepcat.data.audit.duplicates import groups, near_pairs
from deepcat.data.audit.findings import NEAR_DUPLICATE_BITS, NEAR_DUPLICATE_MAE
from deepcat.data.audit.scan import scan
from deepcat.errors import DeepcatError
from deepcat.inputs import input_kind

__all__ = ["likely_label_errors", "near_duplicates", "out_of_fold_probs"]

_CLEANLAB = threading.Lock()


def out_of_fold_probs(*, features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(n, k) each labelled input's probabilities from a linear head fitted without it (stratified k-fold, k at
    most the smallest class's count and at least 2). The labels must hold every class at least twice.
    (The page's own review uses its quick head instead: `model_suggest.ModelSuggester.doubted`.)"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels)
    if counts.min() < 2:
        raise DeepcatError(
            f"out-of-fold probabilities need two labels of every class; class {int(counts.argmin())} has "
            f"{int(counts.min())}. Label more of it first"
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.5))
    cv = StratifiedKFold(max(2, min(folds, int(counts.min()))), shuffle=True, random_state=seed)
    probs: np.ndarray = cross_val_predict(model, features, labels, method="predict_proba", cv=cv)
    return probs


def likely_label_errors(*, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of labelled inputs whose label cleanlab's confident learning doubts, most doubtful first.

    Args:
        labels: (n,) the labels the user gave.
        probs: (n, k) out-of-fold probabilities (`out_of_fold_probs`).

    Returns:
        (m,) indices into `labels`, ranked by the probability of the given label, lowest first.
    """
    from cleanlab.filter import find_label_issues

    # cleanlab keeps its work in module globals, so two calls at once (two page requests) must not overlap; and
    # one process: a labelled set is small, and a fork of a multi-threaded server is no place for a pool
    with _CLEANLAB:
        found = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(found, np.int64)


def near_duplicates(
    *, items: list[str] | np.ndarray, kind: str | None = None, max_bits: int = NEAR_DUPLICATE_BITS, workers: int = 2
) -> list[list[int]]:
    """Groups (indices into `items`) of identical or near-identical inputs, as `deepcat check` finds them.

    Args:
        items: file paths, or an (N, H, W[, 3]) uint8 array of images.
        kind: the input kind ("image", "audio"); None: the default (images).
        max_bits: the perceptual hashes' Hamming distance at or under which two inputs are candidates.
        workers: processes reading the files.

    Returns:
        Groups of two or more indices, sorted; unreadable inputs are in none.
    """
    facts = scan(items, input_kind(kind), workers=workers, progress=False)
    good = np.array([i for i, f in enumerate(facts) if f.error is None], np.int64)
    if len(good) < 2:
        return []
    pairs = near_pairs(np.array([facts[i].fingerprint for i in good], np.uint64), max_bits)
    if len(pairs):  # the hash proposes, the thumbnails confirm, as the audit does
        thumbs = np.frombuffer(b"".join(facts[i].thumb for i in good), np.uint8).reshape(len(good), -1)
        close = np.abs(thumbs[pairs[:, 0]].astype(np.int16) - thumbs[pairs[:, 1]]).mean(1) <= NEAR_DUPLICATE_MAE
        pairs = pairs[close]
    content = np.array([facts[i].content for i in good])
    return [sorted(int(good[i]) for i in g) for g in groups(content, pairs)]
