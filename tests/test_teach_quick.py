"""Teach's quick head: labels as names or indices, prototypes below a few labels per class and a linear head above,
one linear layer either way, better than chance by far on real features."""

import numpy as np
import pytest

from deepcat.errors import DeepcatError
from deepcat.teach.quick import NO_EXAMPLES_LOGIT, fit_quick


@pytest.fixture(scope="module")
def digit_features():
    """scikit-learn's handwritten digits, their 64 pixels as the features (what a backbone would give, but real)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target


def test_the_head_beats_chance_by_far_and_picks_prototypes_below_a_few_labels(digit_features):
    x, y = digit_features
    rng = np.random.default_rng(0)
    few = np.concatenate([rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in range(10)])
    many = np.concatenate([rng.choice(np.flatnonzero(y == c), 20, replace=False) for c in range(10)])
    rest = np.setdiff1d(np.arange(len(y)), np.concatenate([few, many]))
    labels = np.full(len(y), -1)
    labels[few] = y[few]
    head = fit_quick(x, labels)  # unlabelled rows are ignored
    assert head.kind == "prototypes" and head.labelled == 20 and head.classes == tuple(map(str, range(10)))
    assert (head.logits(x[rest]).argmax(1) == y[rest]).mean() > 0.6  # chance: 0.1
    labels[many] = y[many]
    head = fit_quick(x, labels)
    assert head.kind == "linear"  # 22 labels in every class
    probs = head.predict_proba(x[rest])
    assert probs.shape == (len(rest), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == y[rest]).mean() > 0.85
    same = fit_quick(x[labels >= 0], [str(v) for v in labels[labels >= 0]], classes=[str(c) for c in range(10)])
    np.testing.assert_allclose(same.logits(x[rest]), head.logits(x[rest]), atol=1e-3)  # names or indices alike


def test_labels_by_name_with_a_class_not_labelled_yet(digit_features):
    x, y = digit_features
    labels = [("zero" if v == 0 else "one") if v in (0, 1) and i < 200 else None for i, v in enumerate(y)]
    head = fit_quick(x, labels, classes=["zero", "one", "seven"])
    probs = head.predict_proba(x[(y == 0) | (y == 1)])
    assert head.bias[2] == NO_EXAMPLES_LOGIT and probs[:, 2].max() < 1e-6  # "seven" has no label yet
    assert head.predict(x[y == 1][-5:]) == ["one"] * 5
    assert fit_quick(x[:3], ["zero", None, None]).predict_proba(x[:3]).tolist() == [[1.0]] * 3  # one class so far


def test_errors_name_what_was_received(digit_features):
    x, _ = digit_features
    with pytest.raises(DeepcatError, match="no labelled inputs"):
        fit_quick(x[:3], [None, None, None])
    with pytest.raises(DeepcatError, match="'dgo' is not one of the classes.*'dog'"):
        fit_quick(x[:2], ["cat", "dgo"], classes=["cat", "dog"])
    with pytest.raises(DeepcatError, match="one row per label"):
        fit_quick(x[:3], ["cat", "dog"])
