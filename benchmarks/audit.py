"""Audit speed: Fashion-MNIST's 70,000 images, in memory and as 70,000 PNG files in class folders,
against the baseline of only decoding every file once (what any audit must at least do).

Then the near-duplicate search alone (`near_pairs`, pigeonhole on pieces of the 64-bit hashes) against comparing
every pair, the search it replaced: on Fashion-MNIST's real hashes (clustered: plain images share most of their
bits) and on 300,000 and 1.28 million random hashes (ImageNet's size), seconds and the search's peak memory
(tracemalloc, which numpy reports to). Comparing every pair is measured at 70,000 and projected from there
(its cost grows with the square of the hashes; it finds the same pairs, checked at 70,000).

Real hashes are clustered, which random ones are not, and clustering is what makes a pigeonhole search slow
(hashes that share a piece are compared pair by pair). So the search also runs on 1.28 million clustered hashes:
Fashion-MNIST's real ones drawn again and again, each copy with FLIPS random bits flipped (a copy of an image
is near its original, as photos of one scene are, without being every other copy's duplicate); a random sample
of 70,000 of them is checked against comparing every pair.

    python benchmarks/audit.py          # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "audit.json"))
    args = parser.parse_args()

    from PIL import Image

    import deepcat.data.audit as audit_module
    from deepcat.data.audit import audit
    from deepcat.data.resolve import resolve_data

    rows = []
    splits = resolve_data("fashion-mnist")
    hashes: list[np.ndarray] = []
    search = audit_module.near_pairs
    audit_module.near_pairs = lambda h, bits: hashes.append(h) or search(h, bits)  # keeps the real hashes
    started = time.perf_counter()
    found = audit(splits, progress=False)
    audit_module.near_pairs = search
    rows.append(
        {
            "data": "fashion-mnist (in memory)",
            "images": found.images,
            "seconds": time.perf_counter() - started,
            "leak_groups": found.count("leak"),
            "conflict_groups": found.count("label_conflict"),
            "duplicate_groups": found.count("duplicate"),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("train", "val", "test"):
            samples = splits.split(name)
            for i, (image, label) in enumerate(zip(samples.items, samples.labels, strict=True)):
                folder = Path(tmp) / name / splits.classes[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{samples.ids[i]}.png")
        files = resolve_data(tmp)
        paths = [p for part in (files.train, files.val, files.test) if part is not None for p in part.items]
        started = time.perf_counter()
        for path in paths:
            with Image.open(path) as image:
                image.load()
        decode = time.perf_counter() - started
        rows.append({"data": "decode every PNG once (baseline, 1 process)", "images": len(paths), "seconds": decode})
        started = time.perf_counter()
        found = audit(files, progress=False)
        rows.append(
            {
                "data": "fashion-mnist (70,000 PNG files)",
                "images": found.images,
                "seconds": time.perf_counter() - started,
                "leak_groups": found.count("leak"),
                "conflict_groups": found.count("label_conflict"),
                "duplicate_groups": found.count("duplicate"),
            }
        )
    rows += near_duplicate_search(hashes[0])
    report("audit", rows, args.out)


FLIPS = 4  # bits flipped in each clustered copy: its own hash's near duplicate, most copies not each other's


def clustered(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` hashes drawn from `real` (every real one first), each later copy with FLIPS random bits flipped."""
    rng = np.random.default_rng(seed)
    hashes = real[rng.integers(0, len(real), n)].astype(np.uint64)
    for bits in rng.integers(0, 64, (FLIPS, n)).astype(np.uint64):
        hashes ^= np.uint64(1) << bits  # a bit drawn twice flips back: at most FLIPS bits differ
    hashes[: len(real)] = real
    return hashes


def timed(search, *args) -> tuple[np.ndarray, float, float]:
    """The search's pairs, seconds and peak memory in MB."""
    tracemalloc.start()
    started = time.perf_counter()
    pairs = search(*args)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return pairs, seconds, peak


def near_duplicate_search(real: np.ndarray) -> list[dict]:
    """`near_pairs` at 70k (real hashes), 300k and 1.28M (random) against comparing every pair."""
    from deepcat.data.audit import NEAR_DUPLICATE_BITS
    from deepcat.data.audit.duplicates import _all_pairs, near_pairs

    rows = []
    pairs, seconds, peak = timed(near_pairs, real, NEAR_DUPLICATE_BITS)
    every, every_seconds, every_peak = timed(_all_pairs, real, np.arange(len(real)), NEAR_DUPLICATE_BITS)
    same = np.array_equal(pairs, np.unique(every, axis=0))
    contestants = (("near_pairs (pigeonhole)", seconds, peak), ("every pair (baseline)", every_seconds, every_peak))
    for name, s, mb in contestants:
        rows.append(
            {
                "data": f"near-duplicate search, {name}: Fashion-MNIST's hashes",
                "images": len(real),
                "seconds": s,
                "peak_mb": mb,
                "pairs": len(pairs),
                "same_pairs": same,
            }
        )
    rng = np.random.default_rng(0)
    for n in (300_000, 1_280_000):
        hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        pairs, seconds, peak = timed(near_pairs, hashes, NEAR_DUPLICATE_BITS)
        rows.append(
            {
                "data": "near-duplicate search, near_pairs (pigeonhole): random hashes",
                "images": n,
                "seconds": seconds,
                "peak_mb": peak,
                "pairs": len(pairs),
            }
        )
        rows.append(
            {
                "data": "near-duplicate search, every pair (baseline): projected from 70,000",
                "images": n,
                "seconds": every_seconds * (n / len(real)) ** 2,
            }
        )
    hashes = clustered(real, 1_280_000)
    pairs, seconds, peak = timed(near_pairs, hashes, NEAR_DUPLICATE_BITS)
    sample = np.sort(np.random.default_rng(1).choice(len(hashes), len(real), replace=False))
    in_sample = near_pairs(hashes[sample], NEAR_DUPLICATE_BITS)
    every = np.unique(_all_pairs(hashes[sample], np.arange(len(sample)), NEAR_DUPLICATE_BITS), axis=0)
    rows.append(
        {
            "data": f"near-duplicate search, near_pairs (pigeonhole): Fashion-MNIST's hashes drawn again, {FLIPS} "
            "bits flipped in each copy",
            "images": len(hashes),
            "seconds": seconds,
            "peak_mb": peak,
            "pairs": len(pairs),
            "same_pairs": bool(np.array_equal(in_sample, every)),
            "same_pairs_checked_on": len(sample),
        }
    )
    return rows


if __name__ == "__main__":
    main()
