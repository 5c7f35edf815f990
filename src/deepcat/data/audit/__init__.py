"""Data audit: what is wrong with a data set before it is trained on.

One pass over every input (two processes, a progress bar) records what its input kind inspects
(`deepcat.inputs`; images: a content hash, imagehash's 64-bit pHash, the size, colour and EXIF
orientation), or why it could not be read. Then, without touching the files:

- unreadable or truncated files;
- exact duplicates (same bytes, or same pixels for built-in sets) and near duplicates
  (perceptual-hash Hamming distance <= `near`, confirmed on a thumbnail), grouped, and each group
  labelled as a duplicate within a class, a label conflict (across classes) or a leak (across splits);
- class counts and imbalance; the kind's own flags (images: tiny, huge, grayscale, odd-shaped, EXIF-rotated).

`fix_split` turns the findings into a cleaned split CSV that `deepcat train` reads.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import numpy as np

from deepcat.data.audit.cache import audit_cached, write_json
from deepcat.data.audit.duplicates import groups, near_pairs
from deepcat.data.audit.findings import GROUP_KINDS, NEAR_DUPLICATE_BITS, NEAR_DUPLICATE_MAE, Audit
from deepcat.data.audit.fix import CleanSplit, fix_split
from deepcat.data.audit.scan import scan
from deepcat.data.shards import ShardMembers
from deepcat.data.sources import DataSplits, combined
from deepcat.inputs import Facts, input_kind

__all__ = ["Audit", "CleanSplit", "audit", "audit_cached", "fix_split", "near_pairs", "write_json"]


def audit(splits: DataSplits, *, near: int = NEAR_DUPLICATE_BITS, workers: int = 2, progress: bool = True) -> Audit:
    """Audit every input of `splits` (as the run would split it) and return the findings."""
    everything, names, where = combined(splits)
    labels = everything.labels
    kind = input_kind(splits.input_kind)
    if isinstance(everything.items, ShardMembers):
        facts = everything.items.facts()  # `deepcat shard` recorded them
    else:
        facts = scan(cast("list[str] | np.ndarray", everything.items), kind, workers=workers, progress=progress)
    ok = np.array([f.error is None for f in facts])
    result = Audit(
        data=splits.name,
        images=len(facts),
        classes={c: int((labels == i).sum()) for i, c in enumerate(splits.classes)},
        splits=dict(Counter(where)),
        flag_labels=kind.flag_labels,
        input_kind=kind.name,
    )
    result.unreadable = [{"index": int(i), "item": names[i], "error": facts[i].error} for i in np.nonzero(~ok)[0]]
    good = np.nonzero(ok)[0]
    result.duplicates = _duplicate_groups(facts, good, near, labels, names, where, splits.classes)
    result.sizes, result.flags = kind.flags([facts[i] for i in good], [names[i] for i in good])
    return result


def _duplicate_groups(
    facts: list[Facts],
    good: np.ndarray,
    near: int,
    labels: np.ndarray,
    names: list[str],
    where: list[str],
    classes: list[str],
) -> list[dict[str, Any]]:
    """Groups of identical or near-identical inputs. A group is a leak (in more than one split), a label conflict
    (under more than one label), both at once, or else a duplicate within a class; `kind` is the first of those
    that holds, `kinds` all of them. Each member says whether it is byte-identical (`exact`) to another."""
    content = np.array([facts[i].content for i in good])
    fingerprints = np.array([facts[i].fingerprint for i in good], dtype=np.uint64)
    pairs = near_pairs(fingerprints, near) if near >= 0 else None
    if pairs is not None and len(pairs):  # the perceptual hash proposes, the thumbnails confirm (it is coarse)
        thumbs = np.frombuffer(b"".join(facts[i].thumb for i in good), np.uint8).reshape(len(good), -1)
        confirmed = [  # in chunks: a data set of many copies proposes millions of pairs
            chunk[np.abs(thumbs[chunk[:, 0]].astype(np.int16) - thumbs[chunk[:, 1]]).mean(1) <= NEAR_DUPLICATE_MAE]
            for chunk in np.array_split(pairs, len(pairs) // 100_000 + 1)
        ]
        pairs = np.concatenate(confirmed)
    found = []
    for g in groups(content, pairs):
        members = good[g]
        kinds = [
            kind
            for kind, holds in (
                ("leak", len({where[i] for i in members}) > 1),
                ("label_conflict", len({int(labels[i]) for i in members}) > 1),
            )
            if holds
        ]
        kinds = kinds or ["duplicate"]
        copies = Counter(facts[i].content for i in members)
        found.append(
            {
                "kind": kinds[0],
                "kinds": kinds,
                "exact": len(copies) == 1,
                "members": [
                    {
                        "index": int(i),
                        "item": names[i],
                        "label": classes[labels[i]],
                        "split": where[i],
                        "exact": copies[facts[i].content] > 1,
                    }
                    for i in members
                ],
            }
        )
    return sorted(found, key=lambda g: GROUP_KINDS.index(g["kind"]))
