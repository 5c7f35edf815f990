"""Training configuration: one typed dataclass, resolved once and saved with the run.

Precedence: dataclass defaults < YAML file (`--config`) < explicit arguments.
Every field's `help` is the documentation the CLI shows, so the Python API and the
CLI stay the same list of options.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

import yaml

from deepcat.errors import DeepcatError, did_you_mean

__all__ = [
    "TrainConfig",
    "TrainOptions",
    "check_keys",
    "check_value",
    "field_names",
    "load_yaml",
    "resolve_config",
    "value_type",
]


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that decides a training run. `auto` values are resolved from the data."""

    data: str = _opt(
        "digits",
        "folder, split folder, CSV of path,label, or built-in: digits, fashion-mnist, "
        "oxford-pets, spoken-digits, speech-commands",
    )
    modality: str = _opt("auto", "kind of input: auto (from the files' suffixes) or a registered kind (image, audio)")
    clip_seconds: float = _opt(1.0, "sound: every clip is padded or cropped to this many seconds")
    classes: str | None = _opt(None, "comma-separated class names to train on (default: all of DATA's classes)")
    model: str = _opt(
        "auto", "timm name (resnet18, efficientnet_b0, ...), googlenet, smallcnn, a layers YAML file, or auto"
    )
    model_width: int | None = _opt(None, "channels of the first stage of deepcat's own CNN (auto: 16)")
    pretrained: bool | None = _opt(None, "start from ImageNet weights (auto: yes for photo models, no for smallcnn)")
    weights: str | None = _opt(None, "local weights file (.pth/.safetensors) to start from")
    from_run: str | None = _opt(
        None,
        "an earlier run folder to continue from, with new images or new classes: its model, weights and input "
        "size; the classes it knew keep what its head learnt",
    )
    quick: bool = _opt(
        False,
        "a first model in seconds: the pretrained backbone kept as it is and a linear head fitted on its "
        "features, cached beside the data (DATA/.deepcat/features) so the next quick run embeds nothing; no epochs",
    )
    epochs: int | None = _opt(None, "passes over the training data (auto: 10 for images, 60 for sound)")
    freeze_epochs: int = _opt(1, "epochs training only the new head before unfreezing (pretrained models)")
    head_from_features: bool = _opt(
        True,
        "frozen epochs train the head on backbone features computed once "
        "(no augmentation, batch norm fixed) instead of running the backbone each",
    )
    unfreeze: float = _opt(
        0.5,
        "share of a pretrained model's layer groups trained after the frozen epochs, from "
        "the head down (1 = all); the earlier layers keep their pretrained weights and run "
        "without gradients (Lite0 on 2 CPU cores: 2.3x faster unfrozen epochs)",
    )
    progressive: float = _opt(
        1.0,
        "progressive resizing of photos: the first unfrozen epoch trains at this share of "
        "the input size, growing to full size by the last epoch (1 = off)",
    )
    batch_size: int | None = _opt(
        None,
        "global batch size, split across processes under torchrun "
        "(auto: a power of 2 from 16 to 128 giving ~32 steps per epoch or more)",
    )
    image_size: int | None = _opt(None, "input size in pixels (auto: the model's, or the data's for small images)")
    lr: float | None = _opt(None, "peak learning rate (auto: 2e-3 AdamW, 0.1 SGD; see `deepcat lr-find`)")
    optimizer: str = _opt(
        "auto", "optimiser by registered name: adamw, sgd, ... (auto: sgd for smallcnn, adamw otherwise)"
    )
    weight_decay: float = _opt(5e-4, "weight decay (decoupled for AdamW)")
    schedule: str = _opt("onecycle", "learning-rate schedule", choices=("onecycle", "cosine"))
    warmup_epochs: float = _opt(0.3, "warm-up length for the cosine schedule, in epochs")
    loss: str = _opt("cross_entropy", "loss function by registered name: cross_entropy, focal, ...")
    label_smoothing: float = _opt(0.1, "label smoothing for cross-entropy")
    class_weights: bool = _opt(False, "weight the loss by inverse class frequency (imbalanced data)")
    augment: str = _opt(
        "auto",
        "augmentation preset (auto: strong for sound, light for images)",
        choices=("auto", "none", "light", "strong"),
    )
    hflip: bool | None = _opt(None, "random horizontal flips (auto: off for digits, on otherwise)")
    mixup: float = _opt(0.0, "mixup alpha (0 = off)")
    cutmix: float = _opt(0.0, "cutmix alpha (0 = off)")
    amp: str = _opt("auto", "mixed precision", choices=("auto", "bf16", "fp16", "off"))
    channels_last: bool = _opt(True, "channels-last memory format for convolutions")
    ema: float = _opt(0.0, "decay of an exponential moving average of weights (0 = off, e.g. 0.999)")
    patience: int = _opt(0, "stop after this many epochs without new best weights (val accuracy, then loss; 0 = off)")
    accumulate: int = _opt(1, "gradient accumulation steps")
    val_fraction: float = _opt(0.2, "share of the training data held out for validation when no val split exists")
    workers: int | None = _opt(None, "data-loading processes (auto: 0 for in-memory data, else up to 4)")
    accept: float = _opt(0.95, "share of known validation images the `unknown` threshold accepts")
    audit: bool = _opt(True, "audit the data first: unreadable files, duplicates, train/val/test leaks (cached)")
    seed: int = _opt(0, "random seed for split, order, augmentation and init")
    output: str = _opt("runs", "folder that holds run folders")
    name: str | None = _opt(None, "run folder name (auto: model-data-time)")
    device: str = _opt("auto", "cpu, cuda, cuda:1, ... (auto: cuda when available)")
    log: str | None = _opt(
        None, "experiment tracking: tensorboard (RUN/tensorboard) or mlflow", choices=("tensorboard", "mlflow")
    )
    tracking_uri: str | None = _opt(
        None, "MLflow tracking URI (default: the local store ./mlflow.db, artefacts in ./mlruns)"
    )
    data_root: str | None = _opt(
        None, "where built-in data sets are looked for and downloaded (auto: ~/.cache/deepcat)"
    )

    @classmethod
    def help_of(cls, name: str) -> str:
        return cast(str, {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}[name])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


