"""Training events and the callbacks that listen to them.

The loop calls, in order: on_fit_start, then per epoch on_epoch_start,
on_batch_end (each step), on_epoch_end (with the metrics and the model); finally
on_fit_end. A callback is any object with some of these methods, taking keyword
arguments; it steers the loop by raising `StopTraining`.
"""

from __future__ import annotations

from typing import Any

EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_fit_end")


class StopTraining(Exception):
    """Raised by a callback to end training after the current epoch, keeping the run."""


def fire(callbacks: list[Any], event: str, **info: Any) -> None:
    for cb in callbacks:
        handler = getattr(cb, event, None)
        if handler is not None:
            handler(**info)


class EarlyStopping:
    """Stop when val accuracy has not improved for `patience` epochs."""

    def __init__(self, patience: int):
        self.patience, self.best, self.waited = patience, -1.0, 0

    def on_epoch_end(self, *, metrics: dict[str, float], **_: Any) -> None:
        acc = metrics.get("val_acc", -1.0)
        if acc > self.best:
            self.best, self.waited = acc, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            raise StopTraining(f"val accuracy has not improved for {self.patience} epochs")

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best, self.waited = state["best"], int(state["waited"])
