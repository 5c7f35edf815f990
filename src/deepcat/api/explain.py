"""`deepcat explain`: Grad-CAM heatmaps, where the network found its evidence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

__all__ = ["explain"]

if TYPE_CHECKING:
    from deepcat.evaluation.explain import Explanation
    from deepcat.inference.answers import InputItem


def explain(
    run: str | Path, images: Sequence[InputItem], *, target: str | None = None, output: str | Path | None = None
) -> list[Explanation]:
    """Grad-CAM for each image (files, folders, globs or in-memory images): where the network found evidence for
    `target` (a class name) or for the class it predicted. With `output`, one PNG per image is written there.

    Args:
        run: a run folder.
        images: files, folders or globs (in Python also in-memory images).
        target: the class to explain (default: the predicted class).
        output: a folder for the PNGs, one per image.

    Returns:
        One `Explanation` per image: its label, probability and heatmap.

    Examples:
        >>> deepcat.explain("runs/pets", ["cat.jpg"], output="explain/")[0].label
    """
    from deepcat.evaluation.explain import explain_run
    from deepcat.inference.answers import expand_inputs

    return explain_run(Path(run), expand_inputs(images), target=target, output=output)
