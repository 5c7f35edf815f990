"""`--fix`: the findings turned into a cleaned split CSV that `deepcat train` reads; the user's files stay as they
are."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepcat.data.audit.findings import Audit
from deepcat.data.sources import SPLIT_NAMES, DataSplits, combined
from deepcat.errors import DeepcatError

__all__ = ["CleanSplit", "fix_split"]


@dataclass
class CleanSplit:
    """The cleaned split `--fix` wrote: how many images it kept and dropped, and why."""

    path: Path
    kept: int
    dropped: int
    reasons: dict[str, int]  # unreadable, leak, label_conflict, duplicate -> images dropped


def fix_split(splits: DataSplits, found: Audit, path: Path) -> CleanSplit:
    """Write a cleaned split as a CSV (path,label,split) that `deepcat train` reads. The user's files stay as
    they are. Dropped: unreadable images; every copy of a label conflict (which label is right is unknown);
    leaked copies outside train's group (val/test keep their copy, train loses its); extra duplicates."""
    everything, names, where = combined(splits)
    items, labels = everything.items, everything.labels
    if isinstance(items, np.ndarray):
        raise DeepcatError(
            f"--fix writes a CSV of file paths; {splits.name} is a built-in data set held in "
            f"memory. Its audit findings are in the JSON file"
        )
    drop = {u["index"] for u in found.unreadable}
    reasons = Counter(unreadable=len(drop))
    for g in found.duplicates:
        members = [m["index"] for m in g["members"]]
        if "label_conflict" in g.get("kinds", [g["kind"]]):  # which label is right is unknown: drop every copy
            lost = members
        else:  # keep one copy, from the most held-out split present (test, then val, then train)
            keep = max(members, key=lambda i: (SPLIT_NAMES.index(where[i]), -i))
            lost = [i for i in members if i != keep]
        reasons[g["kind"]] += len(lost)
        drop.update(lost)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for i, item in enumerate(items):
            if i not in drop:
                writer.writerow([str(Path(item).resolve()), splits.classes[labels[i]], where[i]])
    return CleanSplit(path, len(items) - len(drop), len(drop), dict(reasons))
