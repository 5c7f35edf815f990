"""Scale: does memory stay flat and time grow linearly as the data grows?

1. Fine-tuning EfficientNet-Lite0 (`deepcat train DIR --model efficientnet_lite0 --image-size 64 --epochs 2`)
   on 1,000, 10,000 and 100,000 synthetic photo-sized JPEGs (500x375, two classes told apart by colour and
   texture): the audit, the backbone's features of every training image once (memory-mapped beyond 256 MB:
   100,000 images are 410 MB), the head's epoch on them, one epoch with the later half of the network
   learning, validation, calibration, the report: every pass over the data a run makes. At 64 px input (the
   photos are still decoded from 500x375 JPEGs) so that 100,000 images take an hour on 2 cores, not five.
   Peak memory of the whole process tree (the main process and its data-loader workers, summed as PSS: pages
   the forked workers share with it count once) and resident memory of the main process alone, both sampled
   every 0.2 s with psutil; seconds; training images per second over both epochs.
2. Batch prediction over the largest set's files (`deepcat predict RUN DIR --output preds.csv`) with the
   10,000-image run: one process against two (`torchrun --nproc-per-node 2`), images/s and peak memory.

    python benchmarks/scale.py --work /data/scale           # ~70 min on 2 cores: 100,000 images, 4 GB in --work
    python benchmarks/scale.py --sizes 1000,10000           # ~10 min; parts merge into the same results file
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import merged, report  # noqa: E402

CLASSES = ("warm", "cool")


def _photo(index: int) -> bytes:
    """One synthetic 500x375 JPEG: smooth random structure (upsampled noise) tinted by its class."""
    import io

    from PIL import Image

    rng = np.random.default_rng(index)
    coarse = rng.uniform(0, 255, (12, 16, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)
    pixels = np.asarray(image).astype(np.int16)
    tint = np.array([40, 0, -40] if index % 2 == 0 else [-40, 0, 40])
    pixels = np.clip(pixels + tint + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


def _write(args: tuple[Path, int]) -> None:
    root, index = args
    path = root / CLASSES[index % 2] / f"{index:06d}.jpg"
    if not path.exists():
        path.write_bytes(_photo(index))


def photos(work: Path, count: int) -> Path:
    """A folder of `count` JPEGs in class folders: the first `count` of one pool, hard-linked (no copies)."""
    pool = work / "pool"
    for name in CLASSES:
        (pool / name).mkdir(parents=True, exist_ok=True)
    with Pool(2) as workers:
        workers.map(_write, [(pool, i) for i in range(count)], chunksize=256)
    folder = work / f"photos-{count}"
    for i in range(count):
        link = folder / CLASSES[i % 2] / f"{i:06d}.jpg"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(pool / CLASSES[i % 2] / f"{i:06d}.jpg", link)
    return folder


def measured(command: list[str], home: Path) -> dict:
    """Run `command` with HOME at `home` (an empty audit cache: every run audits its data); its seconds and peak
    resident memory (process tree and main process), sampled."""
    import psutil

    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"tree": 0, "main": 0}

    def sample() -> None:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                family = [parent, *parent.children(recursive=True)]
                tree = sum(p.memory_full_info().pss for p in family)
                main = parent.memory_info().rss
            except psutil.Error:
                time.sleep(0.05)
                continue
            peak["tree"], peak["main"] = max(peak["tree"], tree), max(peak["main"], main)
            time.sleep(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return {
        "seconds": time.perf_counter() - started,
        "peak_tree_gb": peak["tree"] / 1e9,  # PSS, summed
        "peak_main_gb": peak["main"] / 1e9,  # RSS
        "stdout": out,
    }


def train_rows(work: Path, sizes: list[int]) -> list[dict]:
    rows = []
    for size in sizes:
        folder, name = photos(work, size), f"fine-tune-{size}"
        shutil.rmtree(work / "runs" / name, ignore_errors=True)  # a rerun measures a new run
        flags = ["--model", "efficientnet_lite0", "--image-size", "64", "--epochs", "2", "--batch-size", "64"]
        where = ["--output", str(work / "runs"), "--name", name]
        got = measured([*DEEPCAT, "train", str(folder), *flags, *where], work / "home" / name)
        metrics = (work / "runs" / name / "metrics.csv").read_text().splitlines()
        row = {
            "part": "train",
            "run": "fine-tune, 2 epochs",
            "images": size,
            "seconds": got["seconds"],
            "train_images_per_s": int(size * 0.8) * 2 / got["seconds"],  # the training split: 80%
            "peak_tree_gb": got["peak_tree_gb"],
            "peak_main_gb": got["peak_main_gb"],
            "val_acc": float(metrics[-1].split(",")[5]),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def predict_rows(work: Path, size: int) -> list[dict]:
    folder, run = photos(work, size), work / "runs" / "fine-tune-10000"
    if not run.is_dir():
        raise SystemExit(f"{run} is missing: run the train part with --sizes 10000 first")
    rows = []
    for processes in (1, 2):
        output = work / f"preds-{processes}.csv"
        output.unlink(missing_ok=True)
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "deepcat"]
        launch = DEEPCAT if processes == 1 else torchrun  # torchrun gives each process one thread (OMP_NUM_THREADS)
        got = measured([*launch, "predict", str(run), str(folder), "--output", str(output), "--json"], work / "home")
        summary = json.loads(got["stdout"].strip().splitlines()[-1])
        row = {
            "part": "predict",
            "run": f"{processes} process{'es' if processes > 1 else ''}",
            "images": size,
            "seconds": got["seconds"],
            "images_per_s": size / got["seconds"],
            "peak_tree_gb": got["peak_tree_gb"],
            "peak_main_gb": got["peak_main_gb"],
            "predicted": summary["predicted"] if processes == 1 else None,
            "rows": sum(1 for _ in output.open()) - 1,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


DEEPCAT = [sys.executable, "-m", "deepcat"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/deepcat-scale", help="where the JPEGs and runs go (4 GB)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--parts", default="train,predict")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    args = parser.parse_args()
    work, sizes, parts = Path(args.work), [int(s) for s in args.sizes.split(",")], args.parts.split(",")
    new = []
    if "train" in parts:
        new += train_rows(work, sizes)
    if "predict" in parts:
        new += predict_rows(work, max(sizes))
    rows = merged(args.out, new, lambda r: r["part"] in parts and (r["part"] != "train" or r["images"] in sizes))
    rows.sort(key=lambda r: (r["part"] != "train", r["run"], r["images"]))
    report("scale", rows, args.out)


if __name__ == "__main__":
    main()
