"""Time and test accuracy of `deepcat train DATA` with the default recipe, against a
scikit-learn logistic regression on the same pixels and split, in the same run.

    python benchmarks/train_builtin.py --data digits            # ~1 min
    python benchmarks/train_builtin.py --data fashion-mnist     # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def deepcat_run(data: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "deepcat", "train", data, "--output", out, *extra],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - started
        run = Path(done.stdout.strip())
        metrics = json.loads((run / "test_metrics.json").read_text())
        epochs = len((run / "metrics.csv").read_text().splitlines()) - 1
    return {
        "method": f"deepcat train {data} {' '.join(extra)}".strip(),
        "epochs": epochs,
        "test_accuracy": metrics["accuracy"],
        "wall_seconds": seconds,
    }


def logistic_baseline(data: str) -> dict:
    from sklearn.linear_model import LogisticRegression

    from deepcat.data.resolve import resolve_data

    splits = resolve_data(data, val_fraction=0.0)
    x_train = splits.train.items.reshape(len(splits.train), -1) / 255.0
    x_test = splits.test.items.reshape(len(splits.test), -1) / 255.0
    started = time.perf_counter()
    model = LogisticRegression(max_iter=200).fit(x_train, splits.train.labels)
    accuracy = float((model.predict(x_test) == splits.test.labels).mean())
    return {
        "method": "scikit-learn LogisticRegression on pixels (baseline)",
        "epochs": None,
        "test_accuracy": accuracy,
        "wall_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/train_DATA.json)")
    parser.add_argument("extra", nargs="*", help="extra `deepcat train` flags, after --")
    args = parser.parse_args()
    rows = [deepcat_run(args.data, args.extra), logistic_baseline(args.data)]
    report("train_builtin", rows, args.out or Path(__file__).parent / "results" / f"train_{args.data}.json")


if __name__ == "__main__":
    main()
