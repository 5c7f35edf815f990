"""Each keyword's threshold for a false-alarm rate (issue 51, part 3): a keyword spotter is judged by what it
misses at one false activation an hour (Picovoice's benchmark, Edge Impulse's guides), so the threshold a user
gets should be the one that makes that rate, not a probability picked by hand.

`false_alarm_curve` runs `deepcat listen`'s detector over a held-out stream in which no keyword is spoken (other
speech, noise, silence) and counts each keyword's false activations per hour at every threshold of a grid, one
class at a time (its smoothing, refractory period and the recording's edges as `listen` applies them).
`thresholds_for` reads a curve: each keyword's lowest threshold at and above which the rate stays at or under the
target. The curve is saved in the run's calibration (model.json, and so the export's metadata); `deepcat listen
--false-alarms-per-hour R` picks from it. A stream of H hours resolves rates down to 1/H an hour: on a short one,
"at most 1 an hour" means "none in it".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.inputs.audio import NOT_KEYWORDS

if TYPE_CHECKING:
    from deepcat.inference.listen import Spotting

__all__ = ["DEFAULT_PER_HOUR", "GRID", "false_alarm_curve", "thresholds_for"]

DEFAULT_PER_HOUR = 1.0  # the rate keyword spotters are compared at
GRID = tuple(round(0.3 + 0.01 * i, 2) for i in range(71))  # 0.30, 0.31, ..., 1.00


def _smoothed(probabilities: np.ndarray, smooth: int) -> np.ndarray:
    """(T, C) -> each window's average with the `smooth - 1` before it (fewer at the start), as `Spotter` takes
    it (a running sum would round a peak of 0.6 to 0.59999...: not over a threshold of 0.6 as `listen` finds it)."""
    average = np.empty_like(probabilities)
    for i in range(min(smooth - 1, len(probabilities))):
        average[i] = probabilities[: i + 1].mean(axis=0)
    if len(probabilities) >= smooth:
        windows = np.lib.stride_tricks.sliding_window_view(probabilities, smooth, axis=0)  # (T - s + 1, C, s)
        average[smooth - 1 :] = windows.mean(axis=-1)
    return average


def _activations(over: np.ndarray, gap: float) -> int:
    """Reports from the windows at indices `over` (rising), each at least `gap` windows after the last report."""
    count, last = 0, -np.inf
    for i in over:
        if i - last >= gap - 1e-9:
            count, last = count + 1, i
    return count


def false_alarm_curve(
    probabilities: np.ndarray,
    classes: Sequence[str],
    spotting: Spotting,
    *,
    hours: float,
    grid: Sequence[float] = GRID,
) -> dict[str, list[list[float]]]:
    """Each keyword's false activations per hour at each threshold of `grid`, over a stream that holds no keyword.

    Args:
        probabilities: (T, C) each window's class probabilities over the stream, as `listen` scores them
            (`window_probabilities`: zero where the model answers `unknown`).
        classes: the model's classes; `_silence_` and `_unknown_` have no curve (they are never reported).
        spotting: the detector's hop, smoothing and refractory period (its thresholds are what is chosen here).
        hours: the stream's length.
        grid: the thresholds tried, rising.

    Returns:
        {keyword: [[threshold, false activations per hour], ...]}, as `Calibration.false_alarms` holds it.

    >>> false_alarm_curve(probs, ["six", "nine"], Spotting(), hours=1.0)["six"][:2]
    [[0.3, 14.0], [0.31, 12.0]]
    """
    if hours <= 0:
        raise DeepcatError(f"the negative stream's length must be above 0 hours; received hours={hours}")
    average = _smoothed(np.asarray(probabilities, np.float64), spotting.smooth)
    inside = average[1:-1]  # the recording's first and last windows report nothing (`listen`)
    gap = spotting.refractory_ms / spotting.hop_ms
    curves = {}
    for column, name in enumerate(classes):
        if name in NOT_KEYWORDS:
            continue
        curves[name] = [[float(t), _activations(np.flatnonzero(inside[:, column] >= t), gap) / hours] for t in grid]
    return curves


def thresholds_for(curves: dict[str, list[list[float]]], per_hour: float = DEFAULT_PER_HOUR) -> dict[str, float]:
    """Each keyword's lowest threshold from which its false activations stay at or under `per_hour` (the highest
    threshold tried where none does).

    >>> thresholds_for({"six": [[0.5, 3.0], [0.6, 1.0], [0.7, 0.0]]}, 1.0)
    {'six': 0.6}
    """
    if per_hour < 0:
        raise DeepcatError(f"a false-alarm rate is at least 0 an hour; received {per_hour}")
    chosen = {}
    for name, curve in curves.items():
        pick = curve[-1][0]
        for threshold, rate in reversed(curve):  # from the top down, while the rate stays under the target
            if rate > per_hour:
                break
            pick = threshold
        chosen[name] = float(pick)
    return chosen
