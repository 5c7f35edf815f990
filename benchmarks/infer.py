"""Inference speed at 224 px for EfficientNet-Lite0, ResNet-18 and ResNet-50: PyTorch eager fp32 (baseline),
PyTorch bf16 autocast with channels_last (only on a CPU with native bf16), ONNX Runtime fp32 and ONNX Runtime
static int8 (every layer, and as `deepcat export` writes it: float where int8 misses its check), in one run,
ONNX Runtime pinned to PyTorch's thread count; images/s at batch 32, ms at batch 1, int8 agreement with
PyTorch, and the share of the machine's peak reached (FLOPs per image from torch.utils.flop_counter; peak = cores x
clock x FLOPs per cycle of the instruction set the CPU has: AVX-512 or AVX2 FMA for fp32, AMX for bf16 and int8).

EfficientNet-Lite0 has real ImageNet weights (offline); the ResNets are random-init (no offline weights),
which does not change their speed; their int8 agreement is measured but a random network's answers
are near ties, so it says little.

Images: scikit-image's sample photos, random crops (calibration and check sets use different seeds).

    python benchmarks/infer.py                      # ~10 min on 2 cores
    python benchmarks/infer.py --models tf_efficientnet_lite0
"""

from __future__ import annotations

import argparse
import copy
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

REAL_WEIGHTS = ("tf_efficientnet_lite0",)  # the ResNets here are random-init: agreement says little


def photo_crops(n: int, seed: int, meta: dict) -> np.ndarray:
    from skimage import data

    from deepcat.inputs.image import pixels

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


def peak_flops() -> dict[str, float | None]:
    """FLOP/s peaks of this CPU (all cores), from its instruction set in /proc/cpuinfo: fp32 is 2 FMA units x
    (16 lanes with AVX-512, 8 with AVX2) x 2; bf16 and int8 are AMX's 1024 and 2048 MACs per cycle where the CPU
    has AMX, else None (no peak claimed). The clock is /proc/cpuinfo's."""
    import os

    mhz, flags = 2000.0, set()
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
        mhz = next(float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz"))
        flags = set(next(line.split(":")[1].split() for line in lines if line.startswith("flags")))
    except (OSError, StopIteration):
        pass
    hz, cores = mhz * 1e6, os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    return {
        "fp32": cores * hz * 2 * lanes * 2,
        "bf16": cores * hz * 2048 if "amx_bf16" in flags else None,
        "int8": cores * hz * 4096 if "amx_int8" in flags else None,
    }


def flops_per_image(model: torch.nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return float(counter.get_total_flops())


def build(name: str):
    from deepcat.inference.torch_model import pretrained_cat_dog
    from deepcat.inputs.image import Preprocess
    from deepcat.models.create import create_model, default_preprocess

    if name == "tf_efficientnet_lite0":
        clf = pretrained_cat_dog()
        return clf.model, clf.preprocess
    model, spec = create_model(name=name, num_classes=1000, image_size=224)
    pre = default_preprocess(model, spec, image_size=224, native_size=None)
    return model.eval(), Preprocess(224, pre.resize, pre.interpolation, pre.mean, pre.std)


def bench_model(name: str, tmp: Path, peaks: dict[str, float]) -> list[dict]:
    from deepcat.device import amp_dtype
    from deepcat.exporting.graph import Deployable, metadata
    from deepcat.exporting.onnx_formats import export_onnx, quantize_int8
    from deepcat.inference.onnx_model import load_onnx

    model, pre = build(name)
    meta = metadata(name=name, classes=[str(i) for i in range(1000)], pre=pre, version="bench", source=name)
    net = Deployable(model, pre)
    checks = photo_crops(200, seed=2, meta=meta)
    with torch.no_grad():
        reference = net(torch.from_numpy(checks))[0].numpy()
    fp32 = export_onnx(net, torch.from_numpy(checks[:2]), tmp / f"{name}.onnx", meta)
    calibration = photo_crops(128, seed=1, meta=meta)
    int8 = tmp / f"{name}.int8.onnx"
    quantize_int8(fp32, int8, calibration, meta)
    paths = {"onnx": fp32, "onnx-int8": int8}
    precision = {}
    if name in REAL_WEIGHTS:  # what `deepcat export` writes: float where int8 misses 99.5% on held-out crops
        mixed = tmp / f"{name}.mixed.onnx"
        precision = quantize_int8(fp32, mixed, calibration, meta, held_out=photo_crops(200, seed=3, meta=meta))
        paths["onnx-int8-mixed"] = mixed
    threads = torch.get_num_threads()  # ONNX Runtime gets the same thread count as PyTorch
    sessions = {fmt: load_onnx(path, threads=threads) for fmt, path in paths.items()}
    files = {fmt: path.stat().st_size for fmt, path in paths.items()}
    agreement = {}
    for fmt, session in sessions.items():  # measured, not enforced: this is a benchmark, not an export
        probs = session.probabilities(checks)
        agreement[fmt] = ((probs.argmax(1) == reference.argmax(1)).mean(), np.abs(probs - reference).max())
    flops = flops_per_image(model, 224)

    def eager(batch: np.ndarray) -> None:
        with torch.no_grad():
            net(torch.from_numpy(batch))

    fast_net = Deployable(copy.deepcopy(model), pre).to(memory_format=torch.channels_last)

    def bf16_torch(batch: np.ndarray) -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            fast_net(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))

    runners = {"PyTorch eager fp32 (baseline)": (eager, None, "fp32")}
    if amp_dtype("auto", torch.device("cpu")) == torch.bfloat16:  # emulated bf16 ran 5x slower than fp32 here
        runners["PyTorch bf16 autocast, channels_last"] = (bf16_torch, None, "bf16")
    runners |= {
        "ONNX Runtime fp32": (sessions["onnx"].probabilities, "onnx", "fp32"),
        "ONNX Runtime int8 (static QDQ)": (sessions["onnx-int8"].probabilities, "onnx-int8", "int8"),
    }
    if "onnx-int8-mixed" in sessions:
        label = (
            f"ONNX Runtime int8 as exported ({precision['float_segments']} of {precision['segments']} segments float)"
        )
        runners[label] = (sessions["onnx-int8-mixed"].probabilities, "onnx-int8-mixed", "int8")
    batch32, batch1 = checks[:32], checks[:1]
    rows, base = [], None
    for runtime, (fn, fmt, precision) in runners.items():
        t32 = median_seconds(fn, batch32, repeats=5)
        t1 = median_seconds(fn, batch1, repeats=20)
        base = base or (t32, t1)
        rows.append(
            {
                "model": name,
                "runtime": runtime,
                "images_per_s_batch32": 32 / t32,
                "ms_batch1": 1000 * t1,
                "speedup_batch32": base[0] / t32,
                "speedup_batch1": base[1] / t1,
                "gflop_per_image": flops / 1e9,
                "peak_share": flops * 32 / t32 / peaks[precision] if peaks[precision] else None,
                "top1_agreement": float(agreement[fmt][0]) if fmt else None,
                "max_abs_diff": float(agreement[fmt][1]) if fmt else None,
                "file_mb": files[fmt] / 1e6 if fmt else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tf_efficientnet_lite0,resnet18,resnet50")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "infer.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    peaks = peak_flops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += bench_model(name, Path(tmp), peaks)
    report(
        "infer",
        rows,
        args.out,
        threads=torch.get_num_threads(),
        check_images=200,
        peak_flops=peaks,
        targets={"lite0 int8 speedup_batch32": 10, "lite0 int8 ms_batch1": 5},
    )


if __name__ == "__main__":
    main()
