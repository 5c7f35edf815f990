"""`deepcat train`: fit a classifier on DATA and leave a run folder (weights, metrics, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typing_extensions import Unpack

from deepcat.config import TrainOptions
from deepcat.errors import DeepcatError

__all__ = ["train"]


def train(  # type: ignore[misc]  # DATA may come first, as on the command line
    data: str | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    **options: Unpack[TrainOptions],
) -> Path:
    """Train a classifier and return its run folder. `options` are the fields of `TrainConfig` (flags of
    `deepcat train`); `config` is a YAML file of them (arguments win). After fitting, the best weights are
    calibrated, scored on the test split and reported (`report.html`). With `quick=True` the fitting is a linear
    head on the pretrained backbone's cached features (`deepcat.teach`), in seconds, judged the same way.

    Args:
        data: `TrainConfig.data`; may also come in `options` or `config`.
        config: a YAML file of options (arguments and command-line flags win).
        resume: continue an interrupted run folder (only epochs may change).
        callbacks: objects with some of the `on_*` event methods.
        progress: show progress bars.
        options: the fields of `TrainConfig`.

    Returns:
        The run folder (config.yaml, model.json, the weights, metrics, report.html).

    Examples:
        >>> run = deepcat.train("pets", model="resnet18", epochs=5)
        >>> deepcat.train(resume=run)  # continue an interrupted run
        >>> deepcat.train("pets", quick=True)  # a first model in seconds
    """
    from deepcat.config import resolve_config
    from deepcat.evaluation.finish import after_training
    from deepcat.training.checkpoint import restarted_run, resume_point
    from deepcat.training.loggers import log_run_folder
    from deepcat.training.loop import fit

    if data is not None:
        options["data"] = data
    if not resume:
        cfg, state = resolve_config(config_file=config, **options), None
        resume = restarted_run(Path(cfg.output))  # torchrun restarted the workers: continue its run
    if resume:
        cfg, state = resume_point(Path(resume), dict(options))
    if cfg.quick:
        from deepcat.teach.quick_run import fit_quick_run

        if resume or callbacks:
            raise DeepcatError(
                f"a --quick run is fitted in one step, without epochs: it takes neither resume nor callbacks "
                f"(received resume={resume}, {len(callbacks or [])} callbacks). Run it again, or train without quick"
            )
        fitted = fit_quick_run(cfg, progress=progress)
    else:
        fitted = fit(cfg, state=state, run_dir=Path(resume) if resume else None, callbacks=callbacks, progress=progress)
    if fitted.is_main:
        after_training(fitted.run_dir, fitted.splits, progress=progress)
        log_run_folder(fitted.run_dir, cfg)
    return fitted.run_dir
