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


BIG_BUCKET = 256  # a bucket of more hashes than this is searched all-pairs, in blocks, rather than offset by offset


def near_pairs(hashes: np.ndarray, max_bits: int) -> np.ndarray:
    """All pairs (i < j) of 64-bit hashes that differ in at most `max_bits` bits, sorted. On random hashes it
    compares about n^2 / 2^13 pairs per piece at 4 bits instead of n^2 / 2: still quadratic, but 1.28 million
    hashes (ImageNet's size, clustered as real ones are) take about half a minute on 2 cores where every pair
    would take over an hour (`benchmarks/audit.py`).

    Pigeonhole: cut the 64 bits into `max_bits + 1` pieces; two hashes within `max_bits` bits agree exactly on at
    least one piece. For each piece, the hashes are sorted by it, and only hashes sharing that piece are compared.
    Hashes that share a piece with few others are compared offset by offset along the sorted order (the k-th
    comparison, for every hash at once); a piece shared by many (images with large plain areas share most of
    their hash: Fashion-MNIST's do) is compared all-pairs within its bucket. The same pairs as comparing every
    pair: `tests/test_audit.py` checks both, on random hashes and on Fashion-MNIST's."""
    hashes = np.ascontiguousarray(hashes).astype(np.uint64)
    n, pieces = len(hashes), max_bits + 1
    if n < 2 or max_bits < 0:
        return np.zeros((0, 2), np.int64)
    if pieces > 16:  # pieces of under 4 bits select nothing: compare every pair
        return _all_pairs(hashes, np.arange(n), max_bits)
    found = []
    edges = np.linspace(0, 64, pieces + 1).astype(int)
    for low, high in zip(edges[:-1], edges[1:]):
        piece = (hashes >> np.uint64(low)) & np.uint64((1 << (high - low)) - 1)
        order = np.argsort(piece, kind="stable")
        ordered = piece[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, n])
        big = sizes > BIG_BUCKET
        for start, size in zip(starts[big], sizes[big]):
            found.append(_all_pairs(hashes, np.sort(order[start : start + size]), max_bits))
        size_of = np.repeat(np.where(big, 0, sizes), sizes)  # each sorted position's bucket size (0: searched)
        active = np.flatnonzero(size_of > 1)
        for offset in range(1, int(size_of.max(initial=0))):
            active = active[active + offset < n]
            active = active[ordered[active] == ordered[active + offset]]
            if not len(active):
                break
            a, b = order[active], order[active + offset]
            near = np.bitwise_count(hashes[a] ^ hashes[b]) <= max_bits
            found.append(np.stack([np.minimum(a, b)[near], np.maximum(a, b)[near]], 1))
    if not found:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else np.zeros((0, 2), np.int64)


def _all_pairs(hashes: np.ndarray, members: np.ndarray, max_bits: int, block: int = 256) -> np.ndarray:
    """Pairs (i < j) among `members` (sorted indices) within `max_bits`, comparing every pair in blocks."""
    values, found = hashes[members], []
    for start in range(0, len(values), block):
        rows = values[start : start + block]
        distance = np.bitwise_count(rows[:, None] ^ values[None, start:])  # (block, m - start)
        i, j = np.nonzero(distance <= max_bits)
        keep = j > i  # upper triangle, no self-pairs
        found.append(np.stack([members[i[keep] + start], members[j[keep] + start]], 1))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)
