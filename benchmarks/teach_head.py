"""Teach's quick model: which head, how fast it refits, how fast photos embed.

1. Heads at a few labels per class. Fashion-MNIST through the Lite0 backbone (`deepcat.teach.backbone`): a pool of
   2,000 training images and 1,000 test images embedded once; for 1, 2, 3, 5, 10 and 20 labels per class (10 draws
   each) the linear head and the prototypes (`fit_quick(kind=...)`) are fitted on the draw and scored on the test
   images (accuracy and log-loss), and `auto` (what `fit_quick` picks) beside them; then the prototypes at other
   scales than PROTOTYPE_SCALE.
2. A refit at 1,000 labelled inputs: `fit_quick` on 1,000 of the pool's features (the target: at most 2 s on 2
   cores), the median of 5.
3. Embedding phone-size photos: scikit-image's photos enlarged to 4032 x 3024 with sensor-like noise (JPEG quality
   90, a few MB each, as a phone writes them), through `FeatureCache` from an empty cache, in ONNX Runtime and in
   PyTorch: inputs per second, decoding included (the target: 1,000 in at most 60 s).

    python benchmarks/teach_head.py          # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

SHOTS = (1, 2, 3, 5, 10, 20)
DRAWS = 10
PHOTOS = 64


def fashion_features(pool: int, test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(pool features, labels, test features, labels, inputs per second) of Fashion-MNIST through the backbone."""
    from deepcat.data.resolve import resolve_data
    from deepcat.inputs.image import from_memory, pixels
    from deepcat.teach.backbone import load_backbone

    splits = resolve_data("fashion-mnist", val_fraction=0.0)
    rng = np.random.default_rng(0)
    backbone = load_backbone()
    started = time.perf_counter()

    def embed(samples, index):
        rows = [
            backbone.embed(np.stack([pixels(from_memory(samples.items[j]), backbone.pre) for j in index[i : i + 64]]))
            for i in range(0, len(index), 64)
        ]
        return np.concatenate(rows), samples.labels[index]

    x, y = embed(splits.train, rng.permutation(len(splits.train))[:pool])
    x_test, y_test = embed(splits.test, rng.permutation(len(splits.test))[:test])
    return x, y, x_test, y_test, (pool + test) / (time.perf_counter() - started)


def heads(x, y, x_test, y_test) -> list[dict]:
    from deepcat.teach.quick import fit_quick

    rows = []
    rng = np.random.default_rng(1)
    classes = int(y.max()) + 1
    for shots in SHOTS:
        scores: dict[str, list[tuple[float, float]]] = {}
        for _ in range(DRAWS):
            drawn = np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in range(classes)])
            for kind in ("linear", "prototypes", "auto"):
                head = fit_quick(x[drawn], y[drawn], kind=kind)
                probs = head.predict_proba(x_test)
                loss = float(-np.log(np.maximum(probs[np.arange(len(y_test)), y_test], 1e-12)).mean())
                scores.setdefault(kind, []).append((float((probs.argmax(1) == y_test).mean()), loss))
        for kind, found in scores.items():
            rows.append(
                {
                    "part": "head",
                    "labels_per_class": shots,
                    "head": kind,
                    "accuracy": statistics.mean(a for a, _ in found),
                    "log_loss": statistics.mean(b for _, b in found),
                }
            )
    return rows


def prototype_scales(x, y, x_test, y_test) -> list[dict]:
    """The prototypes' log-loss and accuracy at other scales than PROTOTYPE_SCALE (2 and 5 labels per class)."""
    from deepcat.teach import quick

    chosen, rows = quick.PROTOTYPE_SCALE, []
    rng = np.random.default_rng(2)
    try:
        for scale in (5.0, 10.0, 20.0, 40.0, 80.0):
            quick.PROTOTYPE_SCALE = scale
            for shots in (2, 5):
                found = []
                for _ in range(DRAWS):
                    drawn = np.concatenate(
                        [rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in range(10)]
                    )
                    probs = quick.fit_quick(x[drawn], y[drawn], kind="prototypes").predict_proba(x_test)
                    right = probs[np.arange(len(y_test)), y_test]
                    found.append(
                        (float((probs.argmax(1) == y_test).mean()), float(-np.log(np.maximum(right, 1e-12)).mean()))
                    )
                rows.append(
                    {
                        "part": "prototype_scale",
                        "scale": scale,
                        "labels_per_class": shots,
                        "accuracy": statistics.mean(a for a, _ in found),
                        "log_loss": statistics.mean(b for _, b in found),
                    }
                )
    finally:
        quick.PROTOTYPE_SCALE = chosen
    return rows


def refit(x, y) -> dict:
    from deepcat.teach.quick import fit_quick

    times = []
    for _ in range(5):
        started = time.perf_counter()
        fit_quick(x[:1000], y[:1000])
        times.append(time.perf_counter() - started)
    return {"part": "refit", "labelled": 1000, "head": "auto", "seconds": statistics.median(times)}


def phone_photos(folder: Path) -> list[Path]:
    from PIL import Image
    from skimage import data

    names = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field", "immunohistochemistry", "retina")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(PHOTOS):
        image = Image.fromarray(getattr(data, names[i % len(names)])()).convert("RGB").resize((4032, 3024))
        noisy = np.asarray(image, np.int16) + rng.normal(0, 4, (3024, 4032, 3)).astype(np.int16)
        paths.append(folder / f"{i:03d}.jpg")
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(paths[-1], quality=90)
    return paths


def embedding(folder: Path) -> list[dict]:
    from deepcat.teach.features import FeatureCache

    paths = phone_photos(folder)
    megabytes = statistics.mean(p.stat().st_size for p in paths) / 1e6
    rows = []
    for runtime in ("onnxruntime", "torch"):
        cache = FeatureCache(folder, folder=folder / f"cache-{runtime}", runtime=runtime)
        assert cache.backbone.runtime == runtime  # loaded (and exported, once per machine) before the clock starts
        started = time.perf_counter()
        found = cache.features(paths, progress=False)
        seconds = time.perf_counter() - started
        assert found.ok.all(), found.bad
        rows.append(
            {
                "part": "embed",
                "runtime": runtime,
                "inputs": len(paths),
                "megabytes_each": megabytes,
                "inputs_per_s": len(paths) / seconds,
                "seconds_per_1000": 1000 * seconds / len(paths),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "teach_head.json"))
    args = parser.parse_args()

    x, y, x_test, y_test, rate = fashion_features(2000, 1000)
    rows = heads(x, y, x_test, y_test) + prototype_scales(x, y, x_test, y_test)
    rows.append(refit(x, y))
    rows.append(
        {"part": "embed", "runtime": "onnxruntime", "inputs": 3000, "inputs_per_s": rate, "data": "fashion-mnist"}
    )
    with tempfile.TemporaryDirectory() as folder:
        rows += embedding(Path(folder))
    report("teach_head", rows, args.out)


if __name__ == "__main__":
    main()
