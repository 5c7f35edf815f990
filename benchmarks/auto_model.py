"""What `--model auto` should train on small images, by how many are labelled: deepcat's small CNN from scratch
against ImageNet-pretrained EfficientNet-Lite0, each with deepcat's default recipe, at 10, 30, 100, 300 and 1,000
training images per class of Fashion-MNIST (28 px) and scikit-learn's digits (8 px).

For each data set and size, a folder as a user would have it: `train/` with that many images of each class drawn
by the seed, `val/` with a quarter as many more (deepcat's default 20% validation share), `test/` a fixed held-out
set drawn once whatever the seed (Fashion-MNIST: `--test-per-class` of each class from its official test images;
digits: deepcat's fixed test split of 360). Digits has about 180 images per class in all, so its 1,000 row is every
image not in the test set, split 80/20 into train and val (about 115 per class in training): the table says so.

Each model trains with `deepcat.train(data=FOLDER, model=NAME)`: every other option at its default (10 epochs;
smallcnn at the images' own size with SGD; Lite0 resized to its 224 px, its head on features computed once, then
the later half of its layers with AdamW). The data audit is off for both (it judges the data, not the model).
Training seconds are the fit alone (the callbacks' `on_fit_start` to `on_fit_end`), each run with the machine's
mean load average over its epochs (on a shared machine, how far its seconds can be trusted); the test accuracy is
deepcat's own, with the best weights, from the run's test_metrics.json.

`auto`'s column is what the real resolve path (`resolve_data` on the folder, then `resolve_auto`) picks at the
commit that writes the table; its accuracy is the run of the model it picks (the rule is deterministic and reads
only the data, so training it again would repeat that run). With several seeds, the accuracies and seconds are
means over seeds. Rows merge into the results file by (data, size, seed, model), each with its commit, as each
size is measured; `--models` with no names retrains nothing and only asks `auto` again.

    python benchmarks/auto_model.py                              # ~70 min on 2 cores (half of it Lite0 at 1,000)
    python benchmarks/auto_model.py --data digits --sizes 10 30  # a part, merged
    python benchmarks/auto_model.py --models                     # auto's picks again, no training
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import merged, report  # noqa: E402

SIZES = (10, 30, 100, 300, 1000)
MODELS = ("smallcnn", "tf_efficientnet_lite0")
TEST_SEED = 1234  # the test images are drawn once, whatever the training seed


def write_folder(root: Path, data: str, per_class: int, seed: int, test_per_class: int) -> Path:
    """train/ (`per_class` of each class, or 80% of what there is), val/ (a quarter as many more, or the other
    20%) and test/ (fixed) as PNG files, from the built-in data set `data`."""
    from deepcat.data.resolve import resolve_data

    splits = resolve_data(data, val_fraction=0.0)
    assert splits.test is not None, f"{data} has no test split"  # noqa: S101 - both built-ins have one
    rng, test_rng = np.random.default_rng(seed), np.random.default_rng(TEST_SEED)
    for c, name in enumerate(splits.classes):
        pool = rng.permutation(np.flatnonzero(splits.train.labels == c))
        n_val = -(-per_class // 4)
        if per_class + n_val > len(pool):  # not that many: all there is, 80/20
            n_val = -(-len(pool) // 5)
        chosen = {"train": pool[n_val : n_val + per_class], "val": pool[:n_val]}
        tests = np.flatnonzero(splits.test.labels == c)
        chosen["test"] = tests if data == "digits" else test_rng.choice(tests, test_per_class, replace=False)
        for split, index in chosen.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            samples = splits.train if split != "test" else splits.test
            for i in index:
                Image.fromarray(samples.items[i]).save(folder / f"{samples.ids[i]}.png")
    return root


def measured_sizes(data: str, sizes: list[int]) -> list[int]:
    """`sizes`, but of those past what `data` holds (each would train on all of it) only the largest."""
    from deepcat.data.resolve import resolve_data

    pool = int(np.bincount(resolve_data(data, val_fraction=0.0).train.labels).min())
    whole = [n for n in sorted(sizes) if n + -(-n // 4) > pool]
    return [n for n in sizes if n not in whole[:-1]]


def auto_pick(folder: Path) -> dict:
    """What `--model auto` trains on `folder`, through the path `deepcat train FOLDER` takes, and why."""
    from deepcat.config import resolve_config
    from deepcat.data.resolve import splits_of
    from deepcat.training.recipe import auto_choice, resolve_auto

    cfg = resolve_config(data=str(folder))
    splits = splits_of(cfg.to_dict())
    choice = auto_choice(cfg, splits)
    assert choice is not None  # noqa: S101 - the model is auto
    return {
        "auto": resolve_auto(cfg, splits).model,
        "auto_reason": choice.reason,
        "train_per_class": splits.train_per_class(),
        "val_images": len(splits.val) if splits.val is not None else 0,
        "test_images": len(splits.test) if splits.test is not None else 0,
    }


class FitClock:
    """The fit's seconds, from `on_fit_start` (data read, model built) to `on_fit_end`, and the machine's load
    average at each epoch's end: on a shared machine, how far the seconds can be trusted."""

    def on_fit_start(self, **_) -> None:
        self.started, self.loads = time.perf_counter(), []

    def on_epoch_end(self, **_) -> None:
        self.loads.append(os.getloadavg()[0])

    def on_fit_end(self, **_) -> None:
        self.seconds = time.perf_counter() - self.started


