"""The run folder: what a training run leaves behind, and how it is read back.

    runs/NAME/
      config.yaml          resolved configuration (every `auto` filled in)
      model.json           architecture, class names, preprocessing: all a consumer needs
      best.safetensors     weights with the best val accuracy
      last.safetensors     weights after the last finished epoch
      state.pt             optimiser, step, RNG-free counters: what `--resume` needs
      metrics.csv          one row per epoch
      split.csv            which image went to train / val / test
      curves.png, confusion_matrix.png, test_metrics.json
      calibration.json, reliability.png   temperature, ECE before/after, rejection threshold
      audit.json           data audit findings (see data/audit.py)
      report.html          everything above in one page
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from deepcat.data.sources import DataSplits, resolve_data
from deepcat.inputs.image import Preprocess
from deepcat.errors import DeepcatError
from deepcat.models.create import ModelSpec, build


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


def write_model_json(run_dir: Path, *, spec: ModelSpec, classes: list[str], preprocess: Preprocess,
                     extra: dict[str, Any] | None = None) -> None:
    meta = {"model": asdict(spec), "classes": classes, "input_kind": preprocess.kind, "preprocess": preprocess.to_dict(),
            **(extra or {})}
    (run_dir / "model.json").write_text(json.dumps(meta, indent=2))


def update_model_json(run_dir: Path, **values: Any) -> None:
    """Add or replace top-level keys of model.json (e.g. the calibration fitted after training)."""
    meta = read_model_json(run_dir)
    meta.update(values)
    (run_dir / "model.json").write_text(json.dumps(meta, indent=2))


def read_model_json(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "model.json"
    if not path.is_file():
        raise DeepcatError(f"{run_dir} is not a deepcat run folder (no model.json). "
                           f"Pass the folder that `deepcat train` printed, e.g. runs/smallcnn-digits-...")
    return json.loads(path.read_text())


def read_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DeepcatError(f"{run_dir} is not a deepcat run folder (no config.yaml)")
    return yaml.safe_load(path.read_text())


def run_splits(run_dir: Path, data: str | None = None) -> DataSplits:
    """The run's own data split as in training; or `data` (another DATA argument) used whole, unsplit."""
    cfg = read_config(run_dir)
    if data is None:
        return resolve_data(cfg["data"], val_fraction=cfg["val_fraction"], seed=cfg["seed"],
                            data_root=cfg.get("data_root"), classes=cfg.get("classes"),
                            modality=cfg.get("modality", "auto"))
    return resolve_data(data, val_fraction=0.0, seed=cfg["seed"], data_root=cfg.get("data_root"),
                        modality=read_model_json(run_dir).get("input_kind", "image"))


def load_model(run_dir: str | Path, *, which: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the architecture from model.json and load `which` (best|last) weights, in eval mode."""
    from safetensors.torch import load_model as load_into

    run_dir = Path(run_dir)
    meta = read_model_json(run_dir)
    spec = ModelSpec(**meta["model"])
    model = build(spec, image_size=meta["preprocess"].get("input_size", 0))  # sound: no image size
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
    tmp = run_dir / "state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run_dir / "state.pt")  # atomic: an interrupt never leaves a half-written state


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "state.pt"
    if not path.is_file():
        raise DeepcatError(f"cannot resume {run_dir}: no state.pt (no epoch finished yet). Start it again instead")
    return torch.load(path, map_location="cpu", weights_only=False)
