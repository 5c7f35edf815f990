"""`deepcat evaluate`: score a run on DATA (its own test split by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from deepcat.config import TrainConfig

__all__ = ["evaluate"]

if TYPE_CHECKING:
    from deepcat.evaluation.scores import Evaluation


def evaluate(
    run: str | Path,
    data: str | None = None,
    *,
    batch_size: int = 256,
    device: str = TrainConfig.device,
    amp: str = TrainConfig.amp,
    which: Literal["best", "last"] = "best",
    progress: bool = True,
) -> Evaluation:
    """Score a run on DATA (default: its own test split, else val); writes RUN/evaluation/.

    Args:
        run: a run folder (printed by `deepcat train`).
        data: data to score on (default: the run's own test split, else val).
        batch_size: inputs per forward pass.
        device: `TrainConfig.device`.
        amp: `TrainConfig.amp`.
        which: the weights: best (val accuracy, then loss) or last.
        progress: show a bar.

    Returns:
        An `Evaluation`: accuracy, top-k accuracy, ECE, per-class metrics and the confusion matrix.

    Examples:
        >>> deepcat.evaluate("runs/smallcnn-digits").accuracy
    """
    from deepcat.evaluation.scores import evaluate_run

    return evaluate_run(
        Path(run), data=data, batch_size=batch_size, device=device, amp=amp, which=which, progress=progress
    )