class TrainOptions(TypedDict, total=False):
    """TrainConfig's fields as typed keyword arguments (`deepcat.train(**options)`); a test keeps the two equal."""

    data: str
    modality: str
    clip_seconds: float
    classes: str | None
    model: str
    model_width: int | None
    pretrained: bool | None
    weights: str | None
    from_run: str | None
    quick: bool
    epochs: int | None
    freeze_epochs: int
    head_from_features: bool
    unfreeze: float
    progressive: float
    batch_size: int | None
    image_size: int | None
    lr: float | None
    optimizer: str
    weight_decay: float
    schedule: str
    warmup_epochs: float
    loss: str
    label_smoothing: float
    class_weights: bool
    augment: str
    hflip: bool | None
    mixup: float
    cutmix: float
    amp: str
    channels_last: bool
    ema: float
    patience: int
    accumulate: int
    val_fraction: float
    workers: int | None
    accept: float
    audit: bool
    seed: int
    output: str
    name: str | None
    device: str
    data_root: str | None
    log: str | None
    tracking_uri: str | None


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def check_keys(values: dict[str, Any], where: str) -> None:
    """Unknown keys are errors that name the nearest valid key."""
    valid = field_names()
    for key in values:
        if key not in valid:
            raise DeepcatError(
                f"unknown config key {key!r} in {where}.{did_you_mean(key, valid)} Valid keys: {', '.join(valid)}"
            )


def value_type(name: str) -> type:
    """The plain type of field `name` (`int` for `int | None`)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return cast(type, hint)


def check_value(name: str, value: Any, where: str) -> Any:
    """`value` as field `name`'s type, or a one-line error naming the key, the value and what is expected."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if value is None and isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint):
        return value
    kind = value_type(name)
    ok = (isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))) or (
        kind is float and isinstance(value, int) and not isinstance(value, bool)
    )
    if not ok:
        expected = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[kind]
        raise DeepcatError(
            f"{name} in {where} must be {expected}"
            f"{' or null' if isinstance(hint, types.UnionType) else ''}; received {value!r}"
        )
    return float(value) if kind is float else value


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DeepcatError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise DeepcatError(f"{path} must hold a mapping of key: value, received {type(values).__name__}")
    check_keys(values, str(path))
    return {k: check_value(k, v, str(path)) for k, v in values.items()}


def resolve_config(*, config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file, then explicit overrides (those not None)."""
    values: dict[str, Any] = load_yaml(config_file) if config_file else {}
    check_keys(overrides, "the arguments")
    values.update({k: check_value(k, v, "the arguments") for k, v in overrides.items() if v is not None})
    cfg = TrainConfig(**values)
    for f in dataclasses.fields(TrainConfig):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices and getattr(cfg, f.name) is not None:
            raise DeepcatError(f"{f.name} must be one of {', '.join(choices)}; received {getattr(cfg, f.name)!r}")
    if (
        (cfg.epochs is not None and cfg.epochs < 1)
        or (cfg.batch_size is not None and cfg.batch_size < 1)
        or cfg.accumulate < 1
    ):
        raise DeepcatError(
            f"epochs, batch_size and accumulate must be >= 1; received "
            f"epochs={cfg.epochs}, batch_size={cfg.batch_size}, accumulate={cfg.accumulate}"
        )
    if not 0.0 < cfg.clip_seconds <= 60.0:
        raise DeepcatError(f"clip_seconds must be in (0, 60]; received {cfg.clip_seconds}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DeepcatError(f"val_fraction must be in [0, 1); received {cfg.val_fraction}")
    return cfg
