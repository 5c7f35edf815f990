"""`train`: the fit loop, top to bottom. Events in `events.py`, recipe in `recipe.py`.

One process or many (torchrun): each process sees 1/world of every global batch;
rank 0 validates, logs and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from deepcat.config import TrainConfig, resolve_config
from deepcat.data.loader import BadImageLog, batches, make_loader
from deepcat.data.sources import DataSplits, resolve_data
from deepcat.data.transforms import Preprocess, eval_transform, train_transform
from deepcat.device import amp_dtype, autocast, pick_device
from deepcat.evaluation import collect_probs, compute_metrics
from deepcat.errors import DeepcatError
from deepcat.models.create import ModelSpec, classifier_of, create_model, default_preprocess
from deepcat.runs import append_metrics, load_state, save_state, save_weights, write_model_json, write_split
from deepcat.training import distributed
from deepcat.training.events import EarlyStopping, StopTraining, fire
from deepcat.training.losses import build_loss, inverse_frequency
from deepcat.training.optim import build_optimizer, lr_at, set_lr


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_frozen(model: nn.Module, frozen: bool) -> None:
    """Frozen: only the classifier head learns (batch-norm statistics still adapt)."""
    head = {id(p) for p in classifier_of(model).parameters()}
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head)


def make_run_dir(cfg: TrainConfig, splits: DataSplits) -> Path:
    name = cfg.name or f"{Path(cfg.model).stem}-{splits.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.output) / name
    if (run_dir / "state.pt").exists():
        raise DeepcatError(f"{run_dir} already holds a run. Continue it with `deepcat train --resume {run_dir}` "
                           f"or choose another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(*, config_file: str | Path | None = None, resume: str | Path | None = None,
          callbacks: list[Any] | None = None, progress: bool = True, **options: Any) -> Path:
    """Train a classifier and return its run folder. Options are the fields of `TrainConfig`.

    >>> run = deepcat.train(data="pets", model="resnet18", epochs=5)
    >>> deepcat.train(resume=run)  # continue an interrupted run
    """
    if resume:
        run_dir = Path(resume)
        state = load_state(run_dir)
        cfg = TrainConfig(**yaml.safe_load((run_dir / "config.yaml").read_text()))
        cfg = dataclasses.replace(cfg, **{k: v for k, v in options.items() if k == "epochs" and v})
    else:
        cfg, state = resolve_config(config_file=config_file, **options), None
    dist = distributed.init_distributed()
    try:
        return _fit(cfg, state, resume_dir=Path(resume) if resume else None, dist=dist,
                    callbacks=list(callbacks or []), progress=progress and dist.is_main)
    finally:
        distributed.cleanup(dist)


@dataclasses.dataclass
class Setup:
    """Everything built from a config before the first step; shared by `train` and `lr_find`."""

    cfg: TrainConfig
    splits: DataSplits
    model: nn.Module
    spec: ModelSpec
    pre: Preprocess
    device: torch.device
    dtype: torch.dtype | None
    train_loader: DataLoader
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    mixup: Any


def prepare(cfg: TrainConfig, dist: distributed.Dist) -> Setup:
    """Data, model (with its preprocessing), loader, loss and optimiser for `cfg`, every `auto` resolved."""
    from deepcat.training.recipe import resolve_auto

    device = pick_device(cfg.device, dist.local_rank)
    splits = resolve_data(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed, data_root=cfg.data_root)
    cfg = resolve_auto(cfg, splits)
    seed_everything(cfg.seed)
    model, spec = create_model(name=cfg.model, num_classes=len(splits.classes), image_size=cfg.image_size or 224,
                               pretrained=bool(cfg.pretrained), weights=cfg.weights)
    pre = default_preprocess(model, spec, image_size=cfg.image_size, native_size=splits.native_size)
    cfg = dataclasses.replace(cfg, image_size=pre.input_size)
    if cfg.batch_size % (dist.world_size * cfg.accumulate):
        raise DeepcatError(f"batch_size {cfg.batch_size} must divide by processes x accumulate "
                           f"= {dist.world_size} x {cfg.accumulate}")
    per_process = cfg.batch_size // dist.world_size // cfg.accumulate
    augment = train_transform(pre, augment=cfg.augment, hflip=bool(cfg.hflip), small_images=splits.small_images)
    train_loader = make_loader(splits.train, augment, batch_size=per_process, shuffle=True, seed=cfg.seed,
                               workers=cfg.workers, rank=dist.rank, world_size=dist.world_size,
                               drop_last=len(splits.train) >= 4 * cfg.batch_size)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    weights = inverse_frequency(splits.train.labels, len(splits.classes)).to(device) if cfg.class_weights else None
    mixup = None
    if cfg.mixup or cfg.cutmix:
        from timm.data import Mixup

        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                      num_classes=len(splits.classes))
    loss_fn = build_loss(name=cfg.loss, label_smoothing=cfg.label_smoothing, class_weights=weights,
                         soft_targets=mixup is not None).to(device)
    optimizer = build_optimizer(model, name=cfg.optimizer, lr=float(cfg.lr), weight_decay=cfg.weight_decay)
    return Setup(cfg, splits, model, spec, pre, device, amp_dtype(cfg.amp, device), train_loader, loss_fn,
                 optimizer, mixup)


def forward_loss(s: Setup, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, loss) for one batch: device transfer, memory format, mixup, autocast."""
    x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
    if s.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = y
    if s.mixup is not None:  # timm's Mixup needs an even batch; an odd last batch gets one-hot targets
        x, target = s.mixup(x, y) if len(y) % 2 == 0 else (x, nn.functional.one_hot(y, len(s.splits.classes)).float())
    with autocast(s.device, s.dtype):
        logits = net(x)                                                   # (B, C)
        loss = s.loss_fn(logits, target)
    return logits, loss


