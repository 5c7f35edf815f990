"""The run folder: what a training run leaves behind, and how it is read back.

    runs/NAME/
      config.yaml          resolved configuration (every `auto` filled in)
      model.json           architecture, class names, preprocessing, calibration (deepcat.run_meta.RunMeta)
      decision.json        written by its owner, optional: per-class thresholds and costs (deepcat.run_meta.Decision)
      best.safetensors     weights with the best val accuracy (ties: the lower val loss)
      last.safetensors     weights after the last finished epoch
      state.pt             optimiser, step, RNG-free counters: what `--resume` needs
      metrics.csv          one row per epoch
      split.csv            which image went to train / val / test
      curves.png, confusion_matrix.png, test_metrics.json
      calibration.json, reliability.png   temperature, ECE before/after, rejection threshold
      audit.json           data audit findings (see data/audit.py)
      report.html          everything above in one page
      export/model.onnx    what `deepcat export` writes (one file per format), each beside its FILE.check.json

Nothing heavy loads with this module (torch, the data sources and the model zoo load inside the functions that
need them), so the server and `deepcat predict MODEL.onnx` can read a run's layout without torch.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from deepcat.errors import DeepcatError
from deepcat.run_meta import MODEL_JSON_VERSION, Calibration, Decision, RunMeta

if TYPE_CHECKING:
    import torch.nn as nn

    from deepcat.data.sources import DataSplits

__all__ = [
    "EXPORTED_SUFFIXES",
    "MODEL_JSON_VERSION",
    "DECISION_FILE",
    "ONNX_FILE",
    "ONNX_INT8_FILE",
    "atomic_write",
    "check_file",
    "export_file",
    "load_model",
    "model_source",
    "openvino_ir",
    "load_state",
    "read_config",
    "read_decision",
    "read_model_json",
    "run_splits",
    "save_state",
    "save_weights",
    "update_model_json",
    "write_model_json",
    "write_split",
]

ONNX_FILE = "model.onnx"  # RUN/export/: the fp32 ONNX file, and the int8 one `deepcat serve` prefers once checked
ONNX_INT8_FILE = "model.int8.onnx"
DECISION_FILE = "decision.json"  # RUN/: the owner's thresholds and costs, carried into every export


# Exported files `deepcat.load`, `predict` and `serve` run: ONNX Runtime for .onnx/.ort, OpenVINO for .xml (or the
# .bin of weights beside it), ExecuTorch for .pte, LiteRT for .tflite (deepcat.inference.runtimes)
EXPORTED_SUFFIXES = (".onnx", ".ort", ".xml", ".bin", ".pte", ".tflite")


def model_source(path: str | Path) -> str | None:
    """What `path` names as a model: "run" (a run folder), "exported" (an exported file, by its suffix), or None.

    An OpenVINO IR is two files; its `.bin` (the weights) names the model too, but only beside its `.xml`: a lone
    `.bin` is refused rather than read as an input, so `predict X.bin imgs/` never answers with another model.

    Args:
        path: what the user named first, e.g. `runs/pets`, `model.onnx` or `model.openvino.bin`.

    Returns:
        "run", "exported" or None (not a model: an input).

    >>> model_source("runs/pets/export/model.openvino.bin")  # with model.openvino.xml beside it
    'exported'
    """
    if (Path(path) / "model.json").is_file():
        return "run"
    if str(path).endswith(".bin"):
        openvino_ir(Path(path))
    return "exported" if str(path).endswith(EXPORTED_SUFFIXES) else None


def openvino_ir(path: Path) -> Path:
    """The `.xml` of an OpenVINO IR named by either of its files: `X.bin` -> `X.xml`, which must exist beside it."""
    if path.suffix != ".bin":
        return path
    xml = path.with_suffix(".xml")
    if not xml.is_file():
        raise DeepcatError(
            f"{path} is an OpenVINO IR's weights, but its graph {xml} is not beside it; "
            f"pass the .xml, or export again with `deepcat export RUN --format openvino`"
        )
    return xml


def export_file(run_dir: str | Path, filename: str) -> Path:
    """Where `deepcat export` writes `filename` for a run."""
    return Path(run_dir) / "export" / filename


def check_file(path: Path) -> Path:
    """Where `deepcat export` records how the file at `path` compared with PyTorch."""
    return path.parent / f"{path.name}.check.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: a reader (or a resumed run) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp))
    tmp.replace(path)


def write_model_json(run_dir: Path, meta: RunMeta) -> None:
    """model.json: the architecture, class names and the input kind's preprocessing, stamped with its format
    version (deepcat.run_meta)."""
    atomic_write(Path(run_dir) / "model.json", meta.to_json().encode())


def update_model_json(run_dir: Path, *, calibration: Calibration) -> RunMeta:
    """Save the calibration fitted after training in model.json, leaving the rest as the run wrote it.

    Args:
        run_dir: the run folder.
        calibration: what `deepcat.evaluation.calibration.fit` returned.

    Returns:
        The run's metadata as now saved.
    """
    meta = dataclasses.replace(read_model_json(run_dir), calibration=calibration)
    write_model_json(run_dir, meta)
    return meta


def read_model_json(run_dir: Path) -> RunMeta:
    """A run's model.json, typed and brought up to this deepcat's format (deepcat.run_meta.migrate_run).

    Args:
        run_dir: the run folder; one without model.json, or whose model.json a newer deepcat wrote, is a
            DeepcatError that says what to do.

    Returns:
        The run's metadata.
    """
    path = Path(run_dir) / "model.json"
    if not path.is_file():
        raise DeepcatError(
            f"{run_dir} is not a deepcat run folder (no model.json). "
            f"Pass the folder that `deepcat train` printed, e.g. runs/smallcnn-digits-..."
        )
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise DeepcatError(f"{path} is not JSON ({e}); the run folder is damaged: train the run again") from None
    if not isinstance(raw, dict):
        raise DeepcatError(f"{path} is not a JSON object; the run folder is damaged: train the run again")
    return RunMeta.from_dict(raw, where=str(path))


def read_decision(run_dir: Path, classes: Sequence[str]) -> Decision | None:
    """The run's decision.json, checked against its `classes` (None: the run has none, so the likeliest class)."""
    path = Path(run_dir) / DECISION_FILE
    return Decision.read(path, classes=classes) if path.is_file() else None


