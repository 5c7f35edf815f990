"""Training events and the callbacks that listen to them.

The loop calls, in order: on_fit_start, then per epoch on_epoch_start,
on_batch_end (each step), on_epoch_end (with the metrics and the model); finally
on_fit_end. A callback is any object with some of these methods, taking keyword
arguments; it steers the loop by raising `StopTraining`. Saving the run folder is a
built-in callback too (`checkpoint.Checkpoint`), as fastai's SaveModelCallback is.
"""

from __future__ import annotations

from typing import Any

from deepcat.errors import DeepcatError, did_you_mean

__all__ = ["EVENTS", "EarlyStopping", "StopTraining", "check_callbacks", "fire"]

EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_fit_end")


class StopTraining(Exception):
    """Raised by a callback to end training after the current epoch, keeping the run."""


def check_callbacks(callbacks: list[Any]) -> None:
    """Refuse a callback with an `on_*` method that is no event (a misspelt one would never be called)."""
    for cb in callbacks:
        for name in dir(cb):
            if name.startswith("on_") and name not in EVENTS and callable(getattr(cb, name)):
                raise DeepcatError(
                    f"{type(cb).__name__}.{name} is not a training event and would never be called."
                    f"{did_you_mean(name, EVENTS)} The events are: {', '.join(EVENTS)}"
                )


def fire(callbacks: list[Any], event: str, **info: Any) -> None:
    """Call `event` on every callback that has it; a `StopTraining` is raised after all have run, so a stop
    asked for by one callback never keeps a later one (the checkpoint) from seeing the epoch."""
    stop: StopTraining | None = None
    for cb in callbacks:
        handler = getattr(cb, event, None)
        if handler is None:
            continue
        try:
            handler(**info)
        except StopTraining as e:
            stop = stop or e
    if stop is not None:
        raise stop


class EarlyStopping:
    """Stop when the best weights have not changed for `patience` epochs: the loop's own rule decides (higher val
    accuracy, ties broken by lower val loss), so stopping and `best.safetensors` never disagree."""

    def __init__(self, patience: int):
        self.patience, self.waited = patience, 0

    def on_epoch_end(self, *, improved: bool, **_: Any) -> None:
        if improved:
            self.waited = 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            raise StopTraining(f"val accuracy and loss have not improved for {self.patience} epochs")

    def state_dict(self) -> dict[str, float]:
        return {"waited": self.waited}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.waited = int(state["waited"])
