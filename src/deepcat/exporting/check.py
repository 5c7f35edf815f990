"""Every export checks itself: the exported model against PyTorch on the run's own validation images.

fp32 files must match PyTorch to rounding. int8 files are judged as the field judges them, by what users care
about, not by per-input agreement alone:

- with labels, MLPerf Inference's rule: accuracy at least 99% of fp32's (the check file gives the ratio's 95%
  bootstrap interval beside it; on a split with under 100 right answers, where 1% is less than one input, all but
  one of fp32's right answers kept), with top-1 agreement at least 97% so that int8 cannot trade one set of right
  answers for another; and the trust features hold: the calibration error rises by at most 2 points, the share
  answered `unknown` moves by at most 2 points, the 90% prediction sets' coverage falls by at most 2 points (each
  tolerance at least two inputs' worth on a small split). A model that is often wrong disagrees with fp32 on
  inputs near its decision boundaries whatever its file's accuracy, so agreement alone refuses int8 files as
  accurate as fp32's;
- without labels (zero-shot ImageNet), top-1 agreement with fp32 at least 99%.

The check file records which rule applied and every figure it was judged by.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.inputs import BadInput
from deepcat.run_meta import Calibration, ExportMeta

__all__ = [
    "FP32_MAX_ABS_DIFF",
    "FP32_SCORE_MAX_DIFF",
    "INT8_MAX_COVERAGE_DROP",
    "INT8_MAX_ECE_RISE",
    "INT8_MAX_UNKNOWN_SHIFT",
    "INT8_MIN_ACCURACY_RATIO",
    "INT8_MIN_AGREEMENT",
    "INT8_UNLABELLED_MIN_AGREEMENT",
    "ExportCheck",
    "compare",
    "int8_keeps",
    "judge",
    "run_images",
]

# Bounds a failed check is measured against (the deploy issue's acceptance bounds).
FP32_MAX_ABS_DIFF = 1e-4
# The `unknown` score of an fp32 file: max |diff| over the largest |score| (at least 1). Scores spread over tens;
# ONNX Runtime agreed to 5e-5 on a trained model's, while LiteRT's converter once turned -70 into 466.
FP32_SCORE_MAX_DIFF = 1e-3
INT8_MIN_ACCURACY_RATIO = 0.99  # MLPerf Inference: int8 accuracy at least 99% of fp32's
INT8_MIN_AGREEMENT = 0.97  # with labels, beside the accuracy
INT8_UNLABELLED_MIN_AGREEMENT = 0.99  # without labels, agreement is the test
INT8_MAX_ECE_RISE = 0.02
INT8_MAX_UNKNOWN_SHIFT = 0.02
INT8_MAX_COVERAGE_DROP = 0.02
CHECKED_COVERAGE = 0.90  # the prediction sets' coverage compared
BOOTSTRAP_RESAMPLES = 2000


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
    accuracy_pytorch: float | None  # None: no labels
    accuracy_exported: float | None
    passed: bool
    score_max_abs_diff: float | None = None  # of the `unknown` score (None: not compared)
    rule: str = ""  # which bound applied: "fp32", "int8: accuracy (MLPerf)" or "int8: agreement (no labels)"
    accuracy_ratio: float | None = None  # int8 with labels: its accuracy over fp32's...
    accuracy_ratio_interval: list[float] | None = None  # ...and the 95% bootstrap interval of that ratio
    trust: dict[str, float | None] = field(default_factory=dict)  # int8: ECE, unknown share, coverage, both files
    failed: list[str] = field(default_factory=list)  # what missed its bound

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def int8_keeps(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray | None, margin: float = 0.0) -> bool:
    """Whether int8 top-1 answers keep fp32's by the rule above (accuracy and agreement; the trust features need
    the whole outputs, see `compare`), each bound raised by `margin` (the float-segment search asks a little more
    than the check, so that the check on other inputs is not a coin toss)."""
    agreement = float((reference == exported).mean())
    if labels is None:
        return agreement >= INT8_UNLABELLED_MIN_AGREEMENT + margin
    return agreement >= INT8_MIN_AGREEMENT + margin and _keeps_accuracy(reference, exported, labels, margin)


def _keeps_accuracy(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray, margin: float = 0.0) -> bool:
    """int8 right on at least 99% as many inputs as fp32 (MLPerf), or, on a split too small to resolve 1% (under
    100 right answers), on all but one of them (without a margin to spare)."""
    right, kept = float((reference == labels).sum()), float((exported == labels).sum())
    return kept >= right * (INT8_MIN_ACCURACY_RATIO + margin) or (margin <= 0 and kept >= right - 1)


def _ratio(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray) -> float:
    right = float((reference == labels).sum())
    return float((exported == labels).sum()) / right if right else 1.0


def _ratio_interval(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray) -> list[float]:
    """95% interval of the accuracy ratio, by the bootstrap over inputs (both files' answers resampled together).
    An input counts only by which of the four cells it is in (fp32 right or wrong, int8 right or wrong), so a
    resample is a multinomial draw over those cells: no index array, whatever the number of inputs."""
    fp32_right, int8_right = reference == labels, exported == labels
    cells = [np.mean(fp32_right & int8_right), np.mean(fp32_right & ~int8_right), np.mean(~fp32_right & int8_right)]
    counts = np.random.default_rng(0).multinomial(len(labels), [*cells, max(0.0, 1 - sum(cells))], BOOTSTRAP_RESAMPLES)
    right_ref, right_exp = counts[:, 0] + counts[:, 1], counts[:, 0] + counts[:, 2]
    ratios = np.where(right_ref > 0, right_exp / np.maximum(right_ref, 1), 1.0)
    return [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]


def _trust(
    logits: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    scores: tuple[np.ndarray, np.ndarray] | None,
    cal: Calibration,
) -> tuple[dict[str, float | None], list[str]]:
    """The trust features of both files on the check's inputs, and which moved past their tolerance."""
    from deepcat.inference.calibrated import expected_calibration_error, neg_log_probs, prediction_sets, softmax

    slack = 2 / len(labels)  # two inputs' worth: on a small split one input moves a share by more than 2 points
    trust: dict[str, float | None] = {}
    failed = []
    ece = [expected_calibration_error(softmax(x.astype(np.float64), cal.temperature), labels) for x in logits]
    trust["ece_pytorch"], trust["ece_exported"] = ece
    if ece[1] - ece[0] > max(INT8_MAX_ECE_RISE, slack):
        failed.append(f"calibration error {ece[1]:.3f} against fp32's {ece[0]:.3f}")
    if scores is not None and cal.threshold is not None:
        unknown = [float(cal.rejects(np.asarray(s)).mean()) for s in scores]
        trust["unknown_pytorch"], trust["unknown_exported"] = unknown
        if abs(unknown[1] - unknown[0]) > max(INT8_MAX_UNKNOWN_SHIFT, slack):
            failed.append(f"answered unknown on {unknown[1]:.1%} of inputs against fp32's {unknown[0]:.1%}")
    if cal.conformal:
        limit = cal.set_limit(CHECKED_COVERAGE)
        covered = [
            float(prediction_sets(neg_log_probs(x, cal.temperature), limit)[np.arange(len(labels)), labels].mean())
            for x in logits
        ]
        trust["coverage_pytorch"], trust["coverage_exported"] = covered
        if covered[0] - covered[1] > max(INT8_MAX_COVERAGE_DROP, slack):
            failed.append(
                f"{CHECKED_COVERAGE:.0%} sets held the label on {covered[1]:.1%} against fp32's {covered[0]:.1%}"
            )
    return trust, failed


def compare(
    reference: np.ndarray,
    exported: np.ndarray,
    labels: np.ndarray | None,
    *,
    kind: str,
    scores: tuple[np.ndarray, np.ndarray] | None = None,
    calibration: Calibration | None = None,
) -> ExportCheck:
    """`judge`, raising when out of bounds."""
    report = judge(reference, exported, labels, kind=kind, scores=scores, calibration=calibration)
    if report.failed:
        raise DeepcatError(
            f"the {kind} export disagrees with PyTorch beyond its bounds ({report.rule}: "
            f"{'; '.join(report.failed)}): {report.to_dict()}. The file is kept for inspection; do not deploy it"
        )
    return report


def judge(
    reference: np.ndarray,
    exported: np.ndarray,
    labels: np.ndarray | None,
    *,
    kind: str,
    scores: tuple[np.ndarray, np.ndarray] | None = None,
    calibration: Calibration | None = None,
) -> ExportCheck:
    """Judge an exported file's logits against PyTorch's on the same inputs (`labels`: their classes, None when
    there are none) by `kind`'s rule (see the module's docstring); `scores` are both files' `unknown` scores and
    `calibration` the model's, for the trust features. `failed` lists what is out of bounds.

    fp32: max |diff| of probabilities at temperature 1, not the calibrated one (a sharp temperature rounds
    probabilities to 0 and 1, where any export would match), and with `scores` the `unknown` score's max |diff|.
    The score is bound in fp32 only: an int8 body moves the features it reads, so int8 is judged by the share it
    answers `unknown` instead."""
    from deepcat.inference.calibrated import softmax

    ref_top, exp_top = reference.argmax(1), exported.argmax(1)
    diff = np.abs(softmax(reference.astype(np.float64)) - softmax(exported.astype(np.float64))).max()
    report = ExportCheck(
        images=len(ref_top),
        max_abs_diff=float(diff),
        top1_agreement=float((ref_top == exp_top).mean()),
        accuracy_pytorch=None if labels is None else float((ref_top == labels).mean()),
        accuracy_exported=None if labels is None else float((exp_top == labels).mean()),
        passed=False,
    )
    if kind != "int8":
        report.rule = "fp32"
        if report.max_abs_diff > FP32_MAX_ABS_DIFF:
            report.failed.append(f"max |diff| of probabilities {report.max_abs_diff:.3g} > {FP32_MAX_ABS_DIFF}")
        if scores is not None:
            expected, got = (np.asarray(s, np.float64) for s in scores)
            report.score_max_abs_diff = float(np.abs(expected - got).max())
            bound = FP32_SCORE_MAX_DIFF * max(1.0, float(np.abs(expected).max()))
            if report.score_max_abs_diff > bound:
                report.failed.append(f"max |diff| of the unknown score {report.score_max_abs_diff:.3g} > {bound:.3g}")
    elif labels is None:
        report.rule = "int8: agreement (no labels)"
        if report.top1_agreement < INT8_UNLABELLED_MIN_AGREEMENT:
            report.failed.append(f"top-1 agreement {report.top1_agreement:.1%} < {INT8_UNLABELLED_MIN_AGREEMENT:.0%}")
    else:
        report.rule = "int8: accuracy (MLPerf)"
        report.accuracy_ratio = _ratio(ref_top, exp_top, labels)
        report.accuracy_ratio_interval = _ratio_interval(ref_top, exp_top, labels)
        if not _keeps_accuracy(ref_top, exp_top, labels):
            low, high = report.accuracy_ratio_interval
            report.failed.append(
                f"accuracy {report.accuracy_ratio:.1%} of fp32's (95% interval {low:.1%}-{high:.1%}) "
                f"< {INT8_MIN_ACCURACY_RATIO:.0%}"
            )
        if report.top1_agreement < INT8_MIN_AGREEMENT:
            report.failed.append(f"top-1 agreement {report.top1_agreement:.1%} < {INT8_MIN_AGREEMENT:.0%}")
        if calibration is not None:
            report.trust, failed = _trust((reference, exported), labels, scores, calibration)
            report.failed += failed
    report.passed = not report.failed
    return report
