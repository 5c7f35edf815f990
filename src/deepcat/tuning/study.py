"""A whole search: the plan from the options (the data's splits, the `auto` recipe, its default space less what the
user fixed), `workers` processes sharing one study, and the results files. `api.tune` only translates to this
and has the winner judged."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from deepcat.config import TrainConfig
from deepcat.data.resolve import splits_of
from deepcat.data.sources import DataSplits
from deepcat.errors import DeepcatError
from deepcat.training.recipe import resolve_auto
from deepcat.tuning.results import TuneResult, write_results
from deepcat.tuning.search import Budget, StudyPlan, parse_budget, run_search
from deepcat.tuning.space import default_space, read_space, without_fixed

__all__ = ["Search", "search", "torchrun_workers"]


@dataclass(frozen=True)
class Search:
    """How long and where to search (`deepcat tune`'s own options; the training options are the config)."""

    budget: str | None = None  # wall time: "30m", "2h"
    trials: int | None = None  # a trial count across every process on the study
    space: str | Path | None = None  # a YAML space file; None: the default around the auto recipe
    workers: int = 1  # trial processes on this machine
    storage: str | None = None  # a database URL shared by processes on many machines
    study: str | None = None  # the study's name (default: the data's)
    pruning: bool = True


def torchrun_workers() -> tuple[int, int, Callable[[], None]]:
    """Under torchrun every process is a search worker on the one study, and its trials train alone (never with
    DDP: each trial has its own hyper-parameters): its rank, the number of processes and a barrier (gloo), and
    torchrun's variables cleared so that the trials see one process. Alone: 0, 1 and a no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, lambda: None
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK"):
        os.environ.pop(name, None)

    def barrier() -> None:
        dist.barrier()

    return rank, world, barrier


def search(
    cfg: TrainConfig, fixed: dict[str, Any], how: Search, *, progress: bool
) -> tuple[TuneResult, DataSplits, bool]:
    """Run the study and write its results; `fixed` are the options given explicitly (never searched). Returns
    the results, the data's splits (the winner is judged on them) and whether this process is the one that
    writes the results and judges the winner (under torchrun: rank 0)."""
    if how.budget is None and how.trials is None:
        raise DeepcatError("say how long to search: --budget 30m (wall time) or --trials N, or both")
    if how.workers < 1:
        raise DeepcatError(f"workers must be >= 1; received {how.workers}")
    splits = splits_of(cfg.to_dict())
    auto = resolve_auto(cfg, splits)
    space = (
        read_space(how.space)
        if how.space
        else default_space(
            model=auto.model,
            pretrained=bool(auto.pretrained or auto.weights),
            epochs=cast(int, auto.epochs),
            lr=float(cast(float, auto.lr)),
        )
    )
    name = how.study or splits.name
    folder = Path(cfg.output if "output" in fixed else "tunes") / name
    plan = StudyPlan(
        base=cfg.to_dict(),
        space=without_fixed(space, fixed),
        folder=folder,
        study_name=name,
        storage=how.storage,
        budget=Budget(how.trials, parse_budget(how.budget), time.perf_counter()),
        seed=cfg.seed,
        pruning=how.pruning,
        classes=len(splits.classes),
    )
    rank, world, barrier = torchrun_workers()
    # each worker its own sampler seed: with one seed, workers started together drew the same first trials
    seeds = [cfg.seed + rank * how.workers + i for i in range(how.workers)]
    helpers = [
        multiprocessing.get_context("spawn").Process(
            target=run_search, args=(dataclasses.replace(plan, seed=seed),), kwargs={"progress": False}
        )
        for seed in seeds[1:]
    ]
    for helper in helpers:
        helper.start()
    study = run_search(dataclasses.replace(plan, seed=seeds[0]), progress=progress and rank == 0)
    for helper in helpers:
        helper.join()
    barrier()  # every worker done: the study holds every trial
    result = write_results(study, folder, write=rank == 0)  # reads the storage: every worker's trials are in it
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result, splits, rank == 0
