"""Choosing what to label next (issue 50, "Teach"): a simulated labeller answers every request with the true
label, and a linear head on cached pretrained features learns from the labels so far.

Data: Fashion-MNIST, a pool of 10,000 training images (drawn once, seed 0) whose labels the labeller knows, and
the 10,000 test images held out; EfficientNet-Lite0's pooled ImageNet features (1,280) at `--image-size` px
(112 by default: the 28 px images upscaled 4x; 224 takes 4x longer). spoken-digits: its 2,880 training clips as
the pool and its 1,920 test clips (voices the pool never has); MFCC summaries (sound.py's baseline features, 182):
no pretrained sound model ships with deepcat, so these are not learned features.

Each strategy of `deepcat.teach.choose` starts from 2 labels per class (drawn by the seed) and asks for 20 at a
time up to 1,000; after each batch the head (standardised features, scikit-learn's logistic regression, C = 0.5:
the recipe of `deepcat check --labels`) is refitted and scored on the held-out test set (random and k-center need
no model to choose, so they are scored only at REPORTED label counts). `set_size` gets the 90% conformal limit
from the probability each label's true class had before it was learned (out of sample, from the model of the
round that asked for it; biased to hard inputs, which widens every set alike). The winner is the strategy that reaches
random sampling's accuracy at 1,000 labels with the fewest labels on Fashion-MNIST (median over seeds);
`deepcat.teach.choose.DEFAULT` is set to it.

Also reported: the accuracy at 160 labels (16 per class on average) over a linear head on all pool labels
(a proxy for a full fine-tune on the same data, which takes too long on 2 cores: see the results' note), and
bulk acceptance at alpha = 2% after 1,000 labels (random's: a random sample of the pool, as the guarantee
assumes; and the winner's), its threshold set on the labels' out-of-fold probabilities, and the share of the
accepted that is wrong against the pool's true labels.

    python benchmarks/active.py                  # 3 seeds; features computed once into results/.cache
    python benchmarks/active.py --seeds 0 --data spoken-digits
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

STRATEGIES = ("random", "margin", "set_size", "kcenter", "mix")
PER_CLASS_START, BATCH, BUDGET = 2, 20, 1000
REPORTED = (20, 100, 160, 200, 400, 600, 1000)
ALPHA = 0.02
CACHE = Path(__file__).parent / "results" / ".cache"
POOL = 10_000  # Fashion-MNIST training images drawn (seed 0) as the pool; the 10,000 test images are held out


def cached(name: str, compute) -> dict[str, np.ndarray]:
    """`compute()`'s arrays, from CACHE/name.npz when there (the folder ignores itself: nothing is committed)."""
    path = CACHE / f"{name}.npz"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / ".gitignore").write_text("*\n")
        np.savez(path, **compute())
    return dict(np.load(path))


def fashion_features(image_size: int) -> dict[str, np.ndarray]:
    """Lite0's pooled ImageNet features (the classifier's input, 1,280) of the pool and the test images at
    `image_size`, as deepcat's evaluation computes them (its preprocessing, bf16 where the CPU has it).
    When teach.features lands, this is the one place to call it instead."""

    def compute() -> dict[str, np.ndarray]:
        import torch

        from deepcat.data.builtin import fashion_mnist
        from deepcat.data.loader import BadInputLog, eval_loader
        from deepcat.device import amp_dtype
        from deepcat.evaluation.scores import iter_outputs
        from deepcat.inference.unknown_score import WithFeatures
        from deepcat.models.create import classifier_of, create_model, default_preprocess

        splits = fashion_mnist(None, val_fraction=0.0, seed=0, data_root=None)
        assert splits.test is not None
        pool = splits.train.subset(np.sort(np.random.default_rng(0).choice(len(splits.train), POOL, replace=False)))
        model, spec = create_model(name="tf_efficientnet_lite0", num_classes=10, image_size=image_size, pretrained=True)
        pre = default_preprocess(model, spec, image_size=image_size, native_size=28)
        tap, device = WithFeatures(model, classifier_of(model)), torch.device("cpu")

        def features(samples) -> np.ndarray:
            loader = eval_loader(samples, pre, batch_size=64)
            outputs = iter_outputs(tap, loader, device=device, dtype=amp_dtype("auto", device), log=BadInputLog())
            return torch.cat([out[0] for out, _ in outputs]).numpy()  # (N, 1280)

        return {
            "pool_x": features(pool),
            "pool_y": pool.labels,
            "test_x": features(splits.test),
            "test_y": splits.test.labels,
        }

    return cached(f"fashion_lite0_{image_size}", compute)


