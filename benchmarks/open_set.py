"""How well "unknown" works, measured honestly, for every score deepcat could use.

Train the default recipe on all classes but two, then score:
- near unknowns: the two held-out classes' test images (same data set, never trained on);
- far unknowns: inputs of another kind (a Fashion-MNIST model sees digits and uniform noise; a digits model
  sees Fashion-MNIST, noise and crops of scikit-image's photos).
For each score (msp, energy, knn, mahalanobis, layers): AUROC known-vs-unknown, and the share of unknowns rejected at
the threshold that accepts 95% of known validation images; what it costs: the exported ONNX file's size and
ONNX Runtime's ms per image at batch 1.

    python benchmarks/open_set.py --data digits                 # ~1 min on 2 cores
    python benchmarks/open_set.py --data fashion-mnist          # ~5 min
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

HELD_OUT = {"digits": ("8", "9"), "fashion-mnist": ("bag", "ankle-boot")}
FAR_IMAGES = 1000


def far_sets(data: str, rng: np.random.Generator) -> dict[str, object]:
    """Unknowns of another kind, as in-memory samples (the run's preprocessing resizes them)."""
    from deepcat.data.resolve import resolve_data
    from deepcat.data.sources import Samples

    def take(samples, n):
        return samples.subset(rng.permutation(len(samples))[:n])

    size = 8 if data == "digits" else 28
    noise = rng.integers(0, 256, (FAR_IMAGES, size, size), dtype=np.uint8)
    sets = {"noise": Samples(noise, np.zeros(FAR_IMAGES, dtype=np.int64))}
    if data == "digits":
        sets["fashion-mnist"] = take(resolve_data("fashion-mnist").test, FAR_IMAGES)
        sets["photos"] = photo_crops(rng)
    else:
        sets["digits"] = resolve_data("digits").test
    return sets


def photo_crops(rng: np.random.Generator, per_photo: int = 50):
    """Grey square crops of scikit-image's sample photos (cat, astronaut, coffee, ...)."""
    import skimage.data
    from skimage.color import rgb2gray

    from deepcat.data.sources import Samples

    crops = []
    for name in ("chelsea", "astronaut", "coffee", "rocket", "camera", "coins", "moon", "page", "text", "horse"):
        image = getattr(skimage.data, name)()
        grey = (rgb2gray(image[..., :3]) * 255 if image.ndim == 3 else image.astype(float)).astype(np.uint8)
        for _ in range(per_photo):
            side = int(rng.integers(32, min(grey.shape) // 2))
            y, x = rng.integers(0, grey.shape[0] - side), rng.integers(0, grey.shape[1] - side)
            from PIL import Image

            crops.append(np.asarray(Image.fromarray(grey[y : y + side, x : x + side]).resize((8, 8), Image.BILINEAR)))
    return Samples(np.stack(crops), np.zeros(len(crops), dtype=np.int64))


def export_cost(model, meta, score, path: Path) -> tuple[float, float]:
    """The ONNX file's size in MB with `score` inside, and ONNX Runtime's median ms per image at batch 1."""
    from deepcat.exporting.graph import Deployable, metadata
    from deepcat.exporting.onnx_formats import export_onnx
    from deepcat.inference.exported import load_exported
    from deepcat.inputs import input_kind

    pre = meta.preprocess
    net = Deployable(model.float(), pre, temperature=meta.calibration_or_default.temperature, unknown=score)
    export_onnx(
        net,
        input_kind(pre.kind).example(pre, 2),
        path,
        metadata(name="open", classes=list(meta.classes), pre=pre, version="bench", source="bench"),
    )
    clf = load_exported(path, threads=2)
    one = input_kind(pre.kind).example(pre, 1).numpy()
    times = []
    for _ in range(200):
        started = time.perf_counter()
        clf.infer(one)
        times.append(time.perf_counter() - started)
    return path.stat().st_size / 1e6, float(np.median(times[20:]) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", choices=tuple(HELD_OUT))
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's own")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    import deepcat
    from deepcat.data.resolve import resolve_data
    from deepcat.evaluation import calibration
    from deepcat.evaluation.finish import unknown_scores
    from deepcat.evaluation.scores import Scoring, features_of
    from deepcat.inference.unknown_score import SCORES, WithFeatures, fit_score, stage_names
    from deepcat.run_folder import load_model

    full = resolve_data(args.data)
    held_out = HELD_OUT[args.data]
    known = [c for c in full.classes if c not in held_out]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        options = {} if args.epochs is None else {"epochs": args.epochs}
        started = time.perf_counter()
        run = deepcat.train(data=args.data, classes=",".join(known), output=tmp, name="open", progress=False, **options)
        seconds = time.perf_counter() - started
        model, meta = load_model(run)
        splits = resolve_data(args.data, classes=",".join(known))
        how = Scoring(meta.preprocess, torch.device("cpu"), progress=False)
        held = np.isin(np.array(full.classes)[full.test.labels], held_out)
        sets = {
            "train": splits.train,
            "val": splits.val,
            "known": splits.test,
            "near": full.test.subset(np.flatnonzero(held)),
            **far_sets(args.data, rng),
        }
        outputs = {name: features_of(model, samples, how, classes=len(known)) for name, samples in sets.items()}
        stages = WithFeatures(model, None, stage_names(model))
        staged = {
            name: features_of(model, samples, how, classes=len(known), tapped=stages) for name, samples in sets.items()
        }
        rows = []
        for kind in SCORES:
            use = staged if kind == "layers" else outputs
            score = fit_score(
                kind,
                torch.from_numpy(use["train"][0]),
                torch.from_numpy(use["train"][2]),
                stages=stages.stages,
                sizes=stages.sizes,
            )
            scored = {name: unknown_scores(score, f, lg) for name, (f, lg, _) in use.items()}
            threshold = np.quantile(scored["val"], 0.05)
            size_mb, ms = export_cost(model, meta, score, Path(tmp) / f"{kind}.onnx")
            row = {"data": args.data, "score": kind, "known accepted": float((scored["known"] >= threshold).mean())}
            for name in ["near", *far_sets_names(args.data)]:
                row[f"AUROC {name}"] = calibration.auroc(scored["known"], scored[name])
                row[f"rejected {name}"] = float((scored[name] < threshold).mean())
            rows.append({**row, "onnx MB": size_mb, "ms/image": ms})
    out = args.out or Path(__file__).parent / "results" / f"open_set_{args.data}.json"
    report(
        "open_set",
        rows,
        out,
        held_out=list(held_out),
        train_seconds=seconds,
        known_test=len(outputs["known"][2]),
        near_test=len(outputs["near"][2]),
        far_test={name: len(outputs[name][2]) for name in far_sets_names(args.data)},
    )


def far_sets_names(data: str) -> list[str]:
    return ["noise", "fashion-mnist", "photos"] if data == "digits" else ["noise", "digits"]


if __name__ == "__main__":
    main()
