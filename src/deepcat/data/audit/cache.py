"""Audits remembered per data set and split, and written as JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from deepcat.data.audit.findings import NEAR_DUPLICATE_BITS, NEAR_DUPLICATE_MAE, Audit
from deepcat.data.shards import ShardMembers
from deepcat.data.sources import SPLIT_NAMES, DataSplits

__all__ = ["audit_cached", "write_json"]


def _fingerprint(splits: DataSplits, near: int) -> str:
    """Changes when any image, label or split assignment changes (file size and mtime stand in for content)."""
    import os

    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{splits.name}|{splits.classes}|{near}|{NEAR_DUPLICATE_MAE}|v4".encode())
    for name in SPLIT_NAMES:
        samples = splits.split(name)
        if samples is None:
            continue
        digest.update(name.encode() + samples.labels.tobytes())
        if samples.in_memory:
            digest.update(np.ascontiguousarray(samples.items).data)
        elif isinstance(samples.items, ShardMembers):  # shards are written once: their manifest's id and the rows
            digest.update(samples.items.token.encode() + samples.items.row.tobytes())
        else:
            for path in samples.items:
                stat = os.stat(path)
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def audit_cached(
    splits: DataSplits, *, near: int = NEAR_DUPLICATE_BITS, progress: bool = True, cache: Path | None = None
) -> Audit:
    """`audit`, remembered per data set and split in ~/.cache/deepcat/audit: a second run on the same data
    (the usual case when tuning) costs a hash instead of a pass over every image."""
    cache = cache or Path.home() / ".cache" / "deepcat" / "audit"
    path = cache / f"{_fingerprint(splits, near)}.json"
    if path.is_file():
        try:
            return Audit(**json.loads(path.read_text()))
        except (TypeError, ValueError):
            pass  # an older format: audit again
    from deepcat.data.audit import audit

    found = audit(splits, near=near, progress=progress)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(found)))
    tmp.replace(path)
    return found


def write_json(found: Audit, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found.to_dict(), indent=2))
