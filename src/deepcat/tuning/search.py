"""`run_search`: one process's share of an Optuna study over deepcat training runs, on one machine or many.

Each trial is an ordinary training run (the fit loop; the winner alone is then calibrated and reported) with
its own run folder (tunes/NAME/trials/trial-0007). The fit
loop reports each epoch's validation accuracy through the callback events; the pruner (Hyperband)
stops poor trials early. A trial that fails (a diverging loss, out of memory, bad input) is recorded with its
error and the study goes on. The study lives in tunes/NAME/study.db (SQLite) unless `storage` names a database
that several `deepcat tune` processes on several machines share; heartbeats fail the trials of a killed worker,
and the trial cap holds across all of them.
"""

from __future__ import annotations

import csv
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcat.tuning.space import Space, suggest

__all__ = [
    "DIVERGED",
    "HEARTBEAT_S",
    "Budget",
    "ReportToOptuna",
    "StudyPlan",
    "TrialDiverged",
    "objective",
    "open_study",
    "parse_budget",
    "run_search",
]

HEARTBEAT_S = 10  # a trial whose worker is silent for 3 heartbeats is failed by the next worker that starts one


class TrialDiverged(Exception):
    """The training loss stopped being a number, or grew far past a uniform guess's: the trial fails with this
    error, the study goes on."""


DIVERGED = 3.0  # times the loss of a uniform guess, ln(classes): past it, training has blown up


class ReportToOptuna:
    """Training callback: each epoch's validation accuracy to the trial; prunes (raises) when the pruner says so."""

    def __init__(self, trial: Any, classes: int):
        self.trial, self.limit = trial, DIVERGED * math.log(max(classes, 2))

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float], **_: Any) -> None:
        import optuna

        loss = metrics["train_loss"]
        if not math.isfinite(loss) or loss > self.limit:
            raise TrialDiverged(
                f"the training loss diverged to {loss:.4g} in epoch {epoch + 1} "
                f"(a uniform guess scores {self.limit / DIVERGED:.3g})"
            )
        self.trial.report(metrics.get("val_acc", metrics["train_acc"]), step=epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


@dataclass
class Budget:
    trials: int | None
    seconds: float | None
    started: float

    def left(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.seconds - (time.perf_counter() - self.started))


def parse_budget(text: str | None) -> float | None:
    """'30m', '2h', '90s' or seconds as a number -> seconds."""
    from deepcat.errors import DeepcatError

    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise DeepcatError(f"budget must be like 30m, 2h or 90s; received {text!r}") from None


def open_study(*, name: str, storage: str, seed: int, pruning: bool) -> Any:
    """Create or load the study (the same command again continues it)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in practice
        if storage.startswith("postgresql://"):  # SQLAlchemy's default driver is psycopg2; deepcat ships psycopg 3
            storage = "postgresql+psycopg://" + storage.removeprefix("postgresql://")
        rdb = _storage(storage)
    # Hyperband: brackets of successive halving from different first rungs, so a trial that starts slowly
    # (a high lr early in a one-cycle schedule) is not always judged after its first epoch. Plain successive
    # halving from epoch 1 pruned 9 of 10 trials in one benchmark seed and kept a worse one than the default.
    pruner = (
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
        if pruning
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
    )


def _storage(url: str, attempts: int = 5) -> Any:
    """The study database; processes that start together on a fresh one race to create its tables, and the
    losers retry once the winner is done."""
    import random

    import optuna
    import sqlalchemy.exc

    for _ in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S)
        except sqlalchemy.exc.SQLAlchemyError:
            time.sleep(0.5 + random.random())
    return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S)


def objective(base: dict[str, Any], space: Space, trials_dir: Path, cap: int | None, classes: int) -> Any:
    """An Optuna objective: train one run with the trial's point of the space; its score is the best val accuracy."""

    def run_trial(trial: Any) -> float:
        import optuna

        from deepcat.config import resolve_config
        from deepcat.training.loop import fit

        if cap is not None and trial.number >= cap:  # numbers are handed out by the shared storage, in order
            trial.set_user_attr("over_cap", True)
            trial.study.stop()
            raise optuna.TrialPruned(f"the study already has its {cap} trials")
        trial.set_user_attr(
            "worker", f"{socket.gethostname()}:{os.getpid()}"
        )  # set first: pruned and failed trials keep it
        values = suggest(trial, space)
        cfg = resolve_config(**{**base, **values, "output": str(trials_dir), "name": f"trial-{trial.number:04d}"})
        try:
            run = fit(cfg, callbacks=[ReportToOptuna(trial, classes)], progress=False).run_dir  # judged if it wins
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded with the trial; `optimize(catch=...)` marks it failed and goes on
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        trial.set_user_attr("run", str(run))
        rows = list(csv.DictReader((run / "metrics.csv").open()))
        return max(float(r.get("val_acc") or r["train_acc"]) for r in rows)

    return run_trial


@dataclass(frozen=True)
class StudyPlan:
    """One study, as every worker process runs it (picklable: helpers get it through `spawn`)."""

    base: dict[str, Any]  # the training configuration the trials start from (fixed options included)
    space: Space  # what they vary
    folder: Path  # tunes/NAME: study.db, trials/, the results
    study_name: str
    storage: str | None  # a database URL shared by several processes or machines; None: folder/study.db
    budget: Budget
    seed: int
    pruning: bool
    classes: int  # for the divergence bound


def run_search(plan: StudyPlan, *, progress: bool) -> Any:
    """Optimise until the trial cap (across every process on this study) or the time budget; Ctrl-C stops
    cleanly, keeping every finished trial."""
    from optuna.study import MaxTrialsCallback

    plan.folder.mkdir(parents=True, exist_ok=True)
    study = open_study(
        name=plan.study_name,
        seed=plan.seed,
        pruning=plan.pruning,
        storage=plan.storage or f"sqlite:///{plan.folder.resolve() / 'study.db'}",
    )
    budget = plan.budget
    callbacks: list[Any] = [_Progress(budget, enabled=progress)]
    if budget.trials is not None:  # the cap holds across every process on the study
        if len(study.get_trials(deepcopy=False)) >= budget.trials:
            return study
        callbacks.insert(0, MaxTrialsCallback(budget.trials, states=None))
    try:
        study.optimize(
            objective(plan.base, plan.space, plan.folder / "trials", budget.trials, plan.classes),
            n_trials=budget.trials,
            timeout=budget.left(),
            catch=(Exception,),
            callbacks=callbacks,
            gc_after_trial=True,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are kept; run the same command to continue", file=sys.stderr)
    return study


class _Progress:
    """One line per finished trial: done, pruned, failed, the best score so far and the time left."""

    def __init__(self, budget: Budget, *, enabled: bool):
        self.budget, self.enabled = budget, enabled

    def __call__(self, study: Any, trial: Any) -> None:
        if not self.enabled:
            return
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        count = {
            s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        }
        best = max((t.value for t in trials if t.state == TrialState.COMPLETE), default=float("nan"))
        left = self.budget.left()
        print(
            f"trial {trial.number} {trial.state.name.lower()}: {count[TrialState.COMPLETE]} done, "
            f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed; best val accuracy {best:.4f}"
            + (f"; {left / 60:.1f} min left" if left is not None else ""),
            file=sys.stderr,
        )
