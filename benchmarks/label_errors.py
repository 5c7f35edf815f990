"""How well `deepcat check --labels` finds mislabelled images: flip 5% of the labels of a real data set at
random, train with the default recipe on the flipped labels, and see how many flipped images are among
the top suspects.

Reported: precision and recall at k = the number flipped (the top-k suspects), and of the set cleanlab
flags by itself.

    python benchmarks/label_errors.py --data digits                        # ~1 min on 2 cores
    python benchmarks/label_errors.py --data fashion-mnist --per-class 1000  # ~4 min
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def write_flipped(
    root: Path, items: np.ndarray, labels: np.ndarray, classes: list[str], *, fraction: float, seed: int
) -> set[str]:
    """Images as PNG files in class folders, `fraction` of them in a wrong folder (chosen at random);
    returns the file names of the flipped ones."""
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(len(items), int(round(fraction * len(items))), replace=False).tolist())
    names = set()
    for i, (image, label) in enumerate(zip(items, labels, strict=True)):
        if i in flipped:
            label = (label + rng.integers(1, len(classes))) % len(classes)  # any other class
            names.add(f"{i}.png")
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return names


def measure(found: dict, flipped: set[str]) -> dict:
    """Precision/recall of the top-k suspects (k = number flipped) and of cleanlab's own flagged set."""
    ranked = [Path(s["item"]).name for s in found["suspects"]]
    k = len(flipped)
    hits_at_k = len(set(ranked[:k]) & flipped)
    hits = len(set(ranked) & flipped)
    return {
        "flipped": k,
        "flagged": len(ranked),
        "precision_at_k": hits_at_k / max(min(k, len(ranked)), 1),
        "recall_at_k": hits_at_k / k,
        "precision_flagged": hits / max(len(ranked), 1),
        "recall_flagged": hits / k,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", choices=("digits", "fashion-mnist"))
    parser.add_argument("--per-class", type=int, default=1000, help="Fashion-MNIST training images per class")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import deepcat
    from deepcat.data.resolve import resolve_data
    from deepcat.evaluation.label_errors import find_label_errors

    splits = resolve_data(args.data, val_fraction=0.0)
    items, labels = splits.train.items, splits.train.labels
    if args.data == "fashion-mnist":
        rng = np.random.default_rng(args.seed)
        keep = np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), args.per_class, replace=False) for c in range(len(splits.classes))]
        )
        items, labels = items[keep], labels[keep]
    with tempfile.TemporaryDirectory() as tmp:
        flipped = write_flipped(
            Path(tmp) / "data", items, labels, splits.classes, fraction=args.fraction, seed=args.seed
        )
        started = time.perf_counter()
        run = deepcat.train(data=str(Path(tmp) / "data"), output=tmp, name="flipped", progress=False)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        found = find_label_errors(run, resolve_data(str(Path(tmp) / "data"), val_fraction=0.2), progress=False)
        row = {
            "data": args.data,
            "images": len(items),
            **measure(found.to_dict(), flipped),
            "oof_accuracy": found.oof_accuracy,
            "train_seconds": train_seconds,
            "find_seconds": time.perf_counter() - started,
        }
    out = args.out or Path(__file__).parent / "results" / f"label_errors_{args.data}.json"
    report("label_errors", [row], out)


if __name__ == "__main__":
    main()
