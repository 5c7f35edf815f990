"""Fill every `auto` in a TrainConfig from the data, so the saved config is the whole recipe.

The kind of input picks the model (`InputKind.auto_model`), and says why: for photos ImageNet EfficientNet-Lite0
(its weights ship offline) fine-tuned with AdamW, and for small images (digits, Fashion-MNIST) with few labelled
per class too; for small images with more, deepcat's small CNN from scratch with SGD; for sound the
keyword-spotting DS-CNN on the log-mel spectrogram, from scratch, with AdamW.
"""

from __future__ import annotations

import dataclasses
import math
from typing import cast

from deepcat.config import TrainConfig
from deepcat.data.sources import DataSplits
from deepcat.errors import DeepcatError
from deepcat.inputs import ModelChoice, input_kind
from deepcat.models.create import is_pretrainable, resolve_name
from deepcat.training.optim import OPTIMIZERS

__all__ = ["auto_choice", "resolve_auto"]


def auto_choice(cfg: TrainConfig, splits: DataSplits) -> ModelChoice | None:
    """The model `model: auto` trains on `splits` and why (the run prints it); None when `cfg` names its model."""
    return input_kind(splits.input_kind).auto_model(splits) if cfg.model == "auto" else None


def resolve_auto(cfg: TrainConfig, splits: DataSplits) -> TrainConfig:
    """`cfg` with every `auto` filled from `splits`: what config.yaml saves, so a run can be repeated as it was."""
    if cfg.from_run:
        cfg = continued(cfg)
    kind = input_kind(splits.input_kind)
    choice = auto_choice(cfg, splits)
    model = choice.model if choice else cfg.model
    canonical, _ = resolve_name(model)
    model = model if canonical == "layers" else canonical
    pretrained = cfg.pretrained
    if pretrained is None:
        pretrained = is_pretrainable(canonical) and cfg.weights is None
    optimizer = cfg.optimizer if cfg.optimizer != "auto" else ("sgd" if canonical == "smallcnn" else "adamw")
    image_size = cfg.image_size
    starts_pretrained = bool(pretrained or cfg.weights)
    if not kind.sized:
        image_size = None  # the kind's preprocessing decides the input (sound: the clip length and the log-mel)
    elif image_size is None and splits.small_images and not starts_pretrained:
        image_size = max(16, splits.native_size or 32)
    elif image_size is None and not is_pretrainable(canonical):
        image_size = 64  # deepcat's own models on photos: small and fast; pass --image-size for more
    # else None: a pretrained model keeps the input size its features were learned at (e.g. 224)
    epochs = cfg.epochs or kind.default_epochs
    batch_size = cfg.batch_size or int(min(128, max(16, 2 ** math.floor(math.log2(max(1, len(splits.train) / 32))))))
    return dataclasses.replace(
        cfg,
        model=model,
        batch_size=batch_size,
        pretrained=bool(pretrained),
        optimizer=optimizer,
        image_size=image_size,
        lr=cfg.lr if cfg.lr is not None else OPTIMIZERS.get(optimizer).default_lr,
        augment=cfg.augment if cfg.augment != "auto" else kind.default_augment,
        hflip=cfg.hflip if cfg.hflip is not None else (splits.mirror_safe and kind.mirrorable),
        epochs=epochs,
        freeze_epochs=min(cfg.freeze_epochs, epochs - 1) if (pretrained or cfg.weights) else 0,
        unfreeze=cfg.unfreeze if starts_pretrained else 1.0,
    )


def continued(cfg: TrainConfig) -> TrainConfig:
    """`from_run`: the earlier run's architecture, weights and input size, unless the config already says others
    (refused: a model or weights besides the run's would not be continuing it); and the layers it trained: a
    network the earlier run trained whole (deepcat's own, from scratch) is not a pretrained one whose early layers
    keep ImageNet's features, so `unfreeze` (when left at its default) is the earlier run's."""
    from pathlib import Path

    from deepcat.run_folder import read_config, read_model_json

    run = Path(cast(str, cfg.from_run))
    weights = run / "best.safetensors"
    if not weights.is_file():
        raise DeepcatError(f"--from {run}: no best.safetensors there; pass a run folder `deepcat train` wrote")
    meta = read_model_json(run)
    if meta.model.layers is not None:
        raise DeepcatError(f"--from {run}: a layers-YAML model; continue it with --model YAML --weights {weights}")
    if cfg.model not in ("auto", meta.model.name) or cfg.weights:
        raise DeepcatError(
            f"--from {run} continues its {meta.model.name}: drop --model {cfg.model}"
            f"{' and --weights' if cfg.weights else ''}"
        )
    width = meta.model.kwargs.get("width")
    default_unfreeze = TrainConfig.__dataclass_fields__["unfreeze"].default
    earlier_unfreeze = float(read_config(run).get("unfreeze", default_unfreeze))
    return dataclasses.replace(
        cfg,
        model=meta.model.name,
        weights=str(weights),
        image_size=cfg.image_size or (meta.image_size or None),
        model_width=cfg.model_width or (int(width) if width else None),
        unfreeze=earlier_unfreeze if cfg.unfreeze == default_unfreeze else cfg.unfreeze,
    )
