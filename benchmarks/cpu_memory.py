"""How a CPU pass should hold its memory (`device.keep_freed_memory`, `evaluation.scores.forward_in_parts`), each
choice against the one before it, in one run.

- Scoring: `--images` random 224-px inputs through a model in eval mode, fp32 (as scoring runs: it describes the
  deployed model), in parts of 1 to 32 photos;
- a training step: forward, backward and an SGD step on a batch of 32 photos;
- end to end: `deepcat train digits --quick` (the quick head, then calibration, test metrics, label errors and the
  report: four passes of the 224-px backbone over the 1,797 digits).

Each under glibc's allocator as it comes (`DEEPCAT_MALLOC=system`) and with freed memory kept (deepcat's), each in
its own process, the two taking turns `--repeats` times; medians. The system time is the kernel's share: glibc
maps a block over its mmap threshold (32 MB at most) afresh and unmaps it when freed, so every layer faults its
activations' pages in again.

    python benchmarks/cpu_memory.py    # about 9 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

MODELS = ("tf_efficientnet_lite0", "resnet50")
PARTS = (1, 2, 4, 8, 16, 32)
OLD_PHOTOS = 32  # scoring's part size before this benchmark
TRAIN_BATCH = 32
ALLOCATORS = ("system", "kept")


def timed(step: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, system seconds per core) of `step()`."""
    import torch

    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    step()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
    return wall, (after.ru_stime - before.ru_stime) / torch.get_num_threads()


def score(model, x, photos: int) -> None:
    import torch

    with torch.no_grad():
        for part in x.split(photos):
            model(part)


def train_step(model, optimiser, x) -> None:
    import torch

    for part in x[: 2 * TRAIN_BATCH].split(TRAIN_BATCH):
        optimiser.zero_grad()
        labels = torch.zeros(len(part), dtype=torch.long)
        torch.nn.functional.cross_entropy(model(part), labels).backward()
        optimiser.step()


def passes(images: int) -> list[dict]:
    """One turn of every scoring part size and a training step, for each model, in this process."""
    import timm
    import torch

    from deepcat.device import keep_freed_memory

    kept = keep_freed_memory()  # a no-op under DEEPCAT_MALLOC=system
    x = torch.randn(images, 3, 224, 224)
    rows = []
    for name in MODELS:
        model = timm.create_model(name, pretrained=False, num_classes=10).eval()
        score(model, x[:OLD_PHOTOS], OLD_PHOTOS)  # warm-up: oneDNN's kernels, the allocator
        for photos in PARTS:
            wall, system = timed(partial(score, model, x, photos))
            row = {"model": name, "pass": f"score in parts of {photos}", "photos": photos}
            rows.append({**row, "ms_per_image": 1000 * wall / images, "system_share": system / wall, "kept": kept})
        model.train()
        step = partial(train_step, model, torch.optim.SGD(model.parameters(), lr=1e-3), x)
        step()  # warm-up
        wall, system = timed(step)
        row = {"model": name, "pass": f"train step, batch {TRAIN_BATCH}", "photos": TRAIN_BATCH}
        rows.append(
            {
                **row,
                "ms_per_image": 1000 * wall / min(images, 2 * TRAIN_BATCH),
                "system_share": system / wall,
                "kept": kept,
            }
        )
    return rows


def in_process(allocator: str, images: int) -> list[dict]:
    env = {**os.environ, "DEEPCAT_MALLOC": allocator}
    command = [sys.executable, __file__, "--worker", "--images", str(images)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def quick_run(allocator: str) -> float:
    """Seconds of `deepcat train digits --quick`, run as a user runs it."""
    env = {**os.environ, "DEEPCAT_MALLOC": allocator}
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        command = [sys.executable, "-m", "deepcat", "train", "digits", "--quick", "--output", out]
        subprocess.run(command, env=env, check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    from deepcat.evaluation.scores import FORWARD_PHOTOS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick-repeats", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cpu_memory.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(passes(args.images)))
        return
    turns: dict[tuple, list[dict]] = {}
    for _ in range(args.repeats):  # the two allocators take turns: a shared machine's drift falls on both
        for allocator in ALLOCATORS:
            for row in in_process(allocator, args.images):
                turns.setdefault((row["model"], row["pass"], allocator), []).append(row)
    quick: dict[str, list[float]] = {allocator: [] for allocator in ALLOCATORS}
    for _ in range(args.quick_repeats):
        for allocator in ALLOCATORS:
            quick[allocator].append(quick_run(allocator))
    rows = []
    for (model, pass_, allocator), runs in turns.items():
        photos = runs[0]["photos"]
        default = "train" if pass_.startswith("train") else photos == FORWARD_PHOTOS["cpu"]
        rows.append(
            {
                "model": model,
                "pass": pass_,
                "allocator": allocator,
                "ms_per_image": statistics.median(r["ms_per_image"] for r in runs),
                "system_share": statistics.median(r["system_share"] for r in runs),
                "deepcat": allocator == "kept" and default is not False,
                "old": allocator == "system" and (photos == OLD_PHOTOS or pass_.startswith("train")),
            }
        )
    for allocator, seconds in quick.items():
        if not seconds:
            continue
        rows.append(
            {
                "model": "tf_efficientnet_lite0",
                "pass": "deepcat train digits --quick",
                "allocator": allocator,
                "seconds": statistics.median(seconds),
                "deepcat": allocator == "kept",
            }
        )
    report("cpu_memory", rows, args.out, images=args.images, repeats=args.repeats, quick_repeats=args.quick_repeats)


if __name__ == "__main__":
    main()
