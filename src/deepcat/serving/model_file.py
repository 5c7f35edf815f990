"""Which ONNX file `deepcat serve` runs, exported on first use in a child process: the server itself never
imports torch, so it holds the ONNX model's memory and no more (about 0.9 GB less).

A run's int8 file is served when it passed its export check (`deepcat export RUN --format onnx-int8`): on 2
CPU cores int8 EfficientNet-Lite0 answered 1.3-1.6x the requests/s of fp32 (`benchmarks/serve.py`; decoding
the JPEG costs as much as int8 inference)."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

from deepcat.errors import DeepcatError
from deepcat.run_folder import ONNX_FILE, ONNX_INT8_FILE, check_file, export_file

__all__ = ["CAT_DOG_NEITHER", "PRECISIONS", "passed_check", "serving_model"]

CAT_DOG_NEITHER = Path.home() / ".cache" / "deepcat" / "cat-dog-neither.onnx"
PRECISIONS = ("auto", "fp32", "int8")


def passed_check(path: Path) -> bool:
    """`path` passed the check `deepcat export` ran on it: its `.check.json` says so, for this very file."""
    checked = check_file(path)
    if not (path.is_file() and checked.is_file()):
        return False
    found = json.loads(checked.read_text())
    return bool(found["check"]["passed"]) and found["bytes"] == path.stat().st_size


def serving_model(run: str | Path | None, precision: str = "auto", device: str = "cpu") -> Path:
    """The ONNX file to serve for a run, or the cached pretrained cat / dog / neither model (fp32: it has no
    check images offline). `precision`: auto (on a CPU, the run's int8 when it passed its check; else fp32), fp32
    or int8: on a GPU, ONNX Runtime runs int8 operators its CUDA provider lacks on the CPU. The fp32 file is
    exported first when missing; an int8 one never is (quantising takes minutes)."""
    if precision not in PRECISIONS:
        raise DeepcatError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if run is None and precision == "int8":
        raise DeepcatError(
            "the pretrained cat / dog / neither model is served in fp32: it has no check images "
            "offline to prove an int8 file with"
        )
    int8 = None if run is None else export_file(run, ONNX_INT8_FILE)
    if device == "cuda" and precision == "auto":
        precision = "fp32"
    if int8 is not None and precision != "fp32" and passed_check(int8):
        return int8
    if precision == "int8":
        raise DeepcatError(
            f"{run} has no int8 export that passed its check: run `deepcat export {run} "
            f"--format onnx-int8` (it refuses a file that disagrees with PyTorch), or serve fp32"
        )
    path = CAT_DOG_NEITHER if run is None else export_file(run, ONNX_FILE)
    if not path.is_file():
        if run is None:
            print(f"exporting the pretrained cat / dog / neither model to {path} (once)", file=sys.stderr)
        child = multiprocessing.get_context("spawn").Process(target=_export, args=(run, path))
        child.start()
        child.join()
        if child.exitcode != 0 or not path.is_file():
            raise DeepcatError(
                f"exporting {run or 'the pretrained model'} to {path} failed (the reason is "
                f"printed above); run `deepcat export {run or ''}` to see it alone"
            )
    if int8 is not None and precision == "auto" and int8.is_file():
        print(f"serving fp32: {int8} did not pass its check (see {check_file(int8)})", file=sys.stderr)
    elif int8 is not None and precision == "auto":
        print(
            f"serving fp32; `deepcat export {run} --format onnx-int8` writes an int8 file, served instead when "
            "it passes its check (about 1.5x the requests/s on a CPU)",
            file=sys.stderr,
        )
    return path


def _export(run: str | Path | None, path: Path) -> None:
    from deepcat.exporting.export import export_pretrained_cat_dog, export_run

    if run is None:
        export_pretrained_cat_dog(path)
    else:
        export_run(Path(run), format="onnx", output=None, calibration_images=None, check_images=500, progress=True)
