"""Learning-rate finder (Smith 2015, as fastai's `lr_find`): raise the lr exponentially, watch the loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from deepcat.config import TrainConfig
from deepcat.data.loader import BadInputLog, batches
from deepcat.progress import progress_bar
from deepcat.training import distributed
from deepcat.training.optim import set_lr
from deepcat.training.setup import forward_loss, prepare, set_frozen

__all__ = ["LrFind", "sweep"]


@dataclass
class LrFind:
    """The sweep: learning rates tried, the smoothed loss at each, and the suggestion."""

    suggested_lr: float
    lrs: list[float]
    losses: list[float]
    plot: Path | None


def sweep(
    cfg: TrainConfig, *, start_lr: float, end_lr: float, steps: int, plot: str | Path | None, progress: bool
) -> LrFind:
    """Sweep the lr over `steps` batches; suggest the lr of the steepest loss descent. The model is thrown away."""
    s = prepare(cfg, distributed.Dist())
    if s.cfg.freeze_epochs:
        set_frozen(s.model, True)  # the lr that matters first is the head's
    s.model.train()
    lrs, losses, smooth = [], [], 0.0
    log, step = BadInputLog(), 0
    bar = progress_bar(total=steps, desc="lr-find", enabled=progress)
    while step < steps:
        for x, y in batches(s.train_loader, log):
            lr = start_lr * (end_lr / start_lr) ** (step / max(1, steps - 1))
            set_lr(s.optimizer, lr)
            _, loss = forward_loss(s, s.model, x, y)
            loss.backward()
            s.optimizer.step()
            s.optimizer.zero_grad(set_to_none=True)
            smooth = 0.98 * smooth + 0.02 * loss.item()
            value = smooth / (1 - 0.98 ** (step + 1))  # bias-corrected running mean
            lrs.append(lr)
            losses.append(value)
            step += 1
            bar.update()
            if step >= steps or not math.isfinite(value) or value > 4 * min(losses):
                step = steps
                break
    bar.close()
    suggested = _steepest(lrs, losses)
    if plot:
        from deepcat.evaluation.plots import plot_lr_find

        plot_lr_find(lrs, losses, suggested, Path(plot))
    return LrFind(suggested, lrs, losses, Path(plot) if plot else None)


def _steepest(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest per log-lr, ignoring the diverging tail."""
    stop = min(range(len(losses)), key=losses.__getitem__) + 1
    if stop < 3:
        return lrs[0]
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(stop - 1)]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]