def read_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DeepcatError(f"{run_dir} is not a deepcat run folder (no config.yaml)")
    return cast("dict[str, Any]", yaml.safe_load(path.read_text()))


def run_splits(run_dir: Path, data: str | None = None) -> DataSplits:
    """The run's own data split as in training; or `data` (another DATA argument) used whole, unsplit."""
    from deepcat.data.resolve import resolve_data, splits_of

    cfg = read_config(run_dir)
    if data is None:
        return splits_of(cfg)
    return resolve_data(
        data,
        val_fraction=0.0,
        seed=cfg["seed"],
        data_root=cfg.get("data_root"),
        modality=read_model_json(run_dir).preprocess.kind,
    )


def load_model(run_dir: str | Path, *, which: str = "best") -> tuple[nn.Module, RunMeta]:
    """Rebuild the architecture from model.json and load `which` (best|last) weights, in eval mode."""
    from safetensors.torch import load_model as load_into

    from deepcat.models.create import build

    run_dir = Path(run_dir)
    meta = read_model_json(run_dir)
    model = build(meta.model, image_size=meta.image_size)
    weights = run_dir / f"{which}.safetensors"
    if not weights.is_file():
        raise DeepcatError(f"{weights} is missing; the run may have stopped before its first epoch ended")
    load_into(model, str(weights))
    return model.eval(), meta


def write_split(run_dir: Path, splits: DataSplits) -> None:
    """One row per image: its path (or, for built-in sets, its index in the set's file), label and split."""
    with (run_dir / "split.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item", "label", "split"])
        for name in ("train", "val", "test"):
            samples = splits.split(name)
            if samples is None:
                continue
            items = samples.ids if samples.in_memory else samples.items
            for item, label in zip(items, samples.labels):
                writer.writerow([item, splits.classes[label], name])


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = run_dir / "state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run_dir / "state.pt")  # atomic: an interrupt never leaves a half-written state


def load_state(run_dir: Path) -> dict[str, Any]:
    import torch

    path = run_dir / "state.pt"
    if not path.is_file():
        raise DeepcatError(f"cannot resume {run_dir}: no state.pt (no epoch finished yet). Start it again instead")
    return cast("dict[str, Any]", torch.load(path, map_location="cpu", weights_only=False))
