"""Audit speed: Fashion-MNIST's 70,000 images, in memory and as 70,000 PNG files in class folders,
against the baseline of only decoding every file once (what any audit must at least do).

    python benchmarks/audit.py          # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "audit.json"))
    args = parser.parse_args()

    from PIL import Image

    from deepcat.data.audit import audit
    from deepcat.data.resolve import resolve_data

    rows = []
    splits = resolve_data("fashion-mnist")
    started = time.perf_counter()
    found = audit(splits, progress=False)
    rows.append(
        {
            "data": "fashion-mnist (in memory)",
            "images": found.images,
            "seconds": time.perf_counter() - started,
            "leak_groups": found.count("leak"),
            "conflict_groups": found.count("label_conflict"),
            "duplicate_groups": found.count("duplicate"),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("train", "val", "test"):
            samples = splits.split(name)
            for i, (image, label) in enumerate(zip(samples.items, samples.labels, strict=True)):
                folder = Path(tmp) / name / splits.classes[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{samples.ids[i]}.png")
        files = resolve_data(tmp)
        paths = [p for part in (files.train, files.val, files.test) if part is not None for p in part.items]
        started = time.perf_counter()
        for path in paths:
            with Image.open(path) as image:
                image.load()
        decode = time.perf_counter() - started
        rows.append({"data": "decode every PNG once (baseline, 1 process)", "images": len(paths), "seconds": decode})
        started = time.perf_counter()
        found = audit(files, progress=False)
        rows.append(
            {
                "data": "fashion-mnist (70,000 PNG files)",
                "images": found.images,
                "seconds": time.perf_counter() - started,
                "leak_groups": found.count("leak"),
                "conflict_groups": found.count("label_conflict"),
                "duplicate_groups": found.count("duplicate"),
            }
        )
    report("audit", rows, args.out)


if __name__ == "__main__":
    main()
