"""Inference speed of pretrained ImageNet EfficientNet-Lite0 at 224 px: PyTorch eager fp32 (baseline),
ONNX Runtime fp32 and ONNX Runtime static int8, in one run; plus int8 agreement with PyTorch.

Images: scikit-image's sample photos, random crops (calibration and check sets use different seeds).

    python benchmarks/infer.py        # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def photo_crops(n: int, seed: int, meta: dict) -> np.ndarray:
    from skimage import data

    from deepcat.runtime import pixels

    photos = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "cat")]  # ImageNet-like
    photos = [Image.fromarray(p[..., :3]) for p in photos]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        side = int(min(w, h) * rng.uniform(0.6, 1.0))
        left, top = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
        crop = photo.crop((left, top, left + side, top + side))
        out.append(pixels(crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop, meta))
    return np.stack(out)


def median_seconds(fn, batch: np.ndarray, repeats: int) -> float:
    fn(batch)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "infer.json"))
    args = parser.parse_args()

    from deepcat.export.graph import Deployable, metadata
    from deepcat.export.onnx_formats import export_onnx, quantize_int8
    from deepcat.predict import pretrained_cat_dog
    from deepcat.runtime import load_onnx

    clf = pretrained_cat_dog()  # ImageNet EfficientNet-Lite0 (offline weights); use all 1000 classes here
    meta = metadata(name="efficientnet-lite0-imagenet", classes=[str(i) for i in range(1000)], pre=clf.preprocess,
                    version="imagenet", source="tf_efficientnet_lite0")
    net = Deployable(clf.model, clf.preprocess)
    checks = photo_crops(200, seed=2, meta=meta)
    with torch.no_grad():
        reference = net(torch.from_numpy(checks))[0].numpy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(net, torch.from_numpy(checks[:2]), Path(tmp) / "model.onnx", meta)
        int8 = quantize_int8(fp32, Path(tmp) / "model.int8.onnx", photo_crops(128, seed=1, meta=meta), meta)
        sessions = {"onnx": load_onnx(fp32), "onnx-int8": load_onnx(int8)}
        files = {"onnx": fp32.stat().st_size, "onnx-int8": int8.stat().st_size}
        agreement = {}
        for fmt, session in sessions.items():  # measured, not enforced: this is a benchmark, not an export
            probs = session.probabilities(checks)
            agreement[fmt] = ((probs.argmax(1) == reference.argmax(1)).mean(), np.abs(probs - reference).max())

        def eager(batch: np.ndarray) -> None:
            with torch.no_grad():
                net(torch.from_numpy(batch))

        runners = {"PyTorch eager fp32 (baseline)": eager,
                   "ONNX Runtime fp32": sessions["onnx"].probabilities,
                   "ONNX Runtime int8 (static QDQ)": sessions["onnx-int8"].probabilities}
        batch32, batch1 = checks[:32], checks[:1]
        base = None
        for name, fn in runners.items():
            t32 = median_seconds(fn, batch32, repeats=5)
            t1 = median_seconds(fn, batch1, repeats=30)
            base = base or (t32, t1)
            fmt = "onnx" if "fp32" in name and "ONNX" in name else "onnx-int8" if "int8" in name else None
            rows.append({"runtime": name, "images_per_s_batch32": 32 / t32, "ms_batch1": 1000 * t1,
                         "speedup_batch32": base[0] / t32, "speedup_batch1": base[1] / t1,
                         "top1_agreement": float(agreement[fmt][0]) if fmt else None,
                         "max_abs_diff": float(agreement[fmt][1]) if fmt else None,
                         "file_mb": files[fmt] / 1e6 if fmt else None})
    report("infer", rows, args.out, threads=torch.get_num_threads(), check_images=len(checks))


if __name__ == "__main__":
    main()