def train_one(folder: Path, model: str, seed: int, out: Path) -> dict:
    """`deepcat.train` on `folder` with `model` and every other option at its default."""
    import deepcat

    clock = FitClock()
    run = deepcat.train(
        data=str(folder), model=model, seed=seed, audit=False, output=str(out), name=model, callbacks=[clock]
    )
    metrics = json.loads((run / "test_metrics.json").read_text())
    config = (run / "config.yaml").read_text()
    return {
        "test_accuracy": metrics["accuracy"],
        "train_seconds": clock.seconds,
        "load_average": statistics.mean(clock.loads),
        "pretrained": "pretrained: true" in config,
    }


def one_size(args: argparse.Namespace, data: str, per_class: int, seed: int) -> tuple[list[dict], dict]:
    """Every model of `args.models` on the folder for (`data`, `per_class`, `seed`), and auto's pick for it."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / f"{data}-{per_class}", data, per_class, seed, args.test_per_class)
        pick = auto_pick(folder)
        rows = []
        for model in args.models:
            row = {"data": data, "per_class": per_class, "seed": seed, "model": model}
            row.update(train_one(folder, model, seed, Path(tmp) / "runs"))
            row.update(train_per_class=pick["train_per_class"], test_images=pick["test_images"])
            print(row, flush=True)
            rows.append(row)
    return rows, {"data": data, "per_class": per_class, **pick}


def summary(rows: list[dict], picks: dict[tuple[str, int], dict]) -> list[dict]:
    """Per (data, size): each model's mean test accuracy and seconds over its seeds, auto's pick, and whether
    auto is within 1 point of the better."""
    out = []
    for data, per_class in sorted({(r["data"], r["per_class"]) for r in rows}):
        runs = [r for r in rows if (r["data"], r["per_class"]) == (data, per_class)]
        row: dict = {"data": data, "per_class": per_class, "train_per_class": runs[0]["train_per_class"]}
        row["all_available"] = per_class > row["train_per_class"]
        row["test_images"] = runs[0]["test_images"]
        for model in MODELS:
            mine = [r for r in runs if r["model"] == model]
            row[f"{model}_seeds"] = len(mine)
            row[f"{model}_accuracy"] = statistics.mean(r["test_accuracy"] for r in mine) if mine else None
            row[f"{model}_seconds"] = statistics.mean(r["train_seconds"] for r in mine) if mine else None
        pick = picks.get((data, per_class))
        if pick is not None:
            row.update(auto=pick["auto"], auto_reason=pick["auto_reason"])
            row["auto_accuracy"] = row.get(f"{pick['auto']}_accuracy")
        if pick is not None and all(row[f"{m}_accuracy"] is not None for m in MODELS):
            row["auto_within_1_point"] = row["auto_accuracy"] >= max(row[f"{m}_accuracy"] for m in MODELS) - 0.01
        out.append(row)
    return out


def save(args: argparse.Namespace, new: list[dict], picks: dict[tuple[str, int], dict]) -> list[dict]:
    """Merge `new` into the results file (an earlier row of the same data, size, seed and model is replaced), ask
    auto about every size there that `picks` lacks, and write the file with its summary."""
    key = ("data", "per_class", "seed", "model")
    done = {tuple(r[k] for k in key) for r in new}
    same_test = lambda r: r.get("test_per_class") == args.test_per_class  # noqa: E731
    rows = merged(args.out, new, lambda r: tuple(r[k] for k in key) in done or not same_test(r))
    rows = [{**r, "test_per_class": args.test_per_class} for r in rows]
    for data, per_class in dict.fromkeys((r["data"], r["per_class"]) for r in rows):
        if (data, per_class) not in picks:  # measured before: auto asked again, on the folder drawn as then
            seed = min(r["seed"] for r in rows if (r["data"], r["per_class"]) == (data, per_class))
            with tempfile.TemporaryDirectory() as tmp:
                folder = write_folder(Path(tmp) / "again", data, per_class, seed, args.test_per_class)
                picks[(data, per_class)] = {"data": data, "per_class": per_class, **auto_pick(folder)}
    table = summary(rows, picks)
    report("auto_model", rows, args.out, summary=table, picks=list(picks.values()))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["fashion-mnist", "digits"], choices=["fashion-mnist", "digits"])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="training images per class")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS, help="none: auto's picks only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--test-per-class", type=int, default=100, help="Fashion-MNIST (digits: its fixed 360)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "auto_model.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    picks: dict[tuple[str, int], dict] = {}
    sizes = {d: measured_sizes(d, args.sizes) for d in args.data}
    runs = [(d, n, s) for d in args.data for n in sizes[d] for s in args.seeds] if args.models else []
    table = [] if runs else save(args, [], picks)  # no models: auto asked again about what was measured
    for data, per_class, seed in runs:
        rows, picks[(data, per_class)] = one_size(args, data, per_class, seed)
        table = save(args, rows, picks)  # written after each size: a long run stopped keeps what it measured
    for row in table:
        print(row)


if __name__ == "__main__":
    main()