def spoken_features() -> dict[str, np.ndarray]:
    """MFCC summaries (sound.py's baseline features: no learned features, no pretrained sound model ships) of
    spoken-digits' training clips (the pool) and its test clips (voices the pool never has)."""

    def compute() -> dict[str, np.ndarray]:
        from sound import load_clips, mfcc_features

        from deepcat.data.builtin import spoken_digits

        splits = spoken_digits(None, val_fraction=0.0, seed=0, data_root=None)
        assert splits.test is not None
        (pool, pool_y), (test, test_y) = load_clips(splits.train), load_clips(splits.test)
        return {
            "pool_x": np.stack([mfcc_features(c) for c in pool]),
            "pool_y": pool_y,
            "test_x": np.stack([mfcc_features(c) for c in test]),
            "test_y": test_y,
        }

    return cached("spoken_mfcc", compute)


DATA = ("fashion-mnist", "spoken-digits")
FULL_FINETUNE_NOTE = (
    "full_pool_linear_head: the same linear head on all pool labels, a proxy for a full fine-tune on the same data "
    "(Lite0 fine-tuned on 10,000 images at 224 px is over an hour on 2 shared cores). The nearest measured "
    "fine-tune: benchmarks/results/finetune.json (commit d6ed22f), deepcat.train on 500 Fashion-MNIST images: 83.4%"
)


