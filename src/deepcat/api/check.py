"""`deepcat check`: audit DATA as training would split it; clean it, look for label errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepcat.config import TrainConfig
from deepcat.data.audit.findings import NEAR_DUPLICATE_BITS

__all__ = ["CheckResult", "check"]

if TYPE_CHECKING:
    from deepcat.data.audit import Audit, CleanSplit
    from deepcat.evaluation.label_errors import LabelErrors


@dataclass
class CheckResult:
    """What `deepcat check` found and wrote."""

    audit: Audit
    audit_path: Path  # audit.json
    clean: CleanSplit | None = None  # with fix=True: the cleaned split CSV
    label_errors: LabelErrors | None = None  # with labels=RUN


def check(
    data: str,
    *,
    val_fraction: float = TrainConfig.val_fraction,
    seed: int = TrainConfig.seed,
    classes: str | None = TrainConfig.classes,
    data_root: str | None = TrainConfig.data_root,
    modality: str = TrainConfig.modality,
    near: int = NEAR_DUPLICATE_BITS,
    fix: bool = False,
    labels: str | Path | None = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> CheckResult:
    """Audit DATA as `deepcat.train` would split it (the same split options): unreadable files, duplicates,
    leaks, imbalance. `fix` writes a cleaned split CSV (your files are never touched); `labels=RUN` finds likely
    mislabelled inputs with a run trained on DATA.

    Args:
        data: `TrainConfig.data`.
        val_fraction: `TrainConfig.val_fraction`.
        seed: `TrainConfig.seed`.
        classes: `TrainConfig.classes`.
        data_root: `TrainConfig.data_root`.
        modality: `TrainConfig.modality`.
        near: perceptual-hash bits within which images are near duplicates.
        fix: write clean.csv: duplicates, leaks, conflicts and unreadable files removed.
        labels: find label errors with this run's network (trained on DATA).
        output: folder for audit.json and clean.csv (default: checks/<data name>).
        progress: show progress bars.

    Returns:
        A `CheckResult`: the `Audit`, audit.json's path, and the cleaned split and label errors when asked.

    Examples:
        >>> found = deepcat.check("pets").audit
        >>> found.count("leak"), found.unreadable
    """
    from deepcat.data import audit
    from deepcat.data.resolve import splits_of

    splits = splits_of(
        dict(data=data, val_fraction=val_fraction, seed=seed, classes=classes, data_root=data_root, modality=modality)
    )
    out = Path(output or Path("checks") / splits.name)
    found = audit.audit(splits, near=near, progress=progress)
    audit.write_json(found, out / "audit.json")
    result = CheckResult(found, out / "audit.json")
    if fix:
        result.clean = audit.fix_split(splits, found, out / "clean.csv")
    if labels:
        from deepcat.evaluation.finish import check_labels

        result.label_errors = check_labels(labels, splits, progress=progress)
    return result
