"""Which ONNX file `deepcat serve` runs, exported on first use in a child process: the server itself never
imports torch, so it holds the ONNX model's memory and no more (about 0.9 GB less)."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

from deepcat.errors import DeepcatError
from deepcat.exporting.formats import FORMATS

CAT_DOG_NEITHER = Path.home() / ".cache" / "deepcat" / "cat-dog-neither.onnx"


def serving_model(run: str | Path | None) -> Path:
    """The ONNX file to serve for a run (RUN/export/model.onnx), or the cached pretrained cat / dog / neither
    model; either is exported first when missing."""
    path = CAT_DOG_NEITHER if run is None else Path(run) / "export" / FORMATS.get("onnx").filename
    if not path.is_file():
        if run is None:
            print(f"exporting the pretrained cat / dog / neither model to {path} (once)", file=sys.stderr)
        child = multiprocessing.get_context("spawn").Process(target=_export, args=(run, path))
        child.start()
        child.join()
        if child.exitcode != 0 or not path.is_file():
            raise DeepcatError(f"exporting {run or 'the pretrained model'} to {path} failed (the reason is "
                               f"printed above); run `deepcat export {run or ''}` to see it alone")
    return path


def _export(run: str | Path | None, path: Path) -> None:
    from deepcat.exporting.export import export_pretrained_cat_dog, export_run

    if run is None:
        export_pretrained_cat_dog(path)
    else:
        export_run(Path(run), format="onnx", output=None, calibration_images=None, check_images=500, progress=True)
