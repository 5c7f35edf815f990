"""`deepcat tune`: search training options with Optuna within a time or trial budget."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from typing_extensions import Unpack

from deepcat.config import TrainOptions

__all__ = ["tune"]

if TYPE_CHECKING:
    from deepcat.tuning.results import TuneResult


def tune(  # type: ignore[misc]  # DATA may come first, as on the command line
    data: str | None = None,
    *,
    config: str | Path | None = None,
    budget: str | None = None,
    trials: int | None = None,
    space: str | Path | None = None,
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    pruning: bool = True,
    progress: bool = True,
    **options: Unpack[TrainOptions],
) -> TuneResult:
    """Search training options with Optuna (TPE, seeded; poor trials pruned from their per-epoch validation
    accuracy) for `budget` or `trials`, whichever ends first. `options` are fixed, the rest of `space` is
    searched. The study lives in tunes/STUDY/study.db (OUTPUT/STUDY/ when `output` is given), or in `storage`
    shared by processes on many machines. The same call again continues the study.

    Args:
        data: `TrainConfig.data`, as for `train`.
        config: a YAML file of fixed options.
        budget: wall time, e.g. 30m, 2h, 90s.
        trials: trials in all (across every process on the study).
        space: a YAML search space (default: one for the model auto picks).
        workers: trial processes on this machine (each trial loads its data with the train default).
        storage: a shared study database, e.g. postgresql://user@host/db (default: SQLite in
            tunes/STUDY/study.db).
        study: the study's name (default: the data's name).
        pruning: stop poor trials early from their per-epoch validation accuracy.
        progress: a line per trial.
        options: the fields of `TrainConfig`, as for `train`; those given are fixed.

    Returns:
        A `TuneResult`: trials, the best score, best.yaml and the best run's folder.

    Examples:
        >>> result = deepcat.tune("digits", trials=20)
        >>> result.best_value, result.best_config   # tunes/digits/best.yaml: `deepcat train --config` it
    """
    from deepcat.config import resolve_config
    from deepcat.evaluation.finish import after_training
    from deepcat.tuning.study import Search, search

    if data is not None:
        options["data"] = data
    fixed = {k: v for k, v in options.items() if v is not None}
    result, splits, judge = search(
        resolve_config(config_file=config, **options),
        fixed,
        Search(budget, trials, space, workers, storage, study, pruning),
        progress=progress,
    )
    if judge and result.best_run is not None and not (result.best_run / "report.html").is_file():
        after_training(result.best_run, splits, progress=progress)  # the winner, calibrated and reported
    return result
