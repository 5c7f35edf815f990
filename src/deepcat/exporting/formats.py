"""Export formats by name (`FORMATS`): each writes a `Deployable` to a file and returns a way to run that file,
so `export_checked` can compare it with PyTorch. A new format is one `FORMATS.add(name, ExportFormat(...))`.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from deepcat.registry import Registry
from deepcat.run_folder import ONNX_FILE, ONNX_INT8_FILE
from deepcat.run_meta import ExportMeta

if TYPE_CHECKING:  # torch loads when a format is written, so the CLI can list the formats at once
    import torch

    from deepcat.exporting.graph import Deployable

__all__ = [
    "FORMATS",
    "CalibrationImages",
    "ExportFormat",
    "QuantInputs",
    "Written",
    "opened",
    "torch_logits",
    "write_executorch",
    "write_executorch_int8",
    "write_int8",
    "write_litert",
    "write_litert_int8",
    "write_onnx",
    "write_openvino",
    "write_openvino_int8",
    "write_ort",
    "read_torchscript_metadata",
    "write_torchscript",
]


@dataclass
class QuantInputs:
    """What int8 quantisation reads: inputs to calibrate on (training inputs), and the float-segment search's
    inputs with their labels (validation inputs the export check does not use; labels None where there are none)
    and the fp32 model's answers there, which the file must keep (None: the network written gives them; after
    quantisation-aware fine-tuning, the model before it does). `every_layer`: float nothing, judge all the same
    (whether post-training int8 alone keeps the answers, before fine-tuning is tried)."""

    calibration: np.ndarray
    search: np.ndarray
    search_labels: np.ndarray | None = None
    reference: np.ndarray | None = None
    every_layer: bool = False


CalibrationImages = Callable[[], QuantInputs]  # called only by the int8 formats, which need them


@dataclass
class Written:
    """An exported file and how to run it: the raw input (images: (N, 3, H, W) pixels) -> (N, K) logits, and
    (N,) `unknown` scores."""

    logits: Callable[[np.ndarray], np.ndarray]
    scores: Callable[[np.ndarray], np.ndarray]
    session: Any = None  # the ONNX Runtime classifier, timed for the report
    precision: dict[str, Any] | None = None  # int8: which segments stayed float
    extra: dict[str, Any] = field(default_factory=dict)


# (network, metadata, out file, example input, calibration images, quiet) -> the written file
Writer = Callable[["Deployable", ExportMeta, Path, "torch.Tensor", CalibrationImages, bool], Written]


@dataclass(frozen=True)
class ExportFormat:
    filename: str  # default file name in RUN/export/
    precision: str  # "fp32" or "int8": which check bound applies
    write: Writer
    # the deepcat metadata read back from a written file; None: the runtime deepcat opens its suffix with reads it
    # (`deepcat.inference.runtimes.RUNTIMES`)
    read_metadata: Callable[[Path], ExportMeta] | None = None


FORMATS: Registry[ExportFormat] = Registry("export format")


def torch_logits(net: Any, batch: np.ndarray, output: int = 2) -> np.ndarray:
    """The network's logits (or its `output`-th output: 1, the `unknown` score) for `batch`, in chunks of 64."""
    import torch

    with torch.no_grad():
        return torch.cat(
            [net(torch.from_numpy(chunk))[output] for chunk in np.array_split(batch, max(1, len(batch) // 64))]
        ).numpy()


def opened(path: Path) -> Written:
    """The file at `path`, opened by its runtime, as a `Written`."""
    from deepcat.inference.exported import load_exported

    session = load_exported(path)
    return Written(session.logits, lambda batch: np.asarray(session.infer(batch)[1]), session)


def write_onnx(
    net: Deployable, meta: ExportMeta, out: Path, example: torch.Tensor, calibration: CalibrationImages, quiet: bool
) -> Written:
    from deepcat.exporting.onnx_formats import export_onnx

    if not quiet:
        print(f"exporting ONNX to {out}", file=sys.stderr)
    export_onnx(net, example, out, meta)
    return opened(out)


def write_int8(
    net: Deployable, meta: ExportMeta, out: Path, example: torch.Tensor, calibration: CalibrationImages, quiet: bool
) -> Written:
    """fp32 ONNX beside it first, then static int8 with mixed precision chosen on held-out images."""
    from deepcat.exporting import mixed_precision
    from deepcat.exporting.onnx_formats import quantize_int8

    fp32 = out.parent / FORMATS.get("onnx").filename
    write_onnx(net, meta, fp32, example, calibration, quiet)
    inputs = calibration()
    if not quiet:
        print(f"quantising to int8, calibrated on {len(inputs.calibration)} training images", file=sys.stderr)
    precision = quantize_int8(
        fp32,
        out,
        inputs.calibration,
        meta,
        held_out=inputs.search,
        held_out_labels=inputs.search_labels,
        reference=inputs.reference,
        every_layer=inputs.every_layer,
    )
    if not quiet and precision["float_segments"]:
        note = mixed_precision.floated_note(
            precision["float_segments"], precision["segments"], precision["search_agreement"], len(inputs.search)
        )
        print(note, file=sys.stderr)
    written = opened(out)
    written.precision = precision
    return written


def write_ort(
    net: Deployable, meta: ExportMeta, out: Path, example: torch.Tensor, calibration: CalibrationImages, quiet: bool
) -> Written:
    """The int8 model in ONNX Runtime Mobile's format, for Android."""
    from deepcat.exporting.onnx_formats import to_ort_format

    int8 = out.parent / FORMATS.get("onnx-int8").filename
    precision = write_int8(net, meta, int8, example, calibration, quiet).precision
    to_ort_format(int8, out)
    written = opened(out)
    written.precision = precision
    return written


def write_torchscript(
    net: Deployable, meta: ExportMeta, out: Path, example: torch.Tensor, calibration: CalibrationImages, quiet: bool
) -> Written:
    import torch

    with warnings.catch_warnings():  # TorchScript is deprecated upstream; still the format asked for
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():  # trace the inference graph
            traced = torch.jit.trace(net, example)
        torch.jit.save(traced, str(out), _extra_files={"deepcat.json": meta.to_json()})
        loaded = torch.jit.load(str(out))
    return Written(lambda batch: torch_logits(loaded, batch), lambda batch: torch_logits(loaded, batch, output=1))


def read_torchscript_metadata(path: Path) -> ExportMeta:
    """The deepcat metadata a TorchScript file carries as its extra file `deepcat.json`."""
    import torch

    extra = {"deepcat.json": ""}
    with warnings.catch_warnings():  # TorchScript is deprecated upstream; still the format asked for
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), _extra_files=extra)
    return ExportMeta.from_json(extra["deepcat.json"], where=f"{path}'s deepcat.json")


def write_openvino(
    net: Deployable, meta: ExportMeta, out: Path, example: torch.Tensor, calibration: CalibrationImages, quiet: bool
) -> Written:
    """OpenVINO IR (.xml + .bin), converted from the fp32 ONNX file written beside it."""
    from deepcat.exporting import openvino_files

    onnx_file = out.parent / FORMATS.get("onnx").filename
    write_onnx(net, meta, onnx_file, example, calibration, quiet)
    if not quiet:
        print(f"converting to OpenVINO IR: {out}", file=sys.stderr)
    openvino_files.write_openvino(onnx_file, out, meta)
    return opened(out)


def write_openvino_int8(
    net: Deployable, meta: ExportMeta, out: Path, example: torch.Tensor, calibration: CalibrationImages, quiet: bool
) -> Written:
    """The fp32 IR beside it first, then int8 by NNCF's post-training quantisation."""
    from deepcat.exporting import openvino_files

    fp32 = out.parent / FORMATS.get("openvino").filename
    write_openvino(net, meta, fp32, example, calibration, quiet)
    inputs = calibration()
    if not quiet:
        print(f"quantising to int8 with NNCF, calibrated on {len(inputs.calibration)} training images", file=sys.stderr)
    precision = openvino_files.quantize_openvino(
        fp32,
        out,
        inputs.calibration,
        inputs.search,
        inputs.search_labels,
        reference=inputs.reference,
        every_layer=inputs.every_layer,
    )
    written = opened(out)
    written.precision = precision
    return written


def pt2e_writers(toolchain: str, convert: str, quantizer: str) -> tuple[Writer, Writer]:
    """The fp32 and int8 writers of a toolchain that converts PyTorch 2 export's graph (ExecuTorch, LiteRT).
    `convert` names the function `(net, example, out, meta, images=None, float_segments=0)` that writes the
    file, quantising when given calibration images (its first `float_segments` float); it is imported only when a
    file is written (the toolchains are optional extras)."""

    def program() -> Callable[..., Path]:
        module, _, function = convert.rpartition(".")
        return cast("Callable[..., Path]", getattr(importlib.import_module(module), function))

    def write_fp32(
        net: Deployable,
        meta: ExportMeta,
        out: Path,
        example: torch.Tensor,
        calibration: CalibrationImages,
        quiet: bool,
    ) -> Written:
        if not quiet:
            print(f"converting to {toolchain}: {out}", file=sys.stderr)
        program()(net, example, out, meta)
        return opened(out)

    def write_int8(
        net: Deployable,
        meta: ExportMeta,
        out: Path,
        example: torch.Tensor,
        calibration: CalibrationImages,
        quiet: bool,
    ) -> Written:
        """int8 with leading segments float until it keeps fp32's answers on the search's inputs by the check's
        rule (`mixed_precision`), as in the ONNX int8 file; each try written, and run by the toolchain's own
        runtime."""
        from deepcat.exporting import mixed_precision

        inputs = calibration()
        images, held_out = inputs.calibration, inputs.search
        if not quiet:
            print(f"quantising to int8 for {toolchain}, calibrated on {len(images)} training images", file=sys.stderr)
        reference = inputs.reference
        if reference is None and len(held_out):
            reference = torch_logits(net, held_out, output=0).argmax(1)
        segments = mixed_precision.SEGMENTS
        last: list[Written] = []  # the latest try's file: each try is written over the one before

        def write(floated: int) -> Callable[[np.ndarray], np.ndarray]:
            program()(net, example, out, meta, images, floated)
            last[:] = [opened(out)]
            session = last[0].session
            return lambda pixels: session.probabilities(pixels).argmax(1)

        searched = mixed_precision.fewest_float_segments(
            write, held_out, reference, 0 if inputs.every_layer else segments, inputs.search_labels
        )
        [written] = last
        if not quiet and searched.floated:
            note = mixed_precision.floated_note(searched.floated, segments, searched.agreement, len(held_out))
            print(note, file=sys.stderr)
        written.precision = {
            "quantizer": quantizer,
            "calibration_images": len(images),
            "float_segments": searched.floated,
            "segments": segments,
            "search_images": len(held_out),
            "search_agreement": searched.agreement,
            "search_kept": searched.kept,
        }
        return written

    return write_fp32, write_int8


write_executorch, write_executorch_int8 = pt2e_writers(
    "ExecuTorch (XNNPACK)",
    "deepcat.exporting.executorch_files.write_executorch",
    "XNNPACKQuantizer (per-channel, symmetric)",
)
write_litert, write_litert_int8 = pt2e_writers(
    "LiteRT", "deepcat.exporting.litert_files.write_litert", "litert-torch PT2EQuantizer (per-channel, symmetric)"
)


FORMATS.add("onnx", ExportFormat(ONNX_FILE, "fp32", write_onnx))
FORMATS.add("onnx-int8", ExportFormat(ONNX_INT8_FILE, "int8", write_int8))
FORMATS.add("ort", ExportFormat("model.int8.ort", "int8", write_ort))
FORMATS.add("torchscript", ExportFormat("model.torchscript.pt", "fp32", write_torchscript, read_torchscript_metadata))
FORMATS.add("openvino", ExportFormat("model.openvino.xml", "fp32", write_openvino))
FORMATS.add("openvino-int8", ExportFormat("model.int8.openvino.xml", "int8", write_openvino_int8))
FORMATS.add("executorch", ExportFormat("model.pte", "fp32", write_executorch))
FORMATS.add("executorch-int8", ExportFormat("model.int8.pte", "int8", write_executorch_int8))
FORMATS.add("litert", ExportFormat("model.tflite", "fp32", write_litert))
FORMATS.add("litert-int8", ExportFormat("model.int8.tflite", "int8", write_litert_int8))
