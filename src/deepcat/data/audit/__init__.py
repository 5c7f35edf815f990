"""Data audit: what is wrong with a data set before it is trained on.

One pass over every image (two processes, a progress bar) records a content hash, a
perceptual hash (imagehash's pHash, 64 bits), the size, colour and EXIF orientation, or
why it could not be read. Then, without touching the files:

- unreadable or truncated images;
- exact duplicates (same bytes, or same pixels for built-in sets) and near duplicates
  (pHash Hamming distance <= `near`), grouped, and each group labelled as a duplicate
  within a class, a label conflict (across classes) or a leak (across train/val/test);
- class counts and imbalance; tiny, huge, grayscale and odd-shaped images; EXIF rotation.

`fix_split` turns the findings into a cleaned split CSV that `deepcat train` reads.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from deepcat.data.audit.cache import audit_cached, write_json
from deepcat.data.audit.duplicates import groups, near_pairs
from deepcat.data.audit.findings import HUGE_PIXELS, NEAR_DUPLICATE_BITS, NEAR_DUPLICATE_MAE, ODD_ASPECT, Audit
from deepcat.data.audit.fix import CleanSplit, fix_split
from deepcat.data.audit.scan import ImageFacts, scan
from deepcat.data.sources import DataSplits, combined

__all__ = ["Audit", "CleanSplit", "audit", "audit_cached", "fix_split", "near_pairs", "write_json"]


def audit(splits: DataSplits, *, near: int = NEAR_DUPLICATE_BITS, workers: int = 2, progress: bool = True) -> Audit:
    """Audit every image of `splits` (as the run would split it) and return the findings."""
    everything, names, where = combined(splits)
    labels = everything.labels
    facts = scan(everything.items, workers=workers, progress=progress)
    ok = np.array([f.error is None for f in facts])
    result = Audit(data=splits.name, images=len(facts),
                   classes={c: int((labels == i).sum()) for i, c in enumerate(splits.classes)},
                   splits=dict(Counter(where)))
    result.unreadable = [{"index": int(i), "item": names[i], "error": facts[i].error} for i in np.nonzero(~ok)[0]]
    good = np.nonzero(ok)[0]
    result.duplicates = _duplicate_groups(facts, good, near, labels, names, where, splits.classes)
    _size_findings(result, facts, good, names)
    return result


def _duplicate_groups(facts: list[ImageFacts], good: np.ndarray, near: int, labels: np.ndarray, names: list[str],
                      where: list[str], classes: list[str]) -> list[dict[str, Any]]:
    """Groups of identical or near-identical images, each a duplicate within a class, a label conflict or a leak."""
    content = np.array([facts[i].content for i in good])
    phash = np.array([facts[i].phash for i in good], dtype=np.uint64)
    pairs = near_pairs(phash, near) if near >= 0 else None
    if pairs is not None and len(pairs):  # pHash proposes, the thumbnails confirm (pHash alone is coarse)
        thumbs = np.frombuffer(b"".join(facts[i].thumb for i in good), np.uint8).reshape(len(good), -1)
        mae = np.abs(thumbs[pairs[:, 0]].astype(np.int16) - thumbs[pairs[:, 1]]).mean(1)
        pairs = pairs[mae <= NEAR_DUPLICATE_MAE]
    found = []
    for g in groups(content, pairs):
        members = good[g]
        labels_in = {int(labels[i]) for i in members}
        splits_in = {where[i] for i in members}
        kind = "label_conflict" if len(labels_in) > 1 else "leak" if len(splits_in) > 1 else "duplicate"
        found.append({
            "kind": kind, "exact": len({facts[i].content for i in members}) == 1,
            "members": [{"index": int(i), "item": names[i], "label": classes[labels[i]], "split": where[i]}
                        for i in members]})
    return sorted(found, key=lambda g: ("leak", "label_conflict", "duplicate").index(g["kind"]))


def _size_findings(result: Audit, facts: list[ImageFacts], good: np.ndarray, names: list[str]) -> None:
    """Sizes, and the tiny, huge, odd-shaped, grayscale and EXIF-rotated images."""
    sides = np.array([[facts[i].width, facts[i].height] for i in good]).reshape(-1, 2)
    if len(sides):
        short, long_ = sides.min(1), sides.max(1)
        median_short = float(np.median(short))
        result.sizes = {"min": sides.min(0).tolist(), "median": np.median(sides, 0).tolist(),
                        "max": sides.max(0).tolist(),
                        "summary": f"{int(np.median(sides[:, 0]))}x{int(np.median(sides[:, 1]))} median"}
        for k, i in enumerate(good):
            if short[k] < max(8, 0.25 * median_short):
                result.tiny.append(names[i])
            if sides[k, 0] * sides[k, 1] > HUGE_PIXELS:
                result.huge.append(names[i])
            if long_[k] > ODD_ASPECT * short[k]:
                result.odd_shape.append(names[i])
    result.grayscale = [names[i] for i in good if facts[i].grayscale]
    result.exif_rotated = [names[i] for i in good if facts[i].exif_rotated]
