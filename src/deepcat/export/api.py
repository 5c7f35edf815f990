"""`export(run, format=...)`: write a deployable model file and prove it matches PyTorch."""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepcat.data.transforms import Preprocess
from deepcat.errors import DeepcatError
from deepcat.export.check import compare, run_images
from deepcat.export.graph import Deployable, metadata

HELD_OUT_IMAGES = 200  # training images (not calibration ones) int8 must agree on before the check
FORMATS = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "ort": "model.int8.ort",
           "torchscript": "model.torchscript.pt"}


def _torch_probs(net: Deployable, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([net(torch.from_numpy(chunk))[0]
                          for chunk in np.array_split(batch, max(1, len(batch) // 64))]).numpy()


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


def export(run: str | Path, *, format: str = "onnx", output: str | Path | None = None,
           calibration_images: int | None = None, check_images: int = 500, quiet: bool = False) -> dict[str, Any]:
    """Export a run's best weights and check the file against PyTorch on the run's validation images.

    Returns {"path", "format", "bytes", "check": {max_abs_diff, top1_agreement, accuracy_*}}.
    A check out of bounds raises DeepcatError (fp32: 1e-4; int8: 99% agreement, accuracy within 1 point).

    >>> deepcat.export("runs/pets", format="onnx-int8")["path"]
    """
    from deepcat.runs import load_model

    if format not in FORMATS:
        raise DeepcatError(f"format must be one of {', '.join(FORMATS)}; received {format!r}")
    run_dir = Path(run)
    model, run_meta = load_model(run_dir)
    pre = Preprocess.from_dict(run_meta["preprocess"])
    digest = hashlib.sha256((run_dir / "best.safetensors").read_bytes()).hexdigest()[:12]
    cal = run_meta.get("calibration")
    meta = metadata(name=run_dir.name, classes=run_meta["classes"], pre=pre, version=digest,
                    source=run_meta["model"]["name"], calibration=cal)
    checks, labels = run_images(run_dir, meta, split="val", limit=check_images)
    if calibration_images is None:  # ONNX Runtime's percentile calibration holds every activation of every
        # image in memory: 256 images at 224 px took 17 GB with EfficientNet-Lite0; 64 take 5 GB
        calibration_images = int(min(256, max(32, 64 * (224 / pre.input_size) ** 2)))
    out = Path(output) if output else run_dir / "export" / FORMATS[format]
    net = Deployable(model.float(), pre, temperature=(cal or {}).get("temperature", 1.0))

    def training_images() -> tuple[np.ndarray, np.ndarray]:
        """Calibration images and, disjoint from them, held-out images for choosing what stays float."""
        images = run_images(run_dir, meta, split="train", limit=calibration_images + HELD_OUT_IMAGES, seed=1)[0]
        calibrate = max(1, min(calibration_images, len(images) // 2))
        return images[:calibrate], images[calibrate:]

    result = export_checked(net, meta, format=format, out=out, checks=checks, labels=labels,
                            calibration=training_images, quiet=quiet)
    from deepcat.report import write_report

    write_report(run_dir)  # its export section lists this file's size and check
    return result


def export_checked(net: Deployable, meta: dict[str, Any], *, format: str, out: Path, checks: np.ndarray,
                   labels: np.ndarray, calibration: Callable[[], tuple[np.ndarray, np.ndarray]],
                   quiet: bool = False) -> dict[str, Any]:
    """Write `net` as `format` to `out`, then compare it with PyTorch on `checks` (raises when out of bounds)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    reference = _torch_probs(net, checks)
    example = torch.from_numpy(checks[:2])
    if format == "torchscript":
        with warnings.catch_warnings():  # TorchScript is deprecated upstream; still the format asked for
            warnings.simplefilter("ignore", FutureWarning)
            with torch.no_grad():  # trace the inference graph
                traced = torch.jit.trace(net, example)
            torch.jit.save(traced, str(out), _extra_files={"deepcat.json": json.dumps(meta)})
            exported = _torch_probs(torch.jit.load(str(out)), checks)
        kind = "fp32"
    else:
        from deepcat.export.onnx_formats import export_onnx, quantize_int8, to_ort_format

        fp32 = out if format == "onnx" else out.parent / FORMATS["onnx"]
        if not quiet:
            print(f"exporting ONNX to {fp32}", file=sys.stderr)
        export_onnx(net, example, fp32, meta)
        kind = "fp32"
        if format in ("onnx-int8", "ort"):
            int8 = out if format == "onnx-int8" else out.parent / FORMATS["onnx-int8"]
            images, held_out = calibration()
            if not quiet:
                print(f"quantising to int8, calibrated on {len(images)} training images", file=sys.stderr)
            precision = quantize_int8(fp32, int8, images, meta, held_out=held_out)
            if not quiet and precision["float_segments"]:
                print(f"kept the first {precision['float_segments']} of {precision['segments']} segments in float "
                      f"to reach {precision['held_out_agreement']:.1%} agreement on {len(held_out)} held-out "
                      "training images", file=sys.stderr)
            kind = "int8"
            if format == "ort":
                to_ort_format(int8, out)
        from deepcat.runtime import load_onnx

        session = load_onnx(out)
        exported = session.probabilities(checks)
    report = compare(reference, exported, labels, kind=kind)
    result = {"path": str(out), "format": format, "bytes": out.stat().st_size, "check": report}
    if kind == "int8":
        result["precision"] = precision
    if format != "torchscript":
        result["ms_batch1"] = _ms_per_image(session, checks[:1])
    (out.parent / f"{out.name}.check.json").write_text(json.dumps(result, indent=2))
    return result


def export_pretrained_cat_dog(path: Path) -> Path:
    """The no-training cat / dog / neither classifier as ONNX (ImageNet EfficientNet-Lite0, summed classes)."""
    from deepcat.export.onnx_formats import export_onnx
    from deepcat.imagenet import cat_dog_neither
    from deepcat.predict import pretrained_cat_dog

    clf = pretrained_cat_dog()
    meta = metadata(name=clf.name, classes=clf.classes, pre=clf.preprocess, version="imagenet",
                    source="tf_efficientnet_lite0")
    net = Deployable(clf.model, clf.preprocess, reduce=cat_dog_neither)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = clf.preprocess.input_size
    return export_onnx(net, torch.rand(2, 3, size, size) * 255, path, meta)


def serving_model(run: str | Path | None) -> Path:
    """The ONNX file to serve for a run (exported on first use), or the cached pretrained cat/dog model."""
    if run is None:
        path = Path.home() / ".cache" / "deepcat" / "cat-dog-neither.onnx"
        if not path.is_file():
            print(f"exporting the pretrained cat / dog / neither model to {path} (once)", file=sys.stderr)
            export_pretrained_cat_dog(path)
        return path
    path = Path(run) / "export" / FORMATS["onnx"]
    if not path.is_file():
        export(run, format="onnx")
    return path
