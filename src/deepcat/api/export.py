"""`deepcat export`: write a deployable model file and check it against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

__all__ = ["export", "export_formats"]

if TYPE_CHECKING:
    from deepcat.exporting.export import ExportResult


def export_formats() -> list[str]:
    """The names `export(format=...)` accepts.

    Returns:
        The registered export formats' names.
    """
    from deepcat.exporting.formats import FORMATS

    return FORMATS.names()


def export(
    run: str | Path,
    *,
    format: str = "onnx",
    output: str | Path | None = None,
    calibration_images: int | None = None,
    check_images: int = 500,
    qat: Literal["auto", "always", "never"] = "never",
    progress: bool = True,
) -> ExportResult:
    """Write a deployable model (ONNX, OpenVINO, ExecuTorch or LiteRT, fp32 or int8; .ort; TorchScript) and check it
    against PyTorch on the run's validation images; a check out of bounds raises DeepcatError. The run's report lists
    the file.

    Args:
        run: a run folder.
        format: the format to write, one of `export_formats()`.
        output: the file to write (default: RUN/export/<the format's file>).
        calibration_images: int8: training images to calibrate on (default: by the model's size).
        check_images: validation images the check compares on.
        qat: int8: "auto" tries quantisation-aware fine-tuning when post-training int8 of every layer misses the
            check's rule, "always" first, "never" (the default: on a fine-tuned Lite0 it did not yet win, and cost 10-15
            minutes on 2 cores; see the export guide); float layers are the last resort.
        progress: show progress bars.

    Returns:
        An `ExportResult`: the file, its size, the check's figures and, for int8, how its weights were made and
            what stayed float.

    Examples:
        >>> deepcat.export("runs/pets", format="onnx-int8").path
    """
    from deepcat.evaluation.finish import after_export
    from deepcat.exporting.export import export_run

    result = export_run(
        Path(run),
        format=format,
        output=output,
        calibration_images=calibration_images,
        check_images=check_images,
        progress=progress,
        qat=qat,
    )
    after_export(run)
    return result