def _fit(cfg: TrainConfig, state: dict | None, *, resume_dir: Path | None, dist: distributed.Dist,
         callbacks: list[Any], progress: bool) -> Path:
    s = prepare(cfg, dist)
    cfg, splits, model, spec, pre, device, dtype = s.cfg, s.splits, s.model, s.spec, s.pre, s.device, s.dtype
    train_loader, optimizer = s.train_loader, s.optimizer
    run_dir = resume_dir
    if run_dir is None:
        run_dir = Path(distributed.broadcast_object(dist, str(make_run_dir(cfg, splits)) if dist.is_main else None))
    if dist.is_main:
        cfg.save(run_dir / "config.yaml")
        write_split(run_dir, splits)
        write_model_json(run_dir, spec=spec, classes=splits.classes, preprocess=pre)
        print(f"run folder: {run_dir}\ndata: {splits.name}, {len(splits.classes)} classes, "
              f"{len(splits.train)} train / {len(splits.val) if splits.val else 0} val / "
              f"{len(splits.test) if splits.test else 0} test; model {spec.name}"
              f"{' (pretrained)' if cfg.pretrained else ''}, {pre.input_size}px", file=sys.stderr)
    val_loader = (make_loader(splits.val, eval_transform(pre), batch_size=256, shuffle=False, workers=cfg.workers)
                  if splits.val is not None and dist.is_main else None)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema)
    stopper = EarlyStopping(cfg.patience) if cfg.patience else None
    callbacks = callbacks + ([stopper] if stopper else [])

    steps_per_epoch = len(train_loader) // cfg.accumulate
    start_epoch, step, best_acc, history = 0, 0, -1.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if stopper is not None and state.get("early_stopping"):
            stopper.load_state_dict(state["early_stopping"])
        start_epoch, step, best_acc, history = state["epoch"], state["step"], state["best_acc"], state["history"]
        if dist.is_main:
            print(f"resuming {run_dir} after epoch {start_epoch}", file=sys.stderr)

    log = BadImageLog()
    fire(callbacks, "on_fit_start", run_dir=run_dir, config=cfg)
    ddp, frozen = None, None
    stop_reason = None
    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(cfg.seed * 1000 + epoch)  # augmentation and order depend only on (seed, epoch)
        train_loader.sampler.set_epoch(epoch)
        if frozen != (epoch < cfg.freeze_epochs):
            frozen = epoch < cfg.freeze_epochs
            set_frozen(model, frozen)
            if dist.enabled:  # DDP tracks the parameters that need grads when it is built
                ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        net = ddp or model
        fire(callbacks, "on_epoch_start", epoch=epoch)
        net.train()
        started, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=True, dynamic_ncols=True)
        for i, (x, y) in enumerate(batches(train_loader, log)):
            logits, loss = forward_loss(s, net, x, y)
            loss = loss / cfg.accumulate
            y = y.to(device)
            scaler.scale(loss).backward()
            if (i + 1) % cfg.accumulate == 0:
                set_lr(optimizer, lr_at(step, peak=float(cfg.lr), steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
                                        freeze_epochs=cfg.freeze_epochs, kind=cfg.schedule,
                                        warmup_epochs=cfg.warmup_epochs))
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if ema is not None:
                    ema.update(model, step=step)
            seen += len(y)
            loss_sum += loss.item() * cfg.accumulate * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
            fire(callbacks, "on_batch_end", step=step, loss=loss.item())
        bar.close()

        row: dict[str, float] = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                                 "train_acc": correct / max(seen, 1), "lr": optimizer.param_groups[0]["lr"]}
        eval_model = ema.module if ema is not None else model
        if val_loader is not None:
            probs, labels = collect_probs(eval_model, val_loader, device=device, dtype=dtype, log=log,
                                          desc="val", progress=progress)
            row["val_loss"] = float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean())
            row["val_acc"] = float((probs.argmax(1) == labels).mean())
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        try:
            fire(callbacks, "on_epoch_end", epoch=epoch, metrics=row)
        except StopTraining as e:
            stop_reason = str(e)
        if dist.is_main:
            score = row.get("val_acc", row["train_acc"])
            save_weights(eval_model, run_dir / "last.safetensors")
            if score > best_acc:
                best_acc = score
                save_weights(eval_model, run_dir / "best.safetensors")
            save_state(run_dir, {"epoch": epoch + 1, "step": step, "best_acc": best_acc, "history": history,
                                 "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scaler": scaler.state_dict(), "ema": ema.state_dict() if ema else None,
                                 "early_stopping": stopper.state_dict() if stopper else None})
            append_metrics(run_dir, row)
            from deepcat.plots import plot_curves

            plot_curves(history, run_dir / "curves.png")
            print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  file=sys.stderr)
        distributed.barrier(dist)
        if stop_reason:
            if dist.is_main:
                print(f"early stopping: {stop_reason}", file=sys.stderr)
            break

    if dist.is_main:
        _finish(run_dir, splits, pre, device=device, dtype=dtype, progress=progress)
    fire(callbacks, "on_fit_end", run_dir=run_dir)
    return run_dir


def _finish(run_dir: Path, splits: DataSplits, pre: Preprocess, *, device: torch.device,
            dtype: torch.dtype | None, progress: bool) -> None:
    """Score the best weights on the test split (else val): metrics JSON and confusion matrix PNG."""
    import json

    from deepcat.plots import plot_confusion
    from deepcat.runs import load_model

    name = "test" if splits.test is not None else "val" if splits.val is not None else None
    if name is None:
        return
    model, _ = load_model(run_dir)
    loader = make_loader(splits.split(name), eval_transform(pre), batch_size=256, shuffle=False)
    probs, labels = collect_probs(model.to(device), loader, device=device, dtype=dtype, log=BadImageLog(),
                                  desc=name, progress=progress)
    metrics = {"split": name, **compute_metrics(probs, labels, splits.classes)}
    (run_dir / f"{name}_metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(np.array(metrics["confusion_matrix"]), splits.classes, run_dir / "confusion_matrix.png",
                   title=f"{splits.name} {name}: accuracy {metrics['accuracy']:.3f}")
    print(f"{name} accuracy {metrics['accuracy']:.4f} (best weights); run folder {run_dir}", file=sys.stderr)
