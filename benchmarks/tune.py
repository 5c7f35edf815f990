"""`deepcat tune` on Fashion-MNIST: does the search beat the default recipe, and does pruning pay?

For each seed, on that seed's own subset of the training images (the full 10,000-image test set):
1. the tuned best (TPE with pruning, every trial E epochs, the rest of the default space searched) and its
   test accuracy;
2. at the same wall-clock budget, TPE with pruning against TPE without: trials finished, best validation
   accuracy, and the time each takes to reach the unpruned search's best;
3. the default recipe (`deepcat.train`, E epochs) given the same compute as the pruned search: as many training
   seeds as fit in its wall time, the best by validation accuracy kept, and its test accuracy.

    python benchmarks/tune.py                      # ~28 min on 2 cores (two seeds)
    python benchmarks/tune.py --budget 60 --train-images 2000 --epochs 3 --seeds 0   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def write_subset(folder: Path, train_images: int, seed: int) -> str:
    """Fashion-MNIST IDX files: `train_images` training images (stratified by chance), the whole test set."""
    from deepcat.data.builtin import DEBIAN_FASHION_MNIST, _find_idx, read_idx

    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    arrays = [read_idx(_find_idx(DEBIAN_FASHION_MNIST, s)) for s in stems]
    keep = np.sort(np.random.default_rng(seed).choice(len(arrays[0]), train_images, replace=False))
    arrays[0], arrays[1] = arrays[0][keep], arrays[1][keep]
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(stems, arrays):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
        (folder / stem).write_bytes(header + array.astype(np.uint8).tobytes())
    return f"fashion-mnist:{folder}"


def test_accuracy(run: Path) -> float:
    return json.loads((run / "test_metrics.json").read_text())["accuracy"]


def best_over_time(result) -> list[tuple[float, float]]:
    """(seconds since the study's first trial started, best validation accuracy so far) at each finished trial."""
    import optuna

    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{(result.folder / 'study.db').resolve()}")
    done = sorted(
        (t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.datetime_complete
    )
    start = min(t.datetime_start for t in study.trials)
    curve, best = [], -1.0
    for t in done:
        best = max(best, t.value)
        curve.append(((t.datetime_complete - start).total_seconds(), best))
    return curve


def seconds_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((s for s, best in curve if best >= target - 1e-9), None)


def best_val_accuracy(run: Path) -> float:
    import csv

    return max(float(row["val_acc"]) for row in csv.DictReader((run / "metrics.csv").open()) if row.get("val_acc"))


def one_seed(data: str, seed: int, epochs: int, budget: float) -> list[dict]:
    """TPE with and without pruning at the same wall budget, then the default recipe given the same compute: as
    many training seeds as fit in the pruned search's wall time, the best by validation accuracy kept."""
    import deepcat

    fixed = dict(epochs=epochs, audit=False, progress=False, seed=seed)
    searches = {}
    for pruning in (True, False):
        started = time.perf_counter()
        result = deepcat.tune(
            data, budget=f"{budget}s", study=f"{'pruned' if pruning else 'unpruned'}-{seed}", pruning=pruning, **fixed
        )
        searches[pruning] = (result, time.perf_counter() - started, best_over_time(result))
    started, defaults = time.perf_counter(), []
    while not defaults or (time.perf_counter() - started) * (len(defaults) + 1) / len(defaults) <= searches[True][1]:
        # another run only when it fits: the runs so far, and one more of their average length, within the budget
        run = deepcat.train(
            data, name=f"default-{seed}-{len(defaults)}", **{**fixed, "seed": 1000 * seed + len(defaults)}
        )
        defaults.append(run)
    best_default = max(defaults, key=best_val_accuracy)
    rows = [
        {
            "seed": seed,
            "contestant": f"default recipe ({epochs} epochs), best of the training seeds that fit in the search's time",
            "trials": len(defaults),
            "finished": len(defaults),
            "pruned": 0,
            "best val accuracy": best_val_accuracy(best_default),
            "test accuracy": test_accuracy(best_default),
            "first run's test accuracy": test_accuracy(defaults[0]),
            "seconds": time.perf_counter() - started,
            "s to unpruned best": None,
        }
    ]
    target = searches[False][0].best_value
    for pruning, (result, seconds, curve) in searches.items():
        rows.append(
            {
                "seed": seed,
                "contestant": f"TPE {'with' if pruning else 'without'} pruning ({budget:.0f} s)",
                "trials": result.trials,
                "finished": result.complete,
                "pruned": result.pruned,
                "best val accuracy": result.best_value,
                "test accuracy": test_accuracy(result.best_run),
                "seconds": seconds,
                "s to unpruned best": seconds_to_reach(curve, target),
                "best params": json.dumps(result.best_params),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=4, help="the default recipe's epochs; every trial's too")
    parser.add_argument("--budget", type=float, default=200, help="seconds for each search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one default + two searches each")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tune.json"))
    args = parser.parse_args()
    out = Path(args.out).resolve()

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        rows = []
        for seed in args.seeds:  # each seed its own subset of the training images
            data = write_subset(Path(tmp) / f"fmnist-{seed}", args.train_images, seed=seed)
            rows += one_seed(data, seed, args.epochs, args.budget)
    per_seed = [rows[i : i + 3] for i in range(0, len(rows), 3)]
    ratios = [
        None if p["s to unpruned best"] is None else p["s to unpruned best"] / u["s to unpruned best"]
        for _, p, u in per_seed
    ]
    reached = [r for r in ratios if r is not None]
    median_ratio = float(np.median(reached)) if len(reached) == len(ratios) else None
    report(
        "tune",
        rows,
        out,
        train_images=args.train_images,
        test_images=10000,
        epochs=args.epochs,
        budget_seconds=args.budget,
        seeds=args.seeds,
        time_ratio_pruned_to_unpruned=ratios,
        targets={
            "tuned beats default (every seed)": all(p["test accuracy"] > d["test accuracy"] for d, p, _ in per_seed),
            "pruning reaches the unpruned best in at most half the time (median over seeds)": median_ratio is not None
            and median_ratio <= 0.5,
            "median time ratio pruned / unpruned": median_ratio,
        },
    )


if __name__ == "__main__":
    main()
