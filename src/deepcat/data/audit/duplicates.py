"""Exact and near duplicates: groups of images joined by equal content hashes or close perceptual hashes."""

from __future__ import annotations

import numpy as np

__all__ = ["groups", "near_pairs"]


def groups(keys: np.ndarray, pairs: np.ndarray | None = None) -> list[list[int]]:
    """Connected groups (size >= 2) of indices joined by equal `keys` or by `pairs` (union-find)."""
    parent = np.arange(len(keys))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = np.argsort(keys, kind="stable")
    same = np.nonzero(keys[order][1:] == keys[order][:-1])[0]
    joins = [(order[i], order[i + 1]) for i in same]
    if pairs is not None:
        joins += [tuple(p) for p in pairs]
    for a, b in joins:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for i in {int(i) for pair in joins for i in pair}:
        members.setdefault(find(i), []).append(i)
    return sorted((sorted(g) for g in members.values() if len(g) > 1), key=lambda g: g[0])


def near_pairs(hashes: np.ndarray, max_bits: int, block: int = 256) -> np.ndarray:
    """All pairs (i < j) of 64-bit hashes that differ in at most `max_bits` bits: every pair, in blocks,
    vectorised (~13 s for 70,000 images on 2 cores). Multi-index hashing was 5x slower on Fashion-MNIST,
    whose hashes share pieces far more often than random ones."""
    hashes = hashes.astype(np.uint64)
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        distance = np.bitwise_count(rows[:, None] ^ hashes[None, start:])  # (block, n - start)
        i, j = np.nonzero(distance <= max_bits)
        keep = j > i  # upper triangle, no self-pairs
        found.append(np.stack([i[keep] + start, j[keep] + start], 1))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)
