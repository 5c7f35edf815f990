"""`fit`: the training loop, top to bottom. Set-up in `setup.py`, events in `events.py`, saving in `checkpoint.py`.

One process or many (torchrun): each process sees 1/world of every global batch; rank 0 validates and
writes the run folder. Fitting is all this module does: judging the model afterwards (calibration, test
scores, the report) is `evaluation/finish.py`, called by the public `deepcat.train`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn

from deepcat.config import TrainConfig
from deepcat.data.loader import BadInputLog, batches, eval_loader
from deepcat.data.sources import DataSplits
from deepcat.errors import DeepcatError
from deepcat.evaluation.scores import collect_logits
from deepcat.inference.calibrated import softmax
from deepcat.progress import progress_bar
from deepcat.run_folder import write_model_json, write_split
from deepcat.run_meta import RunMeta
from deepcat.training import distributed, head_features
from deepcat.training.checkpoint import Checkpoint, mark_elastic_run
from deepcat.training.events import EarlyStopping, StopTraining, check_callbacks, fire
from deepcat.training.loggers import loggers_for
from deepcat.training.optim import lr_at, set_lr
from deepcat.training.setup import (
    Setup,
    epoch_input_size,
    forward_loss,
    prepare,
    seed_everything,
    set_frozen,
    train_mode,
)

__all__ = ["EpochTools", "Fitted", "Progress", "fit", "is_better", "start_run"]


@dataclass
class Progress:
    """Where a run stands after its last finished epoch: all `--resume` needs besides the tensors."""

    epoch: int = 0
    step: int = 0
    best_score: float = -1.0
    best_loss: float = math.inf  # breaks ties on best_score: a saturated val split still picks the surest epoch
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class EpochTools:
    """What every epoch of one run uses besides its `Setup`: the gradient scaler (fp16), the weight EMA, the
    bad-input log, the callbacks, and whether progress bars show."""

    scaler: torch.amp.GradScaler
    ema: Any
    log: BadInputLog
    callbacks: list[Any]
    progress: bool


@dataclass
class Fitted:
    """What `fit` leaves: the run folder and the data it was split into (for `evaluation.finish`)."""

    run_dir: Path
    splits: DataSplits
    is_main: bool


def fit(
    cfg: TrainConfig,
    *,
    state: dict[str, Any] | None = None,
    run_dir: Path | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
) -> Fitted:
    """Train `cfg` (or continue `run_dir` from its saved `state`) and return the run folder."""
    callbacks = list(callbacks or [])
    check_callbacks(callbacks)
    dist = distributed.init_distributed()
    try:
        s = prepare(cfg, dist)
        run_dir = start_run(s, run_dir, dist)
        _epochs(s, run_dir, state, dist, callbacks, progress=progress and dist.is_main)
        return Fitted(run_dir, s.splits, dist.is_main)
    finally:
        distributed.cleanup(dist)


def start_run(s: Setup, run_dir: Path | None, dist: distributed.Dist) -> Path:
    """Create (rank 0) and share the run folder; write what is known before the first step."""
    if run_dir is None:
        name = s.cfg.name or f"{Path(s.cfg.model).stem}-{s.splits.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(s.cfg.output) / name
        if dist.is_main and (run_dir / "state.pt").exists():
            raise DeepcatError(
                f"{run_dir} already holds a run. Continue it with `deepcat train --resume "
                f"{run_dir}` or choose another --name"
            )
        run_dir = Path(str(distributed.broadcast_object(dist, str(run_dir))))
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        mark_elastic_run(run_dir)
        s.cfg.save(run_dir / "config.yaml")
        write_split(run_dir, s.splits)
        write_model_json(run_dir, RunMeta(model=s.spec, classes=tuple(s.splits.classes), preprocess=s.pre))
        sizes = " / ".join(
            f"{len(part) if part is not None else 0} {name}"
            for name, part in (("train", s.splits.train), ("val", s.splits.val), ("test", s.splits.test))
        )
        print(
            f"run folder: {run_dir}\ndata: {s.splits.name}, {len(s.splits.classes)} classes, {sizes}; "
            f"model {s.spec.name}{' (pretrained)' if s.cfg.pretrained else ''}, {s.pre.describe()}, "
            f"batch {s.cfg.batch_size}",
            file=sys.stderr,
        )
        if s.model_choice is not None:
            print(f"model: {s.model_choice.model} (auto: {s.model_choice.reason})", file=sys.stderr)
        if s.cfg.audit:
            _audit(s, run_dir)
    return run_dir


def _audit(s: Setup, run_dir: Path) -> None:
    from deepcat.data.audit import audit_cached, write_json

    found = audit_cached(s.splits)
    write_json(found, run_dir / "audit.json")
    print("\n".join(found.summary_lines()) + f"\n  (details: deepcat check {s.cfg.data})", file=sys.stderr)


def _epochs(
    s: Setup,
    run_dir: Path,
    state: dict[str, Any] | None,
    dist: distributed.Dist,
    callbacks: list[Any],
    *,
    progress: bool,
) -> None:
    """The epochs of one run: restore, then train, validate, save (rank 0) and maybe stop, each epoch."""
    cfg, model = s.cfg, s.model
    scaler = torch.amp.GradScaler(s.device.type, enabled=s.dtype == torch.float16)
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema)
    stopper = EarlyStopping(cfg.patience) if cfg.patience else None
    tensors = {"model": model, "optimizer": s.optimizer, "scaler": scaler, "ema": ema, "early_stopping": stopper}
    at = _restore(state, tensors) if state is not None else Progress()
    if state is not None and dist.is_main:
        print(f"resuming {run_dir} after epoch {at.epoch}", file=sys.stderr)

    def resume_state() -> dict[str, Any]:
        return {
            "epoch": at.epoch,
            "step": at.step,
            "best_acc": at.best_score,
            "best_loss": at.best_loss,
            "history": at.history,
            **{name: obj.state_dict() if obj is not None else None for name, obj in tensors.items()},  # type: ignore[attr-defined]
        }

    saving = [*loggers_for(cfg, run_dir), Checkpoint(run_dir, resume_state)] if dist.is_main else []
    callbacks = [*([stopper] if stopper else []), *callbacks, *saving]  # the checkpoint sees every epoch last
    val_loader = (
        eval_loader(s.splits.val, s.pre, batch_size=256, workers=cfg.workers)
        if s.splits.val is not None and dist.is_main
        else None
    )
    log, net, frozen, features = BadInputLog(), model, None, None
    from_features = head_features.applies(s, dist)  # frozen epochs: the head learns from features computed once
    tools = EpochTools(scaler, ema, log, callbacks, progress)
    fire(callbacks, "on_fit_start", run_dir=run_dir, config=cfg)
    epochs = cast(int, cfg.epochs)  # resolve_auto filled it
    for epoch in range(at.epoch, epochs):
        seed_everything(cfg.seed * 1000 + epoch)  # augmentation and order depend only on (seed, epoch)
        if frozen != (epoch < cfg.freeze_epochs):
            frozen = epoch < cfg.freeze_epochs
            net = _set_phase(s, frozen, dist)
        fire(callbacks, "on_epoch_start", epoch=epoch)
        started = time.perf_counter()
        loader: Any = s.train_loader
        if frozen and from_features:
            if features is None:
                features = head_features.feature_batches(s, log, progress=progress, folder=run_dir)
            net, loader = head_features.HeadOnly(model), features
        loader.sampler.set_epoch(epoch)  # every batcher has a sampler (a DistributedSampler)
        row, at.step = _train_epoch(s, tools, net, loader, epoch=epoch, step=at.step)
        eval_model = ema.module if ema is not None else model
        if val_loader is not None:
            row.update(_validate(s, eval_model, val_loader, tools))
        row["seconds"] = time.perf_counter() - started
        score, loss = row.get("val_acc", row["train_acc"]), row.get("val_loss", row["train_loss"])
        # only rank 0 validates: its verdict decides the best weights and early stopping in every process
        improved = bool(distributed.broadcast_object(dist, is_better(score, loss, than=(at.best_score, at.best_loss))))
        if improved:
            at.best_score, at.best_loss = score, loss
        at.epoch = epoch + 1
        at.history.append(row)
        try:
            fire(
                callbacks,
                "on_epoch_end",
                epoch=epoch,
                metrics=row,
                model=model,
                eval_model=eval_model,
                history=at.history,
                improved=improved,
            )
        except StopTraining as e:
            if dist.is_main:
                print(f"early stopping: {e}", file=sys.stderr)
            break
        finally:
            distributed.barrier(dist)
    fire(callbacks, "on_fit_end", run_dir=run_dir)


def is_better(score: float, loss: float, *, than: tuple[float, float]) -> bool:
    """The loop's rule for the best epoch: higher val accuracy, ties broken by lower val loss (Keras's default
    monitor), so a run whose val split saturates early still keeps improving its best weights."""
    best_score, best_loss = than
    return score > best_score or (score == best_score and loss < best_loss)


def _restore(state: dict[str, Any], tensors: dict[str, Any]) -> Progress:
    """Load every saved state into its object (those the run does not use are None) and return the counters."""
    for name, obj in tensors.items():
        if obj is not None and state.get(name) is not None:
            obj.load_state_dict(state[name])
    best_loss = state.get("best_loss", math.inf)  # absent from checkpoints written before ties were broken
    return Progress(state["epoch"], state["step"], state["best_acc"], best_loss, state["history"])


def _set_phase(s: Setup, frozen: bool, dist: distributed.Dist) -> nn.Module:
    """Freeze (head only) or unfreeze the model; under DDP, wrap it anew (DDP registers the trainable parameters
    when it is built)."""
    set_frozen(s.model, frozen, s.cfg.unfreeze)
    if not dist.enabled:
        return s.model
    return nn.parallel.DistributedDataParallel(
        s.model, device_ids=[s.device.index] if s.device.type == "cuda" else None
    )


def _validate(s: Setup, model: nn.Module, loader: Any, tools: EpochTools) -> dict[str, float]:
    logits, labels = collect_logits(
        model, loader, device=s.device, dtype=s.dtype, log=tools.log, desc="val", progress=tools.progress
    )
    probs = softmax(logits)  # (N, C)
    return {
        "val_loss": float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean()),
        "val_acc": float((probs.argmax(1) == labels).mean()),
    }


def _train_epoch(
    s: Setup, tools: EpochTools, net: nn.Module, loader: Any, *, epoch: int, step: int
) -> tuple[dict[str, float], int]:
    """One pass over the training data (or, for `net` the head alone, their features); returns the epoch's train
    metrics and the new global step. The schedule counts the training loader's steps either way."""
    cfg = s.cfg
    steps_per_epoch = len(s.train_loader) // cfg.accumulate
    train_mode(net)
    seen, loss_sum, correct = 0, 0.0, 0
    size = epoch_input_size(cfg, epoch)
    bar = progress_bar(
        total=len(loader),
        desc=f"epoch {epoch + 1}/{cfg.epochs}" + (f" at {size} px" if size else ""),
        enabled=tools.progress,
    )
    for i, (x, y) in enumerate(batches(loader, tools.log)):
        logits, loss = forward_loss(s, net, x, y, size)
        tools.scaler.scale(loss / cfg.accumulate).backward()
        if (i + 1) % cfg.accumulate == 0:
            set_lr(
                s.optimizer,
                lr_at(
                    step,
                    peak=float(cast(float, cfg.lr)),
                    steps_per_epoch=steps_per_epoch,
                    epochs=cast(int, cfg.epochs),
                    freeze_epochs=cfg.freeze_epochs,
                    kind=cfg.schedule,
                    warmup_epochs=cfg.warmup_epochs,
                ),
            )
            tools.scaler.step(s.optimizer)
            tools.scaler.update()
            s.optimizer.zero_grad(set_to_none=True)
            step += 1
            if tools.ema is not None:
                tools.ema.update(s.model, step=step)
        batch_loss = loss.item()
        seen += len(y)
        loss_sum += batch_loss * len(y)
        correct += int((logits.argmax(1).cpu() == y).sum().item())
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        fire(tools.callbacks, "on_batch_end", step=step, loss=batch_loss)
    bar.close()
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "lr": s.optimizer.param_groups[0]["lr"],
    }, step
