"""Which inputs to label next: the ones whose labels should teach the model most for the user's time.

- `margin`: the smallest gap between the two most probable classes (uncertainty sampling, Scheffer et al., 2001);
- `set_size`: the largest conformal prediction set (deepcat's sets: a class is in when -log of its probability is
  at most the calibrated limit), ties broken by margin;
- `kcenter`: greedy k-center on L2-normalised features (Sener & Savarese, 2018): each pick is the input farthest
  from everything labelled or picked, so the labels cover the data; it needs no model, so it is also what runs
  before the first label;
- `mix`: k-center among the MIX_CANDIDATES x `count` smallest margins: uncertain, but not twenty copies of one
  confusion;
- `random`: the baseline every strategy must beat.
`DEFAULT` is the one that won `benchmarks/active.py`. Inputs and outputs are numpy: probabilities and features
come from whatever model the caller has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.registry import Registry

__all__ = ["DEFAULT", "MIX_CANDIDATES", "STRATEGIES", "Pool", "k_center", "margins", "next_to_label", "set_sizes"]

MIX_CANDIDATES = 10  # mix: k-center among the 10 x count most uncertain
BLOCK = 8192  # rows of the pool compared with the labelled features at once: 8192 x 1024 floats = 32 MB


@dataclass(frozen=True)
class Pool:
    """What a strategy sees: the model's probabilities (None before any label), the features, which are labelled."""

    probs: np.ndarray | None  # (n, k)
    features: np.ndarray  # (n, d)
    labelled: np.ndarray  # (n,) bool
    set_limit: float | None  # the conformal set's -log-probability limit, for `set_size`


Strategy = Callable[[Pool, int, np.random.Generator], np.ndarray]
STRATEGIES: Registry[Strategy] = Registry("labelling strategy")


