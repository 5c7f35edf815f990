"""Every export checks itself: the exported model against PyTorch on the run's own validation images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.inputs import BadInput
from deepcat.run_meta import ExportMeta

__all__ = [
    "FP32_MAX_ABS_DIFF",
    "FP32_SCORE_MAX_DIFF",
    "INT8_MAX_ACCURACY_DROP",
    "INT8_MIN_AGREEMENT",
    "ExportCheck",
    "compare",
    "run_images",
]

# Bounds a failed check is measured against (the deploy issue's acceptance bounds).
FP32_MAX_ABS_DIFF = 1e-4
# The `unknown` score of an fp32 file: max |diff| over the largest |score| (at least 1). Scores spread over tens;
# ONNX Runtime agreed to 5e-5 on a trained model's, while LiteRT's converter once turned -70 into 466.
FP32_SCORE_MAX_DIFF = 1e-3
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_ACCURACY_DROP = 0.01


def run_images(
    run_dir: Path, meta: ExportMeta, *, split: str, limit: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` inputs of the run's `split` (falling back to val, test, train) as the model's raw input
    (images: (N, 3, H, W) pixels), decoded by the run's input kind."""
    from deepcat.run_folder import run_splits

    splits = run_splits(run_dir)
    order = [split] + [s for s in ("val", "test", "train") if s != split]
    samples = next(part for name in order if (part := splits.split(name)) is not None)
    rng = np.random.default_rng(seed)
    index = rng.permutation(len(samples))[:limit]
    kind = meta.kind
    batch, labels = [], []
    for i in index:
        try:
            decoded = samples.decode(i, kind)
        except BadInput:
            continue
        batch.append(kind.to_model_input(decoded, meta.preprocess))
        labels.append(int(samples.labels[i]))
    if not batch:
        raise DeepcatError(f"no readable inputs in {run_dir}'s data to check the export with")
    return np.stack(batch), np.asarray(labels)


@dataclass
class ExportCheck:
    """An exported file against PyTorch on the same images."""

    images: int
    max_abs_diff: float  # of probabilities at temperature 1 (softmax of the logits)
    top1_agreement: float
    accuracy_pytorch: float
    accuracy_exported: float
    passed: bool
    score_max_abs_diff: float | None = None  # of the `unknown` score (None: not compared)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    reference: np.ndarray,
    exported: np.ndarray,
    labels: np.ndarray,
    *,
    kind: str,
    scores: tuple[np.ndarray, np.ndarray] | None = None,
) -> ExportCheck:
    """Max |diff| of probabilities at temperature 1, top-1 agreement and both accuracies, from the logits of
    PyTorch and of the file, and with `scores` (PyTorch's and the file's) the `unknown` score's max |diff|; raises
    when out of bounds. At temperature 1, not the calibrated one: a sharp temperature rounds probabilities to 0 and
    1, where any export would match. The score is bound in fp32 only: an int8 body moves the features it reads."""
    from deepcat.inference.calibrated import softmax

    ref_top, exp_top = reference.argmax(1), exported.argmax(1)
    diff = np.abs(softmax(reference.astype(np.float64)) - softmax(exported.astype(np.float64))).max()
    report = ExportCheck(
        images=int(len(labels)),
        max_abs_diff=float(diff),
        top1_agreement=float((ref_top == exp_top).mean()),
        accuracy_pytorch=float((ref_top == labels).mean()),
        accuracy_exported=float((exp_top == labels).mean()),
        passed=False,
    )
    score_diff, score_bound = 0.0, 0.0
    if scores is not None:
        expected, got = (np.asarray(s, np.float64) for s in scores)
        score_diff = report.score_max_abs_diff = float(np.abs(expected - got).max())
        score_bound = FP32_SCORE_MAX_DIFF * max(1.0, float(np.abs(expected).max()))
    if kind == "int8":
        ok = (
            report.top1_agreement >= INT8_MIN_AGREEMENT
            and report.accuracy_pytorch - report.accuracy_exported <= INT8_MAX_ACCURACY_DROP
        )
        bound = f"top-1 agreement >= {INT8_MIN_AGREEMENT:.0%} and accuracy within {INT8_MAX_ACCURACY_DROP:.0%}"
    else:
        ok = report.max_abs_diff <= FP32_MAX_ABS_DIFF and score_diff <= score_bound
        bound = f"max |diff| of probabilities <= {FP32_MAX_ABS_DIFF}"
        if scores is not None:
            bound += f", of the unknown score <= {score_bound:.3g}"
    report.passed = bool(ok)
    if not ok:
        raise DeepcatError(
            f"the {kind} export disagrees with PyTorch beyond its bound ({bound}): {report.to_dict()}. "
            f"The file is kept for inspection; do not deploy it"
        )
    return report
