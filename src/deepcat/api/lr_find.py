"""`deepcat lr-find`: sweep the learning rate and suggest one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from typing_extensions import Unpack

from deepcat.config import TrainOptions

__all__ = ["lr_find"]

if TYPE_CHECKING:
    from deepcat.training.lr_find import LrFind


def lr_find(  # type: ignore[misc]  # DATA may come first, as on the command line
    data: str | None = None,
    *,
    config: str | Path | None = None,
    steps: int = 100,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    plot: str | Path | None = "lr_find.png",
    progress: bool = True,
    **options: Unpack[TrainOptions],
) -> LrFind:
    """Raise the lr exponentially over `steps` batches and suggest the one where the loss falls fastest
    (as fastai's `lr_find`); the options are `train`'s. `plot=None` draws no plot.

    Args:
        data: `TrainConfig.data`, as for `train`.
        config: a YAML file of options, as for `train`.
        steps: batches to sweep over.
        start_lr: the sweep's first learning rate.
        end_lr: the sweep's last learning rate.
        plot: where to save the loss-against-lr plot.
        progress: show a bar.
        options: the fields of `TrainConfig`, as for `train`.

    Returns:
        An `LrFind`: the rates, losses and the suggested lr.

    Examples:
        >>> deepcat.lr_find("digits").suggested_lr
    """
    from deepcat.config import resolve_config
    from deepcat.training.lr_find import sweep

    if data is not None:
        options["data"] = data
    return sweep(
        resolve_config(config_file=config, **options),
        start_lr=start_lr,
        end_lr=end_lr,
        steps=steps,
        plot=plot,
        progress=progress,
    )
