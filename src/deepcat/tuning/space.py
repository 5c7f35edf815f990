"""The search space: which training options a search varies, and over what.

A space is a mapping from a `TrainConfig` field to either a list of choices or a range
`{low, high, log}` (integers for integer fields). The default space depends on the model that `auto`
picks for the data; a YAML file replaces it, checked like the training config (an unknown key names the
nearest valid one; a wrong type or range is one line). Options given on the command line are fixed,
not searched.

    lr: {low: 0.01, high: 0.5, log: true}
    augment: [light, strong]
    epochs: {low: 2, high: 8}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcat.config import check_keys, check_value, value_type
from deepcat.errors import DeepcatError

__all__ = [
    "FIXED",
    "MODEL_SPACES",
    "PRETRAINED_SPACE",
    "Range",
    "Space",
    "default_space",
    "describe",
    "read_space",
    "suggest",
    "without_fixed",
]


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False


Space = dict[str, "Range | list[Any]"]

FIXED = (
    "data",
    "classes",
    "output",
    "name",
    "device",
    "data_root",
    "seed",
    "workers",
    "audit",
    "log",
    "tracking_uri",
    "weights",
)  # where the run lives and what it is about: never searched


# Around each `auto` model: what else varies with it. Chosen by the model the recipe picked for the data's kind
# (small images: the small CNN, or a pretrained body with few labels; sound: the DS-CNN; photos: a pretrained
# body), so a search stays on the kind's path.
MODEL_SPACES: dict[str, Space] = {
    # RandAugment ("strong") leaves the whole-batch tensor path for the per-image one: measured on 6,000
    # Fashion-MNIST images, an epoch took 34 s against 8 s, so a time budget buys a quarter of the trials.
    "smallcnn": {"augment": ["none", "light"], "model_width": [16, 24, 32]},
    # Sound: "light" (noise, shifts, SpecAugment) or "strong" (also speeds, rooms, lines, microphones, the
    # default); the DS-CNN's width runs from below DS-CNN-S (64) towards DS-CNN-M (172).
    "dscnn": {"augment": ["light", "strong"], "model_width": [32, 64, 96]},
}
PRETRAINED_SPACE: Space = {
    "freeze_epochs": Range(0, 2),
    "unfreeze": [0.25, 0.5, 1.0],
    "model": ["tf_efficientnet_lite0", "mobilenetv3_large_100", "resnet18"],
}


def default_space(*, model: str, pretrained: bool, epochs: int, lr: float) -> Space:
    """Around the `auto` recipe (`model`, as `resolve_auto` chose it for the data): lr on a log scale around its
    value, regularisation and augmentation, batch size, epochs up to the budget's; for deepcat's own CNNs (small
    images, sound) their width, for pretrained models the freeze, how much to unfreeze and a few bodies."""
    space: Space = {
        "lr": Range(lr / 5, lr * 3, log=True),
        "weight_decay": Range(1e-5, 5e-3, log=True),
        "label_smoothing": Range(0.0, 0.2),
        "augment": ["none", "light", "strong"],
        "mixup": [0.0, 0.2],
        "batch_size": [32, 64, 128],
        "epochs": Range(max(1, epochs // 3), epochs),
    }
    return {**space, **(PRETRAINED_SPACE if pretrained else MODEL_SPACES.get(model, {}))}


def read_space(path: str | Path) -> Space:
    """A YAML space file, every key and value checked; errors are one line naming the key and what is expected."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DeepcatError(f"space file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw:
        raise DeepcatError(
            f"{path} must map options to choices or ranges, e.g. `lr: {{low: 0.01, high: 0.5, log: "
            f"true}}`; received {raw!r}"
        )
    check_keys(raw, str(path))
    return {key: _entry(key, value, path) for key, value in raw.items()}


def _entry(key: str, value: Any, path: Path) -> Range | list[Any]:
    where = f"{path} ({key})"
    if key in FIXED:
        raise DeepcatError(f"{key} in {path} cannot be searched: it says what the run is about, not how it trains")
    if isinstance(value, list):
        if not value:
            raise DeepcatError(f"{key} in {path} has no choices; list at least one")
        return [check_value(key, choice, where) for choice in value]
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or not {"low", "high"} <= set(value):
            raise DeepcatError(f"{key} in {path} must be a list of choices or {{low, high, log}}; received {value!r}")
        kind = value_type(key)
        if kind not in (int, float):
            raise DeepcatError(f"{key} in {path} is a {kind.__name__}: give a list of choices, not a range")
        low, high = (check_value(key, value[k], where) for k in ("low", "high"))
        log = value.get("log", False)
        if not isinstance(log, bool) or not low < high or (log and low <= 0):
            raise DeepcatError(f"{key} in {path} needs low < high (and low > 0 with log: true); received {value!r}")
        return Range(low, high, log)
    raise DeepcatError(f"{key} in {path} must be a list of choices or {{low, high, log}}; received {value!r}")


def without_fixed(space: Space, fixed: dict[str, Any]) -> Space:
    """The space minus the options given explicitly (they are fixed, not searched)."""
    return {k: v for k, v in space.items() if k not in fixed}


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """One point of the space from an Optuna trial."""
    values: dict[str, Any] = {}
    for name, entry in space.items():
        if isinstance(entry, list):
            values[name] = trial.suggest_categorical(name, entry)
        elif value_type(name) is int:
            values[name] = trial.suggest_int(name, int(entry.low), int(entry.high), log=entry.log)
        else:
            values[name] = trial.suggest_float(name, float(entry.low), float(entry.high), log=entry.log)
    return values


def describe(space: Space) -> dict[str, Any]:
    """The space as plain data (written beside the study, shown in the report)."""
    return {k: (v if isinstance(v, list) else dataclasses.asdict(v)) for k, v in space.items()}