def margins(probs: np.ndarray) -> np.ndarray:
    """(n,) top-1 minus top-2 probability: 0 where the model cannot tell its two best guesses apart."""
    top2 = np.partition(probs, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def set_sizes(probs: np.ndarray, limit: float) -> np.ndarray:
    """(n,) how many classes deepcat's conformal set holds at `limit` (the calibrated -log-probability limit,
    `deepcat.evaluation.calibration.conformal_quantiles`): the rule of `deepcat.inference.calibrated`."""
    with np.errstate(divide="ignore"):
        return (-np.log(probs) <= limit).sum(1)  # type: ignore[no-any-return]


def k_center(features: np.ndarray, centres: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows of `features` (n, d), each the farthest (in cosine distance) from the rows of `features`
    in `centres` (a bool mask) and the rows picked before it; the first at random when there are no centres.
    Memory and time are linear in n: distances to the centres are taken BLOCK rows at a time (n x 1,280 floats
    once, then one matrix-vector product per pick)."""
    x = features.astype(np.float32, copy=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    nearest = np.full(len(x), np.inf, np.float32)  # squared distance to the nearest centre: 2 - 2 cos
    known = x[centres]
    for start in range(0, len(x), BLOCK):
        if len(known):
            similarity = x[start : start + BLOCK] @ known.T  # (block, centres)
            nearest[start : start + BLOCK] = 2 - 2 * similarity.max(1)
    nearest[centres] = -1.0  # never picked again
    picked = []
    for _ in range(count):
        i = int(rng.choice(np.flatnonzero(nearest >= 0))) if np.isinf(nearest).all() else int(nearest.argmax())
        picked.append(i)
        nearest = np.minimum(nearest, 2 - 2 * (x @ x[i]))
        nearest[picked] = -1.0
    return np.array(picked, np.int64)


@STRATEGIES.register("random")
def _random(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(np.flatnonzero(~pool.labelled), count, replace=False)


@STRATEGIES.register("kcenter")
def _kcenter(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    return k_center(pool.features, pool.labelled, count, rng)


@STRATEGIES.register("margin")
def _margin(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    return _smallest(margins(_probs(pool)), pool.labelled, count)


@STRATEGIES.register("set_size")
def _set_size(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    if pool.set_limit is None:
        raise DeepcatError(
            "strategy 'set_size' needs set_limit, the conformal set's -log-probability limit: "
            "deepcat.evaluation.calibration.conformal_quantiles(logits, labels, temperature)['0.90'] on inputs "
            "the model did not learn from; or choose strategy 'margin'"
        )
    probs = _probs(pool)
    m = margins(probs)
    # largest set first, then smallest margin: one key, as sets hold at most k classes and margins lie in [0, 1]
    return _smallest(m - 2.0 * set_sizes(probs, pool.set_limit), pool.labelled, count)


@STRATEGIES.register("mix")
def _mix(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    candidates = _smallest(margins(_probs(pool)), pool.labelled, MIX_CANDIDATES * count)
    if len(candidates) <= count:
        return candidates
    rows = np.concatenate([np.flatnonzero(pool.labelled), candidates])
    centres = np.zeros(len(rows), bool)
    centres[: pool.labelled.sum()] = True
    picked: np.ndarray = rows[k_center(pool.features[rows], centres, count, rng)]
    return picked


DEFAULT = "margin"  # fewest labels to random sampling's 1,000-label accuracy, both data sets of benchmarks/active.py


def next_to_label(
    *,
    probs: np.ndarray | None,
    features: np.ndarray,
    labelled: np.ndarray,
    count: int,
    strategy: str = DEFAULT,
    rng: np.random.Generator | int | None = None,
    set_limit: float | None = None,
) -> np.ndarray:
    """The `count` unlabelled inputs to ask the user about next, most useful first.

    Args:
        probs: (n, k) the current model's class probabilities for every input, or None before any model
            (then k-center is used, whatever `strategy` says).
        features: (n, d) the inputs' features (a pretrained backbone's pooled output).
        labelled: (n,) True where the user has given a label.
        count: how many to return (fewer when fewer are unlabelled).
        strategy: one of STRATEGIES: random, margin, set_size, kcenter, mix.
        rng: a Generator or seed for random choices (random, and k-center's first pick with no labels).
        set_limit: the conformal -log-probability limit that `set_size` needs.

    Returns:
        (count,) distinct indices of unlabelled inputs.

    >>> next_to_label(probs=None, features=np.eye(3), labelled=np.array([True, False, False]), count=1)
    array([1])
    """
    labelled = np.asarray(labelled, bool)
    if labelled.shape != (len(features),):
        raise DeepcatError(f"labelled has shape {labelled.shape}; it needs one flag per input: ({len(features)},)")
    if probs is not None and len(probs) != len(features):
        raise DeepcatError(f"probs has {len(probs)} rows and features {len(features)}: one row per input in both")
    chosen = STRATEGIES.get(strategy)  # an unknown name is refused with the nearest valid one
    count = min(int(count), int((~labelled).sum()))
    if count <= 0:
        return np.zeros(0, np.int64)
    if probs is None and strategy != "random":
        chosen = STRATEGIES.get("kcenter")
    pool = Pool(probs, features, labelled, set_limit)
    return np.asarray(chosen(pool, count, np.random.default_rng(rng)), np.int64)


def _probs(pool: Pool) -> np.ndarray:
    if pool.probs is None:  # next_to_label routes this case to k-center; a direct caller gets told
        raise DeepcatError("this strategy needs the model's probabilities; before any model, use 'kcenter'")
    return pool.probs


def _smallest(score: np.ndarray, labelled: np.ndarray, count: int) -> np.ndarray:
    """The `count` unlabelled rows with the smallest `score`, smallest first."""
    free = np.flatnonzero(~labelled)
    count = min(count, len(free))
    part = free[np.argpartition(score[free], count - 1)[:count]]
    return part[np.argsort(score[part], kind="stable")]
