"""`train`: the fit loop, top to bottom. Set-up in `setup.py`, events in `events.py`, recipe in `recipe.py`.

One process or many (torchrun): each process sees 1/world of every global batch;
rank 0 validates, logs and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from deepcat import calibration
from deepcat.config import TrainConfig, resolve_config
from deepcat.data.loader import BadImageLog, batches, eval_loader
from deepcat.errors import DeepcatError
from deepcat.evaluation import collect_logits, logits_of, score
from deepcat.runs import (
    append_metrics,
    load_state,
    read_config,
    save_state,
    save_weights,
    write_model_json,
    write_split,
)
from deepcat.training import distributed
from deepcat.training.events import EarlyStopping, StopTraining, fire
from deepcat.training.optim import lr_at, set_lr
from deepcat.training.setup import (
    Setup,
    forward_loss,
    prepare,
    seed_everything,
    set_frozen,
)


def train(*, config_file: str | Path | None = None, resume: str | Path | None = None,
          callbacks: list[Any] | None = None, progress: bool = True, **options: Any) -> Path:
    """Train a classifier and return its run folder. Options are the fields of `TrainConfig`.

    >>> run = deepcat.train(data="pets", model="resnet18", epochs=5)
    >>> deepcat.train(resume=run)  # continue an interrupted run
    """
    if resume:
        run_dir: Path | None = Path(resume)
        state = load_state(run_dir)
        cfg = TrainConfig(**read_config(run_dir))
        if options.get("epochs"):  # the one option a resumed run may change: train for longer
            cfg = dataclasses.replace(cfg, epochs=options["epochs"])
    else:
        run_dir, state, cfg = None, None, resolve_config(config_file=config_file, **options)
    dist = distributed.init_distributed()
    try:
        return _fit(prepare(cfg, dist), state, run_dir=run_dir, dist=dist, callbacks=list(callbacks or []),
                    progress=progress and dist.is_main)
    finally:
        distributed.cleanup(dist)


def _start_run(s: Setup, run_dir: Path | None, dist: distributed.Dist) -> Path:
    """Create (rank 0) and share the run folder; write what is known before the first step."""
    if run_dir is None:
        name = s.cfg.name or f"{Path(s.cfg.model).stem}-{s.splits.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(s.cfg.output) / name
        if dist.is_main and (run_dir / "state.pt").exists():
            raise DeepcatError(f"{run_dir} already holds a run. Continue it with `deepcat train --resume "
                               f"{run_dir}` or choose another --name")
        run_dir = Path(distributed.broadcast_object(dist, str(run_dir)))
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        s.cfg.save(run_dir / "config.yaml")
        write_split(run_dir, s.splits)
        write_model_json(run_dir, spec=s.spec, classes=s.splits.classes, preprocess=s.pre)
        sizes = " / ".join(f"{len(part) if part is not None else 0} {name}"
                           for name, part in (("train", s.splits.train), ("val", s.splits.val), ("test", s.splits.test)))
        print(f"run folder: {run_dir}\ndata: {s.splits.name}, {len(s.splits.classes)} classes, {sizes}; "
              f"model {s.spec.name}{' (pretrained)' if s.cfg.pretrained else ''}, {s.pre.input_size}px, "
              f"batch {s.cfg.batch_size}", file=sys.stderr)
        if s.cfg.audit:
            from deepcat.data.audit import audit_cached, write_json

            found = audit_cached(s.splits)
            write_json(found, run_dir / "audit.json")
            print("\n".join(found.summary_lines()) + f"\n  (details: deepcat check {s.cfg.data})",
                  file=sys.stderr)
    return run_dir


def _fit(s: Setup, state: dict | None, *, run_dir: Path | None, dist: distributed.Dist, callbacks: list[Any],
         progress: bool) -> Path:
    cfg, model, optimizer = s.cfg, s.model, s.optimizer
    run_dir = _start_run(s, run_dir, dist)
    val_loader = (eval_loader(s.splits.val, s.pre, batch_size=256, workers=cfg.workers)
                  if s.splits.val is not None and dist.is_main else None)
    scaler = torch.amp.GradScaler(s.device.type, enabled=s.dtype == torch.float16)
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema)
    stopper = EarlyStopping(cfg.patience) if cfg.patience else None
    callbacks = callbacks + ([stopper] if stopper else [])

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
    net, frozen, stop_reason = model, None, None
    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(cfg.seed * 1000 + epoch)  # augmentation and order depend only on (seed, epoch)
        s.train_loader.sampler.set_epoch(epoch)
        if frozen != (epoch < cfg.freeze_epochs):
            frozen = epoch < cfg.freeze_epochs
            set_frozen(model, frozen)
            if dist.enabled:  # DDP registers the parameters that need grads when it is built
                net = nn.parallel.DistributedDataParallel(
                    model, device_ids=[s.device.index] if s.device.type == "cuda" else None)
        fire(callbacks, "on_epoch_start", epoch=epoch)
        started = time.perf_counter()
        row, step = _train_epoch(s, net, epoch=epoch, step=step, scaler=scaler, ema=ema, log=log,
                                 callbacks=callbacks, progress=progress)
        eval_model = ema.module if ema is not None else model
        if val_loader is not None:
            logits, labels = collect_logits(eval_model, val_loader, device=s.device, dtype=s.dtype, log=log,
                                            desc="val", progress=progress)
            probs = calibration.softmax(logits)
            row["val_loss"] = float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean())
            row["val_acc"] = float((probs.argmax(1) == labels).mean())
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        try:
            fire(callbacks, "on_epoch_end", epoch=epoch, metrics=row, model=model)
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
        _score_best(s, run_dir, progress=progress)
    fire(callbacks, "on_fit_end", run_dir=run_dir)
    return run_dir


def _train_epoch(s: Setup, net: nn.Module, *, epoch: int, step: int, scaler: torch.amp.GradScaler, ema: Any,
                 log: BadImageLog, callbacks: list[Any], progress: bool) -> tuple[dict[str, float], int]:
    """One pass over the training data; returns the epoch's train metrics and the new global step."""
    cfg = s.cfg
    steps_per_epoch = len(s.train_loader) // cfg.accumulate
    net.train()
    seen, loss_sum, correct = 0, 0.0, 0
    bar = tqdm(total=len(s.train_loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
               dynamic_ncols=True)
    for i, (x, y) in enumerate(batches(s.train_loader, log)):
        logits, loss = forward_loss(s, net, x, y)
        scaler.scale(loss / cfg.accumulate).backward()
        if (i + 1) % cfg.accumulate == 0:
            set_lr(s.optimizer, lr_at(step, peak=float(cfg.lr), steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
                                      freeze_epochs=cfg.freeze_epochs, kind=cfg.schedule,
                                      warmup_epochs=cfg.warmup_epochs))
            scaler.step(s.optimizer)
            scaler.update()
            s.optimizer.zero_grad(set_to_none=True)
            step += 1
            if ema is not None:
                ema.update(s.model, step=step)
        batch_loss = loss.item()
        seen += len(y)
        loss_sum += batch_loss * len(y)
        correct += (logits.argmax(1).cpu() == y).sum().item()
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        fire(callbacks, "on_batch_end", step=step, loss=batch_loss)
    bar.close()
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
            "lr": s.optimizer.param_groups[0]["lr"]}, step


