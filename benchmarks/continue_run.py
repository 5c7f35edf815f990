"""Continue later: `deepcat.train(DATA, from_run=RUN)` against training on everything from scratch, when new
classes arrive. Fashion-MNIST with deepcat's defaults (small CNN, 28 px):

1. the earlier run: the first six classes (t-shirt, trouser, pullover, dress, coat, sandal), `--epochs` epochs;
2. the continuation: all ten classes (shirt, sneaker, bag and ankle boot are new; shirt looks like three old ones)
   from the earlier run's weights, `--continue-epochs` epochs;
3. from scratch: all ten classes, `--epochs` epochs, the same seed.

The question (issue 50): does the continuation keep the old classes' test accuracy within 1 point of training on
everything from scratch, and at what share of its time? Both answer among all ten classes, so an old-class image
taken for a new class counts as wrong; the old classes' accuracy is the share of their 6,000 test images (the
official test split, which neither run trained on) answered right, from each run's confusion matrix. Times are
`deepcat.train`'s whole call (data, training, calibration, test, report), without the data audit (its cache would
favour whichever run comes second). Each seed runs the three in turn.

    python benchmarks/continue_run.py                 # ~30 min on 2 cores: 3 seeds
    python benchmarks/continue_run.py --seeds 3       # another, merged
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import merged, report  # noqa: E402

OLD = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal")


def old_and_all(run: Path) -> tuple[float, float]:
    """(the old classes' test accuracy, every class's) of `run` on its own test split."""
    import numpy as np

    import deepcat

    found = deepcat.evaluate(run, progress=False)
    classes = list(found.per_class)
    matrix = np.array(found.confusion_matrix)
    old = [classes.index(name) for name in OLD]
    right = matrix[old, old].sum()  # the diagonal's old cells: old-class images answered with their own class
    return float(right / matrix[old].sum()), found.accuracy


def one_seed(seed: int, epochs: int, continue_epochs: int, out: Path) -> list[dict]:
    import deepcat

    shared = {"seed": seed, "output": str(out), "progress": False, "audit": False}
    rows = []
    started = time.perf_counter()
    earlier = deepcat.train("fashion-mnist", classes=",".join(OLD), epochs=epochs, name=f"old-{seed}", **shared)
    seconds = time.perf_counter() - started
    rows.append({"seed": seed, "run": "earlier: six classes", "epochs": epochs, "seconds": seconds})
    for name, options in (
        ("continued: ten classes --from the earlier", {"from_run": str(earlier), "epochs": continue_epochs}),
        ("from scratch: ten classes", {"epochs": epochs}),
    ):
        started = time.perf_counter()
        run = deepcat.train("fashion-mnist", name=f"{name.split(':')[0]}-{seed}", **options, **shared)
        seconds = time.perf_counter() - started
        old, every = old_and_all(run)
        rows.append(
            {
                "seed": seed,
                "run": name,
                "epochs": options["epochs"],
                "seconds": seconds,
                "old_classes_accuracy": old,
                "accuracy": every,
            }
        )
        print(rows[-1], flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    seeds = sorted({r["seed"] for r in rows})
    pick = {(r["seed"], r["run"].split(":")[0]): r for r in rows}
    old = {(s, run): r["old_classes_accuracy"] for (s, run), r in pick.items() if "old_classes_accuracy" in r}
    gaps = [old[s, "continued"] - old[s, "from scratch"] for s in seeds]
    shares = [pick[s, "continued"]["seconds"] / pick[s, "from scratch"]["seconds"] for s in seeds]
    return {
        "seeds": seeds,
        "old_classes_gap_points": [round(100 * g, 2) for g in gaps],
        "median_gap_points": round(100 * statistics.median(gaps), 2),
        "time_share": [round(s, 3) for s in shares],
        "median_time_share": round(statistics.median(shares), 3),
        "within_1_point": all(g >= -0.01 for g in gaps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="the earlier run's and the scratch run's")
    parser.add_argument("--continue-epochs", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "continue_run.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        new = [row for seed in args.seeds for row in one_seed(seed, args.epochs, args.continue_epochs, Path(folder))]
    setting = [args.epochs, args.continue_epochs]
    replaced = lambda r: r["seed"] in args.seeds or r.get("epochs_setting") != setting  # noqa: E731
    rows = merged(args.out, [{**r, "epochs_setting": setting} for r in new], replaced)
    report("continue_run", rows, args.out, summary=summary(rows), old_classes=list(OLD))
    print(summary(rows))


if __name__ == "__main__":
    main()
