"""Choosing what to label next, accepting pre-labels in bulk, and the review lists: on toy sets whose right
answer is known."""

import numpy as np
import pytest

from deepcat.errors import DeepcatError
from deepcat.teach.bulk import bulk_accept, labels_needed
from deepcat.teach.choose import STRATEGIES, k_center, margins, next_to_label
from deepcat.teach.review import likely_label_errors, near_duplicates, out_of_fold_probs


def blobs(n: int = 300, k: int = 4, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of k separated clusters, their labels, and soft probabilities from the distance to each centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    labels = rng.integers(0, k, n)
    features = centres[labels] + rng.normal(size=(n, d))
    logits = -((features[:, None, :] - centres[None]) ** 2).sum(2) / 8
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return features, labels, probs / probs.sum(1, keepdims=True)


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_each_strategy_returns_count_distinct_unlabelled_inputs(strategy):
    features, _, probs = blobs()
    labelled = np.zeros(len(features), bool)
    labelled[::7] = True
    chosen = next_to_label(
        probs=probs, features=features, labelled=labelled, count=25, strategy=strategy, rng=1, set_limit=1.0
    )
    assert len(chosen) == 25 and len(set(chosen.tolist())) == 25
    assert not labelled[chosen].any()


def test_before_any_model_it_covers_the_data_and_stops_at_the_pool():
    features, labels, _ = blobs(k=4)
    chosen = next_to_label(probs=None, features=features, labelled=np.zeros(len(features), bool), count=4, rng=0)
    assert len(set(labels[chosen].tolist())) == 4  # one from each cluster: k-center before any label
    labelled = np.ones(len(features), bool)
    labelled[:3] = False
    assert sorted(next_to_label(probs=None, features=features, labelled=labelled, count=10).tolist()) == [0, 1, 2]


def test_k_center_picks_the_far_points():
    rng = np.random.default_rng(0)
    near = np.c_[np.ones(50), rng.normal(scale=0.01, size=(50, 2))]  # all pointing one way
    far = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])  # three other directions
    features = np.r_[near, far]
    labelled = np.zeros(len(features), bool)
    labelled[0] = True
    assert sorted(k_center(features, labelled, 3, rng).tolist()) == [50, 51, 52]


def test_margin_picks_the_most_uncertain():
    probs = np.array([[0.9, 0.1, 0.0], [0.5, 0.45, 0.05], [0.34, 0.33, 0.33], [0.6, 0.4, 0.0], [0.35, 0.34, 0.31]])
    labelled = np.array([False, False, False, False, True])
    chosen = next_to_label(probs=probs, features=np.eye(5), labelled=labelled, count=2, strategy="margin")
    assert chosen.tolist() == [2, 1]  # margins 0.01 and 0.05; the labelled 0.01 is not asked again
    assert np.allclose(margins(probs), [0.8, 0.05, 0.01, 0.2, 0.01])


def test_set_size_asks_about_the_largest_sets_and_needs_its_limit():
    probs = np.array([[0.98, 0.01, 0.01], [0.5, 0.49, 0.01], [0.4, 0.3, 0.3]])
    labelled = np.zeros(3, bool)
    chosen = next_to_label(probs=probs, features=np.eye(3), labelled=labelled, count=1, strategy="set_size",
                           set_limit=-np.log(0.25))  # fmt: skip
    assert chosen.tolist() == [2]  # three classes in its set
    with pytest.raises(DeepcatError, match="set_limit"):
        next_to_label(probs=probs, features=np.eye(3), labelled=labelled, count=1, strategy="set_size")


def test_an_unknown_strategy_is_refused_with_the_nearest_name():
    with pytest.raises(DeepcatError, match="margin"):
        next_to_label(probs=None, features=np.eye(3), labelled=np.zeros(3, bool), count=1, strategy="margins")


def calibrated(n: int, rng: np.random.Generator, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that are calibrated by construction: each label is drawn from its row."""
    probs = rng.dirichlet(np.full(k, 0.1), n)
    labels = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    return probs, labels


@pytest.mark.parametrize("guarantee", ["among_accepted", "overall"])
def test_bulk_accept_holds_its_error_at_alpha(guarantee):
    """Over many draws of 300 labels and a pool of 2,000 (alpha = 5%): "overall" (CRC) keeps the pool's share
    accepted and wrong at alpha on average; "among_accepted" keeps the wrong share of the accepted under alpha
    in all but about delta = 10% of draws. CRC's threshold is 7.6% wrong among the accepted here, so it would
    fail the second; a threshold without the +1 correction or the binomial test would fail either."""
    rng, alpha = np.random.default_rng(0), 0.05
    among, overall, shares = [], [], []
    for _ in range(200):
        cal_probs, cal_labels = calibrated(300, rng)
        pool_probs, pool_labels = calibrated(2000, rng)
        found = bulk_accept(calibration_probs=cal_probs, calibration_labels=cal_labels, pool_probs=pool_probs,
                            alpha=alpha, guarantee=guarantee)  # fmt: skip
        wrong = (pool_probs[found.accepted].argmax(1) != pool_labels[found.accepted]).sum()
        among.append(wrong / max(len(found.accepted), 1))
        overall.append(wrong / 2000)
        shares.append(len(found.accepted) / 2000)
    if guarantee == "overall":
        assert np.mean(overall) <= alpha + 0.003 and np.mean(shares) > 0.5
    else:
        assert np.mean(np.array(among) > alpha + 0.01) <= 0.1 and np.mean(shares) > 0.2


def test_bulk_accept_refuses_too_few_labels_and_says_how_many():
    assert [labels_needed(a, "overall") for a in (0.02, 0.05, 0.1)] == [49, 19, 9]  # 1/(n+1) <= alpha
    assert [labels_needed(a) for a in (0.02, 0.05, 0.1)] == [114, 45, 22]  # (1 - alpha)^n <= 10%
    probs, labels = calibrated(30, np.random.default_rng(0))
    with pytest.raises(DeepcatError, match="needs at least 49.*Label 19 more"):
        bulk_accept(calibration_probs=probs, calibration_labels=labels, pool_probs=probs, alpha=0.02,
                    guarantee="overall")  # fmt: skip
    with pytest.raises(DeepcatError, match="needs at least 114.*Label 84 more"):
        bulk_accept(calibration_probs=probs, calibration_labels=labels, pool_probs=probs, alpha=0.02)
    with pytest.raises(DeepcatError, match="alpha=1.5"):
        labels_needed(1.5)


def test_bulk_accept_accepts_nothing_when_the_model_is_often_wrong():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(3, 0.1), 500)  # confident, and right only by chance
    found = bulk_accept(calibration_probs=probs, calibration_labels=rng.integers(0, 3, 500), pool_probs=probs,
                        alpha=0.02)  # fmt: skip
    assert found.threshold is None and len(found.accepted) == 0 and "label more" in found.message


def test_review_finds_flipped_labels_and_near_duplicates():
    features, labels, _ = blobs(n=400, k=4, seed=1)
    flipped = labels.copy()
    flipped[:8] = (labels[:8] + 1) % 4
    suspects = likely_label_errors(labels=flipped, probs=out_of_fold_probs(features=features, labels=flipped))
    assert set(range(8)) <= set(suspects[:12].tolist())

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32), dtype=np.uint8)
    images[4] = np.clip(images[1].astype(int) + rng.integers(-2, 3, (32, 32)), 0, 255)  # a near copy of 1
    images[5] = images[2]  # an exact copy of 2
    assert near_duplicates(items=images, workers=1) == [[1, 4], [2, 5]]
