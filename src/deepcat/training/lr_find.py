"""Learning-rate finder (Smith 2015, as fastai's `lr_find`): raise the lr exponentially, watch the loss."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tqdm import tqdm

from deepcat.config import resolve_config
from deepcat.data.loader import BadImageLog, batches
from deepcat.training import distributed
from deepcat.training.setup import forward_loss, prepare, set_frozen
from deepcat.training.optim import set_lr


def lr_find(*, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 100, plot: str | Path | None = "lr_find.png",
            config_file: str | Path | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Sweep the lr over `steps` batches; suggest the lr of the steepest loss descent.

    Returns {"suggested_lr", "lrs", "losses"}; the model is thrown away afterwards.

    >>> deepcat.lr_find(data="digits")["suggested_lr"]
    """
    s = prepare(resolve_config(config_file=config_file, **options), distributed.Dist())
    if s.cfg.freeze_epochs:
        set_frozen(s.model, True)  # the lr that matters first is the head's
    s.model.train()
    lrs, losses, smooth = [], [], 0.0
    log, step = BadImageLog(), 0
    bar = tqdm(total=steps, desc="lr-find", disable=not progress)
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
        from deepcat.plots import plot_lr_find

        plot_lr_find(lrs, losses, suggested, Path(plot))
    return {"suggested_lr": suggested, "lrs": lrs, "losses": losses}


def _steepest(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest per log-lr, ignoring the diverging tail."""
    stop = min(range(len(losses)), key=losses.__getitem__) + 1
    if stop < 3:
        return lrs[0]
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(stop - 1)]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]