LABEL_CHECK_MAX_IMAGES = 20_000  # above this, label errors wait for `deepcat check DATA --labels RUN`


def _score_best(s: Setup, run_dir: Path, *, progress: bool) -> None:
    """After training: calibrate the best weights on val (temperature, rejection threshold), score them on the
    test split (else val), show the worst mistakes with Grad-CAM, look for label errors, write report.html."""
    from deepcat.explain import worst_mistakes
    from deepcat.plots import plot_rejection, plot_reliability
    from deepcat.report import write_report
    from deepcat.runs import load_model, update_model_json

    model, _ = load_model(run_dir)
    kw = dict(pre=s.pre, device=s.device, dtype=s.dtype, workers=s.cfg.workers, progress=progress)
    cal = calibration.Calibration()
    if s.splits.val is not None:
        cal = calibration.fit(*logits_of(model, s.splits.val, desc="calibrate", **kw), accept=s.cfg.accept)
        update_model_json(run_dir, calibration=cal.to_dict())
    name = "test" if s.splits.test is not None else "val" if s.splits.val is not None else None
    if name is not None:
        samples = s.splits.split(name)
        logits, labels = logits_of(model, samples, **kw)
        metrics = score(logits, labels, classes=s.splits.classes, temperature=cal.temperature,
                        json_path=run_dir / f"{name}_metrics.json", png_path=run_dir / "confusion_matrix.png",
                        title=f"{s.splits.name} {name}", extra={"split": name})
        cal_report = {"split": name, **calibration.report(logits, labels, cal)}
        (run_dir / "calibration.json").write_text(json.dumps(cal_report, indent=2))
        plot_reliability(cal_report, run_dir / "reliability.png")
        plot_rejection(cal_report, run_dir / "rejection.png")
        print(f"{name} accuracy {metrics['accuracy']:.4f} (best weights); calibration error (ECE) "
              f"{cal_report['ece_before']:.4f} -> {cal_report['ece_after']:.4f} at temperature "
              f"{cal.temperature:.2f}", file=sys.stderr)
        if len(labels) == len(samples):  # no unreadable images: rows line up with samples
            mistakes = worst_mistakes(model.cpu(), samples, calibration.softmax(logits, cal.temperature), labels,
                                      s.splits.classes, s.pre, run_dir / "mistakes.png")
            (run_dir / "mistakes.json").write_text(json.dumps(mistakes, indent=2))
    total = sum(len(part) for part in (s.splits.train, s.splits.val, s.splits.test) if part is not None)
    if total <= LABEL_CHECK_MAX_IMAGES:
        from deepcat.label_errors import find_label_errors, save

        try:
            save(find_label_errors(run_dir, s.splits, progress=progress), run_dir)
        except DeepcatError as e:
            print(f"label errors not checked: {e}", file=sys.stderr)
    print(f"report: {write_report(run_dir)}", file=sys.stderr)
