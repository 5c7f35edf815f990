"""`export_run`: write a run's deployable model file and prove it matches PyTorch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepcat.exporting.check import ExportCheck, compare, run_images
from deepcat.exporting.formats import FORMATS, CalibrationImages, QuantInputs, torch_logits
from deepcat.exporting.graph import Deployable, metadata
from deepcat.exporting.int8_choice import Qat, write_chosen_int8
from deepcat.run_folder import check_file
from deepcat.run_meta import Calibration, ExportMeta

__all__ = ["QAT_IMAGES", "SEARCH_IMAGES", "ExportResult", "export_checked", "export_pretrained_cat_dog", "export_run"]

SEARCH_IMAGES = 200  # validation inputs the int8 float-segment search judges on (at most half of them; never checked)
QAT_IMAGES = 512  # training inputs quantisation-aware fine-tuning learns on (at 224 px, 300 MB)


@dataclass
class ExportResult:
    """What `deepcat.export` wrote and how well it matches PyTorch; `to_dict()` is the `*.check.json` file."""

    path: str
    format: str
    bytes: int
    check: ExportCheck
    precision: dict[str, Any] | None = None  # int8: segments kept in float, held-out agreement
    ms_batch1: float | None = None  # median ms for one image here (ONNX formats)

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "format": self.format, "bytes": self.bytes, "check": self.check.to_dict()}
        if self.precision is not None:
            out["precision"] = self.precision
        if self.ms_batch1 is not None:
            out["ms_batch1"] = self.ms_batch1
        return out


def _ms_per_image(session: Any, one: np.ndarray, repeats: int = 20) -> float:
    """Median milliseconds for one image through an ONNX Runtime classifier here (shown in the report)."""
    import statistics
    import time

    session.probabilities(one)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.probabilities(one)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def export_run(
    run_dir: Path,
    *,
    format: str,
    output: str | Path | None,
    calibration_images: int | None,
    check_images: int,
    progress: bool,
    qat: Qat = "never",
) -> ExportResult:
    """Export a run's best weights and check the file against PyTorch on the run's validation images (int8: which
    file, by `int8_choice`)."""
    from deepcat.inference.unknown_score import load_score
    from deepcat.run_folder import load_model, read_decision

    chosen = FORMATS.get(format)
    model, run_meta = load_model(run_dir)
    pre = run_meta.preprocess
    digest = hashlib.sha256((run_dir / "best.safetensors").read_bytes()).hexdigest()[:12]
    cal = run_meta.calibration_or_default
    meta = metadata(
        name=run_dir.name,
        classes=list(run_meta.classes),
        pre=pre,
        version=digest,
        source=run_meta.model.name,
        calibration=run_meta.calibration,
        decision=read_decision(run_dir, run_meta.classes),
    )
    int8 = chosen.precision == "int8"
    # int8: the validation split is shared between the float-segment search and the check, never an input in both
    val, val_labels = run_images(run_dir, meta, split="val", limit=check_images + (SEARCH_IMAGES if int8 else 0))
    searched = min(SEARCH_IMAGES, len(val) // 2) if int8 else 0
    checks, labels = val[searched:][:check_images], val_labels[searched:][:check_images]
    if calibration_images is None:  # ONNX Runtime's percentile calibration holds every activation of every
        # image in memory: 256 images at 224 px took 17 GB with EfficientNet-Lite0; 64 take 5 GB
        calibration_images = int(min(256, max(32, 64 * (224 / getattr(pre, "input_size", 64)) ** 2)))  # sound: 256
    out = Path(output) if output else run_dir / "export" / chosen.filename
    net = Deployable(
        model.float(),
        pre,
        temperature=cal.temperature,
        unknown=load_score(cal.score, run_dir),
    )
    count = calibration_images

    def quant_inputs() -> QuantInputs:
        """Training inputs to calibrate on, and the validation inputs (with labels) the search judges on."""
        images = run_images(run_dir, meta, split="train", limit=count, seed=1)[0]
        return QuantInputs(images, val[:searched], val_labels[:searched])

    def tune_inputs() -> np.ndarray:
        return run_images(run_dir, meta, split="train", limit=QAT_IMAGES, seed=2)[0]

    return export_checked(
        net,
        meta,
        format=format,
        out=out,
        checks=checks,
        labels=labels,
        calibration=quant_inputs,
        calibration_fit=run_meta.calibration,
        quiet=not progress,
        qat=qat,
        tune_inputs=tune_inputs,
    )


def export_checked(
    net: Deployable,
    meta: ExportMeta,
    *,
    format: str,
    out: Path,
    checks: np.ndarray,
    labels: np.ndarray | None,
    calibration: CalibrationImages,
    calibration_fit: Calibration | None = None,
    quiet: bool = False,
    qat: Qat = "never",
    tune_inputs: Callable[[], np.ndarray] = lambda: np.empty(0),
) -> ExportResult:
    """Write `net` as `format` to `out`, then compare it with PyTorch on `checks` (raises when out of bounds):
    `labels` their classes (None: no labels, int8 judged by agreement), `calibration_fit` the model's fitted
    calibration (int8 must keep its trust features). int8: `qat` and `tune_inputs()` (the training inputs
    quantisation-aware fine-tuning learns on) as `int8_choice.write_chosen_int8` takes them."""
    chosen = FORMATS.get(format)
    out.parent.mkdir(parents=True, exist_ok=True)
    checked = check_file(out)
    checked.unlink(missing_ok=True)  # a file that fails its check must not keep an earlier file's pass
    reference = torch_logits(net, checks)
    example = torch.from_numpy(checks[:2])
    if chosen.precision == "int8":
        written = write_chosen_int8(
            chosen,
            net,
            meta,
            out,
            example,
            calibration,
            quiet,
            qat=qat,
            tune_inputs=tune_inputs,
            calibration_fit=calibration_fit,
        )
    else:
        written = chosen.write(net, meta, out, example, calibration, quiet)
    scores = torch_logits(net, checks, output=1), written.scores(checks)
    report = compare(
        reference, written.logits(checks), labels, kind=chosen.precision, scores=scores, calibration=calibration_fit
    )
    result = ExportResult(
        str(out),
        format,
        out.stat().st_size,
        report,
        written.precision,
        _ms_per_image(written.session, checks[:1]) if written.session is not None else None,
    )
    checked.write_text(json.dumps(result.to_dict(), indent=2))
    return result


def export_pretrained_cat_dog(path: Path) -> Path:
    """The no-training cat / dog / neither classifier as ONNX (ImageNet EfficientNet-Lite0, summed classes)."""
    from deepcat.exporting.onnx_formats import export_onnx
    from deepcat.inference.imagenet import cat_dog_neither
    from deepcat.inference.torch_model import pretrained_cat_dog

    clf = pretrained_cat_dog()
    meta = metadata(
        name=clf.name, classes=clf.classes, pre=clf.preprocess, version="imagenet", source="tf_efficientnet_lite0"
    )
    net = Deployable(clf.model, clf.preprocess, reduce=cat_dog_neither)
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_onnx(net, clf.kind.example(clf.preprocess, 2), path, meta)