def fit_head(x: np.ndarray, y: np.ndarray, classes: int):
    """A linear head on features; returns x -> (n, classes) probabilities.
    When teach.quick lands, `fit_quick(features, labels, classes).predict_proba` replaces this."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=300)).fit(x, y)

    def probs(rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), classes))
        out[:, model.classes_] = model.predict_proba(rows)
        return out

    return probs


def set_limit(before: list[np.ndarray]) -> float:
    """The 90% conformal limit (-log probability) from the true class's probability each label had before it was
    learned (from the model of the round that asked for it: out of sample, at no extra fit); every class (inf)
    until there are enough."""
    from deepcat.evaluation.calibration import conformal_quantiles

    if not before:
        return float("inf")
    true = np.concatenate(before)  # (labels so far,) probability of the true class
    limit = conformal_quantiles(np.log(np.maximum(np.c_[true, 1 - true], 1e-12)), np.zeros(len(true), int), 1.0)
    return float("inf") if limit["0.90"] is None else float(limit["0.90"])


def run_strategy(d: dict, strategy: str, seed: int) -> dict:
    """One simulated labelling session: test accuracy at each label count, the labelled mask at the end."""
    from deepcat.teach.choose import next_to_label

    rng = np.random.default_rng(seed)
    x, y, classes = d["pool_x"], d["pool_y"], int(d["pool_y"].max()) + 1
    labelled = np.zeros(len(y), bool)
    for c in range(classes):
        labelled[rng.choice(np.flatnonzero(y == c), PER_CLASS_START, replace=False)] = True
    curve, before, started = {}, [], time.perf_counter()
    while True:
        n = int(labelled.sum())
        needs_model = strategy not in ("random", "kcenter")
        head = fit_head(x[labelled], y[labelled], classes) if needs_model or n in REPORTED else None
        if head is not None:
            curve[n] = float((head(d["test_x"]).argmax(1) == d["test_y"]).mean())
        if n >= BUDGET:
            break
        probs = head(x) if needs_model and head is not None else None
        chosen = next_to_label(
            probs=probs,
            features=x,
            labelled=labelled,
            count=min(BATCH, BUDGET - n),
            strategy=strategy,
            rng=rng,
            set_limit=set_limit(before) if strategy == "set_size" else None,
        )
        if probs is not None:
            before.append(probs[chosen, y[chosen]])
        labelled[chosen] = True
    return {"curve": curve, "labelled": labelled, "seconds": time.perf_counter() - started}


def bulk(d: dict, labelled: np.ndarray) -> dict:
    """Accept pre-labels at ALPHA (both guarantees) after these labels; the error against the true labels."""
    from deepcat.teach.bulk import bulk_accept
    from deepcat.teach.review import out_of_fold_probs

    x, y, classes = d["pool_x"], d["pool_y"], int(d["pool_y"].max()) + 1
    calibration = out_of_fold_probs(features=x[labelled], labels=y[labelled])
    rest = np.flatnonzero(~labelled)
    pool_probs = fit_head(x[labelled], y[labelled], classes)(x[rest])
    out = {}
    for guarantee in ("among_accepted", "overall"):
        found = bulk_accept(
            calibration_probs=calibration,
            calibration_labels=y[labelled],
            pool_probs=pool_probs,
            alpha=ALPHA,
            guarantee=guarantee,
        )
        wrong = int((pool_probs[found.accepted].argmax(1) != y[rest][found.accepted]).sum())
        out[guarantee] = {
            "threshold": found.threshold,
            "accepted": len(found.accepted),
            "of": len(rest),
            "wrong_among_accepted": wrong / max(len(found.accepted), 1),
            "wrong_of_all_unlabelled": wrong / len(rest),
            "labels_needed": found.labels_needed,
        }
    return out


def labels_to_reach(curve: dict, target: float) -> int | None:
    """The fewest labels at which `curve` reaches `target`."""
    return next((n for n, acc in sorted(curve.items()) if acc >= target), None)


def one_data(name: str, d: dict, seeds: list[int]) -> tuple[list[dict], dict]:
    """Every strategy and seed on one data set; the summary over seeds."""
    classes = int(d["pool_y"].max()) + 1
    full = float((fit_head(d["pool_x"], d["pool_y"], classes)(d["test_x"]).argmax(1) == d["test_y"]).mean())
    rows, sessions = [], {}
    for seed in seeds:
        for strategy in STRATEGIES:
            session = run_strategy(d, strategy, seed)
            sessions[strategy, seed] = session
            row = {"data": name, "strategy": strategy, "seed": seed}
            row.update({f"acc@{n}": session["curve"].get(n) for n in REPORTED})
            row.update(seconds=session["seconds"], curve=session["curve"])
            print({k: v for k, v in row.items() if k != "curve"}, flush=True)
            rows.append(row)
    summary = {"data": name, "pool": len(d["pool_y"]), "test": len(d["test_y"]), "full_pool_linear_head": full}
    random_at_budget = statistics.median(sessions["random", s]["curve"][BUDGET] for s in seeds)
    summary["random_acc_at_1000"] = random_at_budget
    summary["strategies"] = {}
    for strategy in STRATEGIES:
        reach = [labels_to_reach(sessions[strategy, s]["curve"], random_at_budget) for s in seeds]
        summary["strategies"][strategy] = {
            **{f"acc@{n}": statistics.median(sessions[strategy, s]["curve"][n] for s in seeds) for n in REPORTED},
            "labels_to_reach_random_at_1000": reach,
            "median_labels_to_reach": _median_or_never(reach),
        }
    return rows, {"summary": summary, "sessions": sessions, "features": d}


def add_bulk(result: dict, best: str, seeds: list[int]) -> None:
    """Bulk acceptance after 1,000 labels chosen at random (the guarantee's setting) and by the winner."""
    result["summary"]["bulk_after_1000"] = {
        strategy: [bulk(result["features"], result["sessions"][strategy, s]["labelled"]) for s in seeds]
        for strategy in dict.fromkeys(("random", best))
    }


def _median_or_never(counts: list[int | None]) -> float | None:
    """The median label count, a seed that never got there counting as more than any; None if that is the median."""
    middle = statistics.median(float("inf") if c is None else c for c in counts)
    return None if middle == float("inf") else middle


def winner(summary: dict) -> str:
    """Fewest labels to random's accuracy at 1,000, then the best mean accuracy over the REPORTED counts."""
    model_based = {k: v for k, v in summary["strategies"].items() if k != "random"}
    return min(
        model_based,
        key=lambda k: (
            model_based[k]["median_labels_to_reach"] or float("inf"),
            -statistics.mean(model_based[k][f"acc@{n}"] for n in REPORTED),
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "active.json"))
    args = parser.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    from deepcat.teach.choose import DEFAULT

    torch.set_num_threads(2)
    features = {n: fashion_features(args.image_size) if n == "fashion-mnist" else spoken_features() for n in args.data}
    rows, summaries, results = [], [], {}
    # one BLAS thread: the fits are small, and on a shared CPU two threads per fit were 35x slower than one
    with threadpool_limits(1):
        for name in args.data:
            new, result = one_data(name, features[name], args.seeds)
            rows += new
            results[name] = result
        best = winner(results[args.data[0]]["summary"])  # Fashion-MNIST's, when it ran
        for name in args.data:
            add_bulk(results[name], best, args.seeds)
    for name in args.data:
        summary = results[name]["summary"]
        top = summary["strategies"][best]
        summary["winner"] = best
        summary["default_at_run"] = DEFAULT
        summary["winner_labels_to_reach_random_at_1000"] = top["median_labels_to_reach"]
        summary["acc@160_over_full_pool_linear_head"] = top["acc@160"] / summary["full_pool_linear_head"]
        summaries.append(summary)
        print(summary, flush=True)
    report(
        "active",
        rows,
        args.out,
        hide=("curve",),
        summary=summaries,
        image_size=args.image_size,
        alpha=ALPHA,
        full_finetune_note=FULL_FINETUNE_NOTE,
    )


if __name__ == "__main__":
    main()
