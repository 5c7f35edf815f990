"""Inference speed at 224 px, in one run, against PyTorch's own best CPU path: for EfficientNet-Lite0 (ImageNet),
Lite0 fine-tuned by `deepcat.train` on Fashion-MNIST, ResNet-18 and ResNet-50:

- PyTorch as tutorials run it: eager fp32, channels-first, `no_grad`;
- PyTorch's best CPU path: `inference_mode`, channels-last, `torch.compile` (Inductor), fp32, and bf16 autocast
  where the CPU computes bf16 natively (AVX512-BF16 or AMX; emulated bf16 ran 5x slower than fp32);
- ONNX Runtime fp32, and static int8: every layer, and as `deepcat export` writes it (float where int8 misses its
  check on held-out images);
- OpenVINO fp32 and int8 (NNCF), ExecuTorch and LiteRT fp32 and int8 (XNNPACK), as `deepcat export` writes them;
every runtime pinned to PyTorch's thread count. `passes_check`: the file is within `deepcat export`'s bounds here
(fp32: probabilities within 1e-4; int8: with labels, accuracy at least 99% of fp32's and 97% top-1 agreement;
without, 99% agreement: `check.int8_keeps`, top-1 answers only).

Images/s at batch 32 (and its ratio to the fastest PyTorch path), ms at batch 1 (each the median of ROUNDS rounds
in which the runtimes take turns: timed one after another, a slow spell fell on one runtime alone), top-1
agreement with PyTorch, and the share of the machine's peak (FLOPs per image from torch.utils.flop_counter;
peak = cores x clock x FLOPs per cycle of the instruction set the CPU has: AVX-512 or AVX2 FMA for fp32, AMX for
bf16 and int8).

EfficientNet-Lite0 has real ImageNet weights (offline), checked on random crops of scikit-image's sample photos
(unlabelled: agreement only). The fine-tuned Lite0 (`--finetuned` training images per class, 3 epochs) is checked
on `--test-per-class` labelled test images of each class: top-1 accuracy of every file, int8's cost in accuracy.
The ResNets are random-init (no offline weights, seed 0) with every BatchNorm scale drawn from 0.5-1.5, as a trained
network's are, so their speed is a trained network's; their int8 agreement is measured but a random network's
answers are near ties, so it says little.

Each model is measured in a process of its own (`process_peak_rss_mb`): in one process, the run was killed for
memory (24 GB) on the second model, whose own process peaked under 6 GB; what the compilers and toolchains keep
from one model outlived it.

    python benchmarks/infer.py                      # ~50 min on 2 cores (38 min timed one runtime after another)
    python benchmarks/infer.py --models tf_efficientnet_lite0 --finetuned 0
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

REAL_WEIGHTS = ("tf_efficientnet_lite0",)  # the ResNets here are random-init: agreement says little
ROUNDS = 3  # timing rounds: each runtime's figure is the median of its rounds' medians


def photo_crops(n: int, seed: int, meta) -> np.ndarray:
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
        out.append(pixels(crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop, meta.preprocess))
    return np.stack(out)


def in_chunks(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, size: int = 32) -> np.ndarray:
    """`fn` over `images` a batch of `size` at a time: ONNX Runtime on 1,000 images at once took 24 GB."""
    return np.concatenate([fn(images[i : i + size]) for i in range(0, len(images), size)])


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


@dataclass
class Subject:
    """A model to time, with the images its int8 file is calibrated and checked on; `labels`: the check images' true
    classes (None: unlabelled photos, agreement only)."""

    name: str
    model: torch.nn.Module
    pre: object
    classes: list[str]
    calibration: np.ndarray
    held_out: np.ndarray
    checks: np.ndarray
    labels: np.ndarray | None = None
    real_weights: bool = True


def imagenet_subject(name: str) -> Subject:
    from deepcat.exporting.graph import metadata
    from deepcat.inference.torch_model import pretrained_cat_dog
    from deepcat.inputs.image import Preprocess
    from deepcat.models.create import create_model, default_preprocess

    if name == "tf_efficientnet_lite0":
        clf = pretrained_cat_dog()
        model, pre = clf.model, clf.preprocess
    else:
        torch.manual_seed(0)  # one draw for every run: unseeded, int8 agreement went from 100% to 84.5% between runs
        model, spec = create_model(name=name, num_classes=1000, image_size=224)
        with torch.no_grad():  # timm zeroes each residual block's last BatchNorm scale at init (zero_init_last):
            for norm in model.modules():  # LiteRT's converter then drops those branches (ResNet-18 ran at 3.6x the
                if isinstance(norm, torch.nn.BatchNorm2d):  # CPU's peak); a trained network has no zero scales
                    norm.weight.uniform_(0.5, 1.5)
        made = default_preprocess(model, spec, image_size=224, native_size=None)
        model, pre = model.eval(), Preprocess(224, made.resize, made.interpolation, made.mean, made.std)
    meta = metadata(name=name, classes=["0"], pre=pre, version="bench", source=name)
    return Subject(
        name,
        model,
        pre,
        [str(i) for i in range(1000)],
        calibration=photo_crops(128, seed=1, meta=meta),
        held_out=photo_crops(200, seed=3, meta=meta),
        checks=photo_crops(200, seed=2, meta=meta),
        real_weights=name in REAL_WEIGHTS,
    )


def finetuned_subject(tmp: Path, *, per_class: int, test_per_class: int, seed: int) -> Subject:
    """EfficientNet-Lite0 fine-tuned by `deepcat.train` (defaults, 3 epochs) on `per_class` Fashion-MNIST images of
    each class; checked on `test_per_class` labelled test images of each class."""
    from finetune_vs_scratch import write_subset

    import deepcat
    from deepcat.exporting.graph import metadata
    from deepcat.inputs.image import pixels

    data = tmp / "fashion"
    write_subset(data, per_class, test_per_class, seed)
    run = deepcat.train(
        data=str(data / "train"),
        model="tf_efficientnet_lite0",
        epochs=3,
        audit=False,
        seed=seed,
        output=str(tmp),
        name="lite0-fashion",
        progress=False,
    )
    clf = deepcat.load(run)
    classes = clf.classes  # the run's order (its folders', sorted); the labels below follow it
    meta = metadata(name="lite0-fashion", classes=classes, pre=clf.preprocess, version="bench", source="run")

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        files = sorted((data / split).glob("*/*.png"))
        return np.stack([pixels(Image.open(f), meta.preprocess) for f in files]), np.array(
            [classes.index(f.parent.name) for f in files]
        )

    train, _ = read("train")
    order = np.random.default_rng(seed).permutation(len(train))
    checks, labels = read("test")
    return Subject(
        "tf_efficientnet_lite0 fine-tuned (Fashion-MNIST, 10 classes)",
        clf.model,
        clf.preprocess,
        classes,
        calibration=train[order[:128]],
        held_out=train[order[128:328]],
        checks=checks,
        labels=labels,
    )


def pytorch_runners(net: torch.nn.Module, bf16: bool) -> dict[str, tuple]:
    """PyTorch as a tutorial runs it (eager, channels-first, `no_grad`), and PyTorch's own best CPU path:
    `inference_mode`, channels-last, `torch.compile` (Inductor), in bf16 autocast where the CPU computes bf16
    natively. Each compiled shape is compiled in the warm-up call, off the clock."""
    fast = copy.deepcopy(net).to(memory_format=torch.channels_last)
    compiled = torch.compile(fast, dynamic=False)

    def eager(batch: np.ndarray) -> None:
        with torch.no_grad():
            net(torch.from_numpy(batch))

    def best(dtype: torch.dtype | None) -> Callable[[np.ndarray], None]:
        def run(batch: np.ndarray) -> None:
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                compiled(x)

        return run

    runners = {
        "PyTorch eager fp32 (no_grad, channels-first)": (eager, None, "fp32"),
        "PyTorch fp32: inference_mode, channels_last, torch.compile": (best(None), None, "fp32"),
    }
    if bf16:  # emulated bf16 ran 5x slower than fp32 here
        runners["PyTorch bf16 autocast: inference_mode, channels_last, torch.compile"] = (
            best(torch.bfloat16),
            None,
            "bf16",
        )
    return runners


OTHER_RUNTIMES = {
    "openvino": "OpenVINO fp32",
    "openvino-int8": "OpenVINO int8 (NNCF)",
    "executorch": "ExecuTorch fp32 (XNNPACK)",
    "executorch-int8": "ExecuTorch int8 (XNNPACK)",
    "litert": "LiteRT fp32 (XNNPACK)",
    "litert-int8": "LiteRT int8 (XNNPACK)",
}


def other_runtimes(net: torch.nn.Module, onnx_file: Path, stem: Path, meta, subject: Subject) -> tuple[dict, dict]:
    """The OpenVINO, ExecuTorch and LiteRT files `deepcat export` writes, where their toolchains are installed, and
    the precision each mixed int8 file chose. OpenVINO int8 keeps layers in float by NNCF's accuracy control on
    held-out images where the weights are real (as the ONNX int8 file keeps segments float); a random network's
    answers are near ties, so there it is plain. ExecuTorch and LiteRT int8 come every layer int8 and, where the
    weights are real, as `deepcat export` writes them (leading segments float until they keep fp32's answers on
    held-out images by the check's rule)."""
    import importlib.util

    from deepcat.exporting.formats import FORMATS, QuantInputs

    paths, precision = {}, {}
    if importlib.util.find_spec("openvino") and importlib.util.find_spec("nncf"):
        from deepcat.exporting.openvino_files import quantize_openvino, write_openvino

        paths["openvino"] = write_openvino(onnx_file, stem.with_suffix(".xml"), meta)
        paths["openvino-int8"] = stem.with_suffix(".int8.xml")
        held_out = subject.held_out if subject.real_weights else subject.held_out[:0]
        quantize_openvino(paths["openvino"], paths["openvino-int8"], subject.calibration, held_out)
    if importlib.util.find_spec("executorch"):
        from deepcat.exporting.executorch_files import write_executorch

        example = torch.from_numpy(subject.checks[:2])
        paths["executorch"] = write_executorch(net, example, stem.with_suffix(".pte"), meta)
        paths["executorch-int8"] = write_executorch(
            net, example, stem.with_suffix(".int8.pte"), meta, subject.calibration
        )
    if importlib.util.find_spec("litert_torch"):
        from deepcat.exporting.litert_files import write_litert

        example = torch.from_numpy(subject.checks[:2])
        paths["litert"] = write_litert(net, example, stem.with_suffix(".tflite"), meta)
        paths["litert-int8"] = write_litert(net, example, stem.with_suffix(".int8.tflite"), meta, subject.calibration)
    example, images = torch.from_numpy(subject.checks[:2]), QuantInputs(subject.calibration, subject.held_out)
    for fmt in ("executorch-int8", "litert-int8"):
        if fmt in paths and subject.real_weights:
            mixed = stem.with_suffix(f".mixed{paths[fmt].suffix}")
            written = FORMATS.get(fmt).write(net, meta, mixed, example, lambda: images, True)
            paths[f"{fmt}-mixed"], precision[f"{fmt}-mixed"] = mixed, written.precision
    return paths, precision


def passes_check(
    row: dict, reference: np.ndarray, probs: np.ndarray, labels: np.ndarray | None, precision: str
) -> bool:
    """`deepcat export`'s bounds on top-1 answers (deepcat.exporting.check), on this benchmark's check images."""
    from deepcat.exporting.check import FP32_MAX_ABS_DIFF, int8_keeps

    if precision == "fp32":
        return row["max_abs_diff"] <= FP32_MAX_ABS_DIFF
    return int8_keeps(reference.argmax(1), probs.argmax(1), labels)


def bench_model(subject: Subject, tmp: Path, peaks: dict[str, float]) -> list[dict]:
    from deepcat.device import amp_dtype
    from deepcat.exporting.graph import Deployable, metadata
    from deepcat.exporting.onnx_formats import export_onnx, quantize_int8
    from deepcat.inference.exported import load_exported

    name, model, checks = subject.name, subject.model, subject.checks
    stem = name.split()[0] + ("-ft" if subject.labels is not None else "")
    meta = metadata(name=stem, classes=subject.classes, pre=subject.pre, version="bench", source=stem)
    net = Deployable(model, subject.pre)
    with torch.no_grad():
        reference = in_chunks(lambda part: net(torch.from_numpy(part))[0].numpy(), checks)
    fp32 = export_onnx(net, torch.from_numpy(checks[:2]), tmp / f"{stem}.onnx", meta)
    int8 = tmp / f"{stem}.int8.onnx"
    quantize_int8(fp32, int8, subject.calibration, meta)
    paths = {"onnx": fp32, "onnx-int8": int8}
    precision = {}
    if subject.real_weights:  # what `deepcat export` writes: float where int8 misses the check on held-out images
        mixed = tmp / f"{stem}.mixed.onnx"
        precision = quantize_int8(fp32, mixed, subject.calibration, meta, held_out=subject.held_out)
        paths["onnx-int8-mixed"] = mixed
    others, mixed_precision = other_runtimes(net, fp32, tmp / stem, meta, subject)
    paths |= others
    threads = torch.get_num_threads()  # every runtime gets the same thread count as PyTorch
    sessions = {fmt: load_exported(path, threads=threads) for fmt, path in paths.items()}
    files = {
        fmt: sum(f.stat().st_size for f in (path, path.with_suffix(".bin")) if f.is_file())
        for fmt, path in paths.items()
    }
    answers = {None: reference} | {fmt: in_chunks(session.probabilities, checks) for fmt, session in sessions.items()}
    flops = flops_per_image(model, 224)

    runners = pytorch_runners(net, bf16=amp_dtype("auto", torch.device("cpu")) == torch.bfloat16)
    runners |= {
        "ONNX Runtime fp32": (sessions["onnx"].probabilities, "onnx", "fp32"),
        "ONNX Runtime int8 (static QDQ, every layer)": (sessions["onnx-int8"].probabilities, "onnx-int8", "int8"),
    }
    if "onnx-int8-mixed" in sessions:
        label = (
            f"ONNX Runtime int8 as exported ({precision['float_segments']} of {precision['segments']} segments float)"
        )
        runners[label] = (sessions["onnx-int8-mixed"].probabilities, "onnx-int8-mixed", "int8")
    for fmt, label in OTHER_RUNTIMES.items():
        if fmt in sessions:
            runners[label] = (sessions[fmt].probabilities, fmt, "int8" if fmt.endswith("int8") else "fp32")
        if f"{fmt}-mixed" in sessions:
            chosen = mixed_precision[f"{fmt}-mixed"]
            as_exported = label.replace("int8 (XNNPACK)", "int8 as exported")
            as_exported += f" ({chosen['float_segments']} of {chosen['segments']} segments float)"
            runners[as_exported] = (sessions[f"{fmt}-mixed"].probabilities, f"{fmt}-mixed", "int8")
    batch32, batch1 = checks[:32], checks[:1]
    seconds: dict[str, tuple[list[float], list[float]]] = {runtime: ([], []) for runtime in runners}
    for _ in range(ROUNDS):  # the runtimes take turns, so a slow spell of a shared machine falls on all of them
        for runtime, (fn, _, _) in runners.items():
            seconds[runtime][0].append(median_seconds(fn, batch32, repeats=5))
            seconds[runtime][1].append(median_seconds(fn, batch1, repeats=20))
    rows = []
    for runtime, (_, fmt, precision_) in runners.items():
        t32, t1 = (statistics.median(times) for times in seconds[runtime])
        probs = answers[fmt]
        rows.append(
            {
                "model": name,
                "runtime": runtime,
                "images_per_s_batch32": 32 / t32,
                "ms_batch1": 1000 * t1,
                "gflop_per_image": flops / 1e9,
                "peak_share": flops * 32 / t32 / peaks[precision_] if peaks[precision_] else None,
                "top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()) if fmt else None,
                "max_abs_diff": float(np.abs(probs - reference).max()) if fmt else None,
                "top1_accuracy": float((probs.argmax(1) == subject.labels).mean())
                if subject.labels is not None and (fmt or runtime.startswith("PyTorch eager"))
                else None,
                "check_images": len(checks),
                "file_mb": files[fmt] / 1e6 if fmt else None,
            }
        )
        rows[-1]["passes_check"] = passes_check(rows[-1], reference, probs, subject.labels, precision_) if fmt else None
    eager = rows[0]
    best_pytorch = max((r for r in rows if r["runtime"].startswith("PyTorch")), key=lambda r: r["images_per_s_batch32"])
    for r in rows:
        r["speedup_over_eager_batch32"] = r["images_per_s_batch32"] / eager["images_per_s_batch32"]
        r["speedup_over_eager_batch1"] = eager["ms_batch1"] / r["ms_batch1"]
        r["over_best_pytorch_batch32"] = r["images_per_s_batch32"] / best_pytorch["images_per_s_batch32"]
        r["best_pytorch"] = best_pytorch["runtime"]
    return rows


def subject_rows(spec: tuple[str, dict], tmp: str, peaks: dict[str, float]) -> list[dict]:
    """One model's rows, measured in this (child) process; with the process's peak memory."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    kind, options = spec
    subject = imagenet_subject(**options) if kind == "imagenet" else finetuned_subject(Path(tmp), **options)
    rows = bench_model(subject, Path(tmp), peaks)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [{**row, "process_peak_rss_mb": peak} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tf_efficientnet_lite0,resnet18,resnet50")
    parser.add_argument("--finetuned", type=int, default=50, help="training images per class of the fine-tuned Lite0")
    parser.add_argument("--test-per-class", type=int, default=100, help="its labelled check images per class")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "infer.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    peaks = peak_flops()
    rows = []
    specs: list[tuple[str, dict]] = [("imagenet", {"name": name}) for name in args.models.split(",") if name]
    if args.finetuned:
        finetuned = {"per_class": args.finetuned, "test_per_class": args.test_per_class, "seed": 0}
        specs.insert(1, ("finetuned", finetuned))
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:  # each in a fresh process, so no model's leftovers weigh on the next
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows += pool.submit(subject_rows, spec, tmp, peaks).result()
            print(f"{rows[-1]['model']}: done", flush=True)
            report(  # after every model: a later one failing loses none of the rows measured
                "infer",
                rows,
                args.out,
                threads=torch.get_num_threads(),
                peak_flops=peaks,
                targets={
                    "fastest file passing its check, over best PyTorch at batch 32 (fine-tuned Lite0, ResNet-50)": 3
                },
            )


if __name__ == "__main__":
    main()
