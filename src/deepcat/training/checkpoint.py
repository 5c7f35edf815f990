"""The run folder's writer during training: rank 0's built-in callback, called after every epoch.

Every file is written to a temporary name and renamed, so a process killed at any moment (SIGKILL
included) leaves the previous epoch's files whole and `--resume` continues from them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn

from deepcat.config import TrainConfig
from deepcat.errors import DeepcatError
from deepcat.run_folder import atomic_write, load_state, read_config, save_state, save_weights

__all__ = [
    "ELASTIC_MARK",
    "RESUMABLE",
    "Checkpoint",
    "mark_elastic_run",
    "restarted_run",
    "resume_point",
    "write_metrics",
]

ELASTIC_MARK = "torchrun_run_id"  # in a run folder trained under torchrun: which torchrun job wrote it


def mark_elastic_run(run_dir: Path) -> None:
    """Under torchrun, note its job's id in the run folder, so a restarted worker finds the run to continue."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id:
        atomic_write(run_dir / ELASTIC_MARK, run_id.encode())


def restarted_run(output: Path) -> Path | None:
    """Under torchrun after a restart (`--max-restarts`: a worker failed, every worker starts again), the run
    folder in `output` that this torchrun job's first attempt wrote, when it saved a checkpoint; else None. The
    folder must be on storage every node reads, as for `--resume`."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if not run_id or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return None
    for mark in sorted(output.glob(f"*/{ELASTIC_MARK}"), key=lambda p: p.stat().st_mtime, reverse=True):
        if mark.read_text() == run_id and (mark.parent / "state.pt").is_file():
            return mark.parent
    return None


class Checkpoint:
    """After each epoch: last (and, when val improved, best) weights, the resume state, metrics.csv, curves.png
    and one printed line. `state` returns what `--resume` needs (optimiser, counters, ...)."""

    def __init__(self, run_dir: Path, state: Callable[[], dict[str, Any]], *, plot: bool = True):
        self.run_dir, self.state, self.plot = run_dir, state, plot

    def on_epoch_end(
        self,
        *,
        metrics: dict[str, float],
        history: list[dict[str, float]],
        eval_model: nn.Module,
        improved: bool,
        **_: Any,
    ) -> None:
        save_weights(eval_model, self.run_dir / "last.safetensors")
        if improved:
            save_weights(eval_model, self.run_dir / "best.safetensors")
        save_state(self.run_dir, self.state())
        write_metrics(self.run_dir / "metrics.csv", history)
        if self.plot:
            from deepcat.evaluation.plots import plot_curves

            plot_curves(history, self.run_dir / "curves.png")
        print(
            "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()),
            file=sys.stderr,
        )


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """metrics.csv, one row per finished epoch, rewritten whole (a resumed run's file matches an uninterrupted one)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path, out.getvalue().encode())


RESUMABLE = ("epochs",)  # options a resumed run may change: train for longer


def resume_point(run_dir: Path, options: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The saved configuration and state of `run_dir`. A resumed run keeps its configuration (changing the lr or
    the data half way would not give the run the folder describes): an option that differs from it is an error,
    except `epochs`."""
    state = load_state(run_dir)
    for stale in run_dir.glob("*.tmp"):  # half-written by a process killed while saving
        stale.unlink()
    cfg = TrainConfig(**read_config(run_dir))
    changed = {k: v for k, v in options.items() if v is not None and k not in RESUMABLE and getattr(cfg, k) != v}
    if changed:
        names = ", ".join(f"{k}={v!r} (run has {getattr(cfg, k)!r})" for k, v in changed.items())
        raise DeepcatError(
            f"a resumed run keeps its configuration; it cannot change {names}. Only "
            f"{', '.join(RESUMABLE)} can change when resuming; start a new run for the others"
        )
    return (dataclasses.replace(cfg, epochs=options["epochs"]) if options.get("epochs") else cfg), state
