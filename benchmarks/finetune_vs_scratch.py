"""Fine-tuning pretrained EfficientNet-Lite0 against the same network from scratch, on a
small real set: N Fashion-MNIST images per class written as PNG files, the same folder,
split, epochs and budget for both.

    python benchmarks/finetune_vs_scratch.py --per-class 50 --epochs 6     # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def write_subset(root: Path, per_class: int, test_per_class: int, seed: int) -> list[str]:
    from deepcat.data.resolve import resolve_data

    splits = resolve_data("fashion-mnist", val_fraction=0.0)
    rng = np.random.default_rng(seed)
    for split, samples, n in (("train", splits.train, per_class), ("test", splits.test, test_per_class)):
        for c, name in enumerate(splits.classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in rng.choice(np.flatnonzero(samples.labels == c), n, replace=False):
                Image.fromarray(samples.items[i]).save(folder / f"{i}.png")
    return splits.classes


def run(data: Path, out: Path, *, pretrained: bool, epochs: int, image_size: int) -> dict:
    import deepcat

    started = time.perf_counter()
    run_dir = deepcat.train(
        data=str(data),
        model="tf_efficientnet_lite0",
        pretrained=pretrained,
        epochs=epochs,
        image_size=image_size,
        val_fraction=0.2,
        output=str(out),
        name="pretrained" if pretrained else "scratch",
        progress=False,
    )
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    return {
        "start": "ImageNet (fine-tune)" if pretrained else "random init (scratch)",
        "epochs": epochs,
        "image_size": image_size,
        "test_images": metrics["images"],
        "test_accuracy": metrics["accuracy"],
        "train_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "finetune_vs_scratch.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fashion-subset"
        write_subset(data, args.per_class, args.test_per_class, args.seed)
        rows = [
            run(data, Path(tmp) / "runs", pretrained=p, epochs=args.epochs, image_size=args.image_size)
            for p in (True, False)
        ]
    report("finetune_vs_scratch", rows, args.out, per_class=args.per_class)


if __name__ == "__main__":
    main()
