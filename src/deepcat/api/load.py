"""`deepcat.load`: a classifier object from a run, an exported file or the pretrained model (no CLI form)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from deepcat.run_folder import model_source

__all__ = ["load"]

if TYPE_CHECKING:
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inference.torch_model import Classifier


def load(
    model: str | Path | None = None, *, which: Literal["best", "last"] = "best"
) -> Classifier | ExportedClassifier:
    """A classifier to call `.predict` on: a run folder (PyTorch), an exported .onnx/.ort/.xml (or its .bin)/.pte/
    .tflite file (ONNX Runtime, OpenVINO, ExecuTorch or LiteRT; only ExecuTorch imports torch), or with neither the
    pretrained cat / dog / neither model.

    Args:
        model: a run folder, an .onnx/.ort/.xml (or its .bin)/.pte/.tflite file, or None.
        which: a run's "best" or "last" weights.

    Returns:
        A `Classifier` (PyTorch) or an `ExportedClassifier` (ONNX Runtime, OpenVINO or ExecuTorch), each with
        `.predict`.

    Examples:
        >>> deepcat.load("runs/pets").predict("cat.jpg").label
        >>> deepcat.load("runs/pets/export/model.onnx").predict(["a.jpg", "b.jpg"])
    """
    if model is not None and model_source(model) == "exported":
        from deepcat.inference.exported import load_exported

        return load_exported(model)
    from deepcat.inference.torch_model import load_run, pretrained_cat_dog

    return pretrained_cat_dog() if model is None else load_run(model, which=which)
