"""Mixed precision for the int8 files, chosen by measurement, one search for every toolchain (ONNX Runtime,
ExecuTorch, LiteRT): when the int8 file misses the export check's rule (`check.int8_keeps`) on the search's inputs,
whole runs of layers go back to float from the input side, where rounding error has the most layers left to grow
through. The search's inputs are validation inputs the check never sees, so the check does not judge a file on what
chose it (`deepcat export` splits the validation split between them; the check file says how many each had).

Measured on a fine-tuned EfficientNet-Lite0 (1,000 held-out images), each block quantised alone: the first cost 9.4
points of agreement, the second 2.0, the third 1.0, later ones 0.4 or less.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepcat.exporting.check import int8_keeps

__all__ = ["SEARCH_MARGIN", "SEGMENTS", "Searched", "fewest_float_segments", "floated_note"]

SEGMENTS = 8  # runs of equal numbers of weighted layers, floated from the input side
SEARCH_MARGIN = 0.005  # the search asks this much more than the check's bounds, so the check is not a coin toss

Top1 = Callable[[np.ndarray], np.ndarray]  # images -> the written file's top-1 class of each


@dataclass
class Searched:
    """What the search chose: segments kept float, the agreement with fp32 reached on its inputs (None: no inputs),
    and whether the file keeps fp32's answers by the check's rule there."""

    floated: int
    agreement: float | None
    kept: bool


def fewest_float_segments(
    write: Callable[[int], Top1],
    held_out: np.ndarray | None,
    reference: np.ndarray | None,
    segments: int,
    labels: np.ndarray | None = None,
) -> Searched:
    """Write the int8 file with its first 0, 1, ... `segments` segments in float (`write(k)`, which returns how the
    written file answers) until its top-1 answers on `held_out` keep fp32's (`reference`) by the check's rule, with
    SEARCH_MARGIN to spare (with `labels`: accuracy and agreement; without: agreement). `segments` 0: every layer
    int8, judged. Without reference answers nothing is floated or judged."""
    for floated in range(segments + 1):
        top1 = write(floated)
        if reference is None or held_out is None or not len(held_out):
            return Searched(floated, None, kept=True)
        answers = top1(held_out)
        agreement = float((answers == reference).mean())
        if int8_keeps(reference, answers, labels, margin=SEARCH_MARGIN):
            return Searched(floated, agreement, kept=True)
    return Searched(floated, agreement, kept=False)


def floated_note(floated: int, segments: int, agreement: float | None, held_out: int) -> str:
    """What the search chose, for the export's progress output."""
    return (
        f"kept the first {floated} of {segments} segments in float to keep fp32's answers ({agreement or 0:.1%} "
        f"agreement) on {held_out} validation inputs the check does not use"
    )
