"""Everything built from a config before the first step, shared by `train` and `lr_find`."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from deepcat.config import TrainConfig
from deepcat.data.loader import make_loader, whole_batches
from deepcat.data.order import Order
from deepcat.data.resolve import splits_of
from deepcat.data.sources import DataSplits
from deepcat.device import amp_dtype, autocast, pick_device
from deepcat.errors import DeepcatError
from deepcat.inputs import ModelChoice, Preprocessing, input_kind
from deepcat.models.create import ModelSpec, classifier_of, create_model, default_preprocess, early_parameters
from deepcat.training import distributed
from deepcat.training.losses import LOSSES, build_loss, inverse_frequency
from deepcat.training.optim import OPTIMIZERS, build_optimizer
from deepcat.training.recipe import auto_choice, resolve_auto

__all__ = ["Setup", "epoch_input_size", "forward_loss", "prepare", "seed_everything", "set_frozen", "train_mode"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_frozen(model: nn.Module, frozen: bool, unfreeze: float = 1.0) -> None:
    """Frozen: only the classifier head learns. Unfrozen: the last `unfreeze` of the layer groups learn; the
    earlier ones keep their weights and run without gradients. Batch norm that does not learn keeps its statistics
    too (`train_mode`)."""
    head = {id(p) for p in classifier_of(model).parameters()}
    early = early_parameters(model, unfreeze)
    for name, p in model.named_parameters():
        p.requires_grad_(id(p) in head if frozen else name not in early)


def train_mode(model: nn.Module) -> None:
    """Training mode, but batch norm whose weights do not learn (the layers `unfreeze` leaves out) keeps its
    ImageNet statistics, as in evaluation: they are what the frozen weights were trained with."""
    model.train()
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            m.eval()


@dataclasses.dataclass
class Setup:
    """The pieces of one training run, every `auto` in `cfg` resolved."""

    cfg: TrainConfig
    splits: DataSplits
    model: nn.Module
    spec: ModelSpec
    pre: Preprocessing
    device: torch.device
    dtype: torch.dtype | None
    train_loader: DataLoader[Any]
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    mixup: Any
    order: Order  # the training order: this process's share, its batch size
    model_choice: ModelChoice | None = None  # what `model: auto` chose and why (None: the config named its model)


def prepare(cfg: TrainConfig, dist: distributed.Dist) -> Setup:
    """Data, model (with its preprocessing), loader, loss and optimiser for `cfg`, every `auto` resolved."""
    LOSSES.get(cfg.loss)  # unknown names fail before the data is read
    if cfg.optimizer != "auto":
        OPTIMIZERS.get(cfg.optimizer)
    device = pick_device(cfg.device, dist.local_rank)
    splits = splits_of(cfg.to_dict())
    choice = auto_choice(cfg, splits)
    cfg = resolve_auto(cfg, splits)
    seed_everything(cfg.seed)
    kind = input_kind(splits.input_kind)
    model, spec = create_model(
        name=cfg.model,
        num_classes=len(splits.classes),
        image_size=cfg.image_size or 224,
        pretrained=bool(cfg.pretrained),
        weights=cfg.weights,
        in_chans=kind.channels,
        options={"flip_average": bool(cfg.hflip), **({"width": cfg.model_width} if cfg.model_width else {})},
    )
    if cfg.from_run:  # the classes the earlier run knew keep its head's rows
        from deepcat.models.create import carry_head, read_weights_file
        from deepcat.run_folder import read_model_json

        old = read_model_json(Path(cfg.from_run)).classes
        carry_head(model, read_weights_file(str(cfg.weights)), old, splits.classes)
    pre = default_preprocess(
        model,
        spec,
        image_size=cfg.image_size,
        native_size=splits.native_size,
        kind=kind,
        clip_seconds=cfg.clip_seconds,
    )
    cfg = dataclasses.replace(cfg, image_size=getattr(pre, "input_size", None))
    batch_size = cast(int, cfg.batch_size)  # resolve_auto filled it
    if batch_size % (dist.world_size * cfg.accumulate):
        raise DeepcatError(
            f"batch_size {cfg.batch_size} must divide by processes x accumulate = {dist.world_size} x {cfg.accumulate}"
        )
    per_process = batch_size // dist.world_size // cfg.accumulate
    order = Order(
        per_process,
        shuffle=True,
        seed=cfg.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        drop_last=len(splits.train) >= 4 * batch_size,
    )
    train_loader = whole_batches(  # small in-memory images, clips that fit in memory: augmented whole batches
        splits.train, pre, order, augment=cfg.augment, hflip=bool(cfg.hflip), noise_files=splits.noise
    )
    if train_loader is None:
        augment = kind.train_transform(pre, splits, augment=cfg.augment, hflip=bool(cfg.hflip))
        train_loader = make_loader(splits.train, augment, kind, order, workers=cfg.workers, min_side=kind.min_side(pre))
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    weights = inverse_frequency(splits.train.labels, len(splits.classes)).to(device) if cfg.class_weights else None
    mixup = None
    if cfg.mixup or cfg.cutmix:
        from timm.data import Mixup

        mixup = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            label_smoothing=cfg.label_smoothing,
            num_classes=len(splits.classes),
        )
    loss_fn = build_loss(
        name=cfg.loss, label_smoothing=cfg.label_smoothing, class_weights=weights, soft_targets=mixup is not None
    ).to(device)
    optimizer = build_optimizer(model, name=cfg.optimizer, lr=float(cast(float, cfg.lr)), weight_decay=cfg.weight_decay)
    return Setup(
        cfg,
        splits,
        model,
        spec,
        pre,
        device,
        amp_dtype(cfg.amp, device),
        train_loader,
        loss_fn,
        optimizer,
        mixup,
        order,
        choice,
    )


def epoch_input_size(cfg: TrainConfig, epoch: int) -> int | None:
    """Progressive resizing: the side photos are shrunk to in `epoch` (None: full size). The unfrozen epochs grow
    linearly from `cfg.progressive` of the input size to all of it in the last, in steps of 32 px."""
    unfrozen, k = cast(int, cfg.epochs) - cfg.freeze_epochs, epoch - cfg.freeze_epochs  # resolve_auto filled it
    if cfg.progressive >= 1 or not cfg.image_size or k < 0 or k >= unfrozen - 1:
        return None
    share = cfg.progressive + (1 - cfg.progressive) * k / (unfrozen - 1)
    return max(32, round(cfg.image_size * share / 32) * 32)


def forward_loss(
    s: Setup, net: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, loss) for one batch: device transfer, progressive resizing to `size`, memory format, mixup,
    autocast."""
    x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
    if size is not None and x.ndim == 4 and input_kind(s.pre.kind).sized and x.shape[-1] > size:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if s.cfg.channels_last and x.ndim == 4:  # (not the head's features)
        x = x.contiguous(memory_format=torch.channels_last)
    target = y
    if s.mixup is not None:  # timm's Mixup needs an even batch; an odd last batch gets one-hot targets
        x, target = s.mixup(x, y) if len(y) % 2 == 0 else (x, nn.functional.one_hot(y, len(s.splits.classes)).float())
    with autocast(s.device, s.dtype):
        logits = net(x)  # (B, C)
        loss = s.loss_fn(logits, target)
    return logits, loss
