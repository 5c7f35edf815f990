"""DATA -> `DataSplits`: the one entry point (a built-in name, a folder of class folders, a CSV), and the splits a
training configuration names, made the same way by every command that reads a run's data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepcat.data import builtin, shards
from deepcat.data.sources import DataSplits, from_csv, from_folder, only_classes, with_native_size
from deepcat.errors import DeepcatError
from deepcat.inputs import InputKind, input_kind

__all__ = ["resolve_data", "splits_of"]


def resolve_data(
    data: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    data_root: str | None = None,
    classes: str | None = None,
    modality: str = "auto",
) -> DataSplits:
    """The one entry point: DATA string -> DataSplits, or a DeepcatError saying what to pass.
    `classes`: comma-separated names to keep (the others are left out); `modality`: the input kind of a
    folder or CSV (auto: the kind most of its files' suffixes belong to)."""
    kind = None if modality in (None, "auto") else input_kind(modality)
    splits = _resolve(data, val_fraction=val_fraction, seed=seed, data_root=data_root, kind=kind)
    return only_classes(splits, [c.strip() for c in classes.split(",") if c.strip()]) if classes else splits


def _resolve(data: str, *, val_fraction: float, seed: int, data_root: str | None, kind: InputKind | None) -> DataSplits:
    name, _, arg = data.partition(":")
    if name in builtin.BUILTINS:
        return builtin.BUILTINS[name](arg or None, val_fraction=val_fraction, seed=seed, data_root=data_root)
    if shards.is_shards(data):
        return shards.from_shards(data, val_fraction=val_fraction, seed=seed)
    path = Path(data).expanduser()
    if not path.exists():
        raise DeepcatError(
            f"data not found: {data}. Pass a folder of class subfolders, a CSV of path,label, "
            f"shards written by `deepcat shard` (a folder or URL), or a built-in name: {', '.join(builtin.BUILTINS)}"
        )
    if path.is_dir():
        return with_native_size(from_folder(path, val_fraction=val_fraction, seed=seed, kind=kind))
    if path.suffix.lower() == ".csv":
        return with_native_size(from_csv(path, val_fraction=val_fraction, seed=seed, kind=kind))
    raise DeepcatError(f"{data} is a file but not a .csv; pass a folder of class subfolders or a CSV of path,label")


def splits_of(cfg: Mapping[str, Any]) -> DataSplits:
    """The splits a configuration (a `TrainConfig.to_dict()` or a run's config.yaml) names: its data, validation
    share, seed, data root, classes and modality, as `deepcat train` made them."""
    return resolve_data(
        cfg["data"],
        val_fraction=cfg.get("val_fraction", 0.2),
        seed=cfg.get("seed", 0),
        data_root=cfg.get("data_root"),
        classes=cfg.get("classes"),
        modality=cfg.get("modality") or "auto",
    )
