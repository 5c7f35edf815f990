"""Which int8 file an export writes, cheapest first, each judged on the search's inputs (validation inputs the
export check does not use) by the check's rule:

1. post-training int8 of every layer (the fastest file), judged as the check judges: answers and trust features;
2. where it misses, quantisation-aware fine-tuning (`qat`), then every layer of the tuned network post-training
   quantised, judged the same way against the model before it;
3. where that misses too, leading segments of the model left float until int8 keeps its answers (`mixed_precision`):
   the last resort, as float layers cost speed.

`qat`: "auto" (as above), "always" (skip 1), "never" (skip 2: `deepcat export`'s default until the fine-tune wins on
a pretrained model; `benchmarks/qat.py`). The written file's `precision` says which applied.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepcat.exporting.check import judge
from deepcat.exporting.formats import CalibrationImages, ExportFormat, Written, opened, torch_logits
from deepcat.exporting.graph import Deployable
from deepcat.run_meta import Calibration, ExportMeta

__all__ = ["QAT_CHOICES", "Qat", "write_chosen_int8"]

Qat = Literal["auto", "always", "never"]
QAT_CHOICES: tuple[Qat, ...] = ("auto", "always", "never")


def write_chosen_int8(
    chosen: ExportFormat,
    net: Deployable,
    meta: ExportMeta,
    out: Path,
    example: torch.Tensor,
    calibration: CalibrationImages,
    quiet: bool,
    *,
    qat: Qat,
    tune_inputs: Callable[[], np.ndarray],
    calibration_fit: Calibration | None,
) -> Written:
    """Write `net` as the int8 format `chosen` to `out` by the order above; `tune_inputs()`: the raw training inputs
    the fine-tune learns on; `calibration_fit`: the model's fitted calibration (the trust features judged)."""
    from deepcat.exporting.qat import quantisation_aware

    if qat not in QAT_CHOICES:
        raise ValueError(f"qat must be one of {', '.join(QAT_CHOICES)}, not {qat!r}")
    inputs = calibration()
    search = inputs.search
    expected = (torch_logits(net, search), torch_logits(net, search, output=1)) if len(search) else None
    if expected is not None:  # every try keeps the answers of `net`, never of a tuned copy
        inputs = replace(inputs, reference=expected[0].argmax(1))

    def write(network: Deployable, where: Path, every_layer: bool) -> Written:
        written = chosen.write(network, meta, where, example, lambda: replace(inputs, every_layer=every_layer), quiet)
        if every_layer and expected is not None and _kept(written):  # the answers kept: the trust features too?
            scores = (expected[1], written.scores(search))
            judged = judge(expected[0], written.logits(search), inputs.search_labels, kind="int8", scores=scores,
                           calibration=calibration_fit)  # fmt: skip
            if judged.failed:
                written.precision = dict(written.precision or {}) | {"search_kept": False, "missed": judged.failed}
        return written

    if qat == "never":
        return _noted(write(net, out, every_layer=False), "post-training")
    tried: dict[str, Any] = {}
    if qat == "auto":
        first = write(net, out, every_layer=True)
        if _kept(first):
            return _noted(first, "post-training")
        tried["post-training every layer"] = _search(first)
        if not quiet:
            print(f"post-training int8 misses the check's rule on the search's inputs ({_said(first)}): "
                  "quantisation-aware fine-tuning", file=sys.stderr)  # fmt: skip
    try:
        tuned = quantisation_aware(net, tune_inputs(), progress=not quiet)
    except Exception as failed:  # a network the QAT flow cannot capture still gets the float-segment file
        tried["quantisation-aware every layer"] = {"failed": f"{type(failed).__name__}: {failed}"}
        if not quiet:
            print(f"quantisation-aware fine-tuning failed ({failed}): leading segments stay float", file=sys.stderr)
        return _noted(write(net, out, every_layer=False), "post-training", tried)
    # the tuned network's fp32 companions (model.onnx, model.openvino.xml) must not replace the model's own
    with tempfile.TemporaryDirectory(prefix=".qat-", dir=out.parent) as tmp:
        trial = write(tuned.net, Path(tmp) / out.name, every_layer=True)
        tried["quantisation-aware every layer"] = _search(trial) | tuned.summary()
        if _kept(trial):
            for path in _int8_files(Path(tmp), out.name):
                shutil.move(path, out.parent / path.name)
            written = opened(out)
            written.precision = trial.precision
            return _noted(written, "quantisation-aware", tried)
    if not quiet:
        print(f"quantisation-aware int8 misses too ({_said(trial)}): leading segments stay float", file=sys.stderr)
    return _noted(write(net, out, every_layer=False), "post-training", tried)


def _kept(written: Written) -> bool:
    return bool((written.precision or {}).get("search_kept", True))


def _search(written: Written) -> dict[str, Any]:
    precision = written.precision or {}
    keys = ("search_agreement", "search_images", "search_kept", "missed")
    return {key: precision[key] for key in keys if key in precision}


def _said(written: Written) -> str:
    agreement = (written.precision or {}).get("search_agreement")
    return "no inputs" if agreement is None else f"{agreement:.1%} agreement"


def _int8_files(folder: Path, name: str) -> list[Path]:
    """The file `name` written in `folder`, the weights beside it (OpenVINO's .bin) and the int8 files it was made
    from (the `.ort` file's `model.int8.onnx`): not the tuned network's fp32 companions."""
    path = folder / name
    made = {path, path.with_suffix(".bin")} | {part for part in folder.iterdir() if ".int8." in part.name}
    return sorted(part for part in made if part.is_file())


def _noted(written: Written, how: str, tried: dict[str, Any] | None = None) -> Written:
    """`written` with how its weights were made, and what was tried before, in its `precision`."""
    written.precision = dict(written.precision or {}) | {"weights": how}
    if tried:
        written.precision["tried"] = tried
    return written
