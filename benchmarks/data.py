"""Does the input pipeline ever limit training? Images/s the training pipeline delivers against images/s the
model consumes in a training step, on the same machine, in one run:

- photos: 256 photo-sized JPEGs (640x480, from scikit-image's sample photos), decoded, randomly cropped,
  flipped and normalised by deepcat's DataLoader (0 and 2 worker processes), against EfficientNet-Lite0
  training steps at 224 px (bf16 autocast where the CPU has native bf16, else fp32; channels_last, batch 32);
- phone photos: 96 JPEGs of 4032x3024, the same pipeline decoding each whole, and at reduced scale as deepcat's
  training does (libjpeg's DCT scaling, keeping the shorter side >= twice the 256 px resize);
- small images: Fashion-MNIST through the whole-batch tensor path and through the per-image path it
  replaces, against the small CNN's training steps at 28 px (batch 128).

    python benchmarks/data.py        # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def rate(batches, count: int) -> float:
    """Images/s over `count` batches from the iterable `batches` (after one warm-up batch)."""
    it = iter(batches)
    next(it)
    started, seen = time.perf_counter(), 0
    for _ in range(count):
        x = next(it)[0]
        seen += len(x)
    return seen / (time.perf_counter() - started)


def train_rate(model: torch.nn.Module, batch: int, size: int, steps: int = 8) -> float:
    """A training step as `deepcat train` runs it: bf16 autocast where the CPU has native bf16 (emulated bf16 ran
    5x slower than fp32 on an AVX2-only CPU), channels_last."""
    from deepcat.device import amp_dtype

    dtype = amp_dtype("auto", torch.device("cpu"))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    for i in range(steps + 2):
        if i == 2:
            started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return batch * steps / (time.perf_counter() - started)


def precision() -> str:
    from deepcat.device import amp_dtype

    return "bf16" if amp_dtype("auto", torch.device("cpu")) is not None else "fp32"


def write_photos(root: Path, count: int) -> list[str]:
    from PIL import Image
    from skimage import data

    photos = [Image.fromarray(getattr(data, n)()[..., :3]) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        left, top = rng.integers(0, w // 4), rng.integers(0, h // 4)
        path = root / f"{i}.jpg"
        photo.crop((left, top, left + 3 * w // 4, top + 3 * h // 4)).resize((640, 480)).save(path, quality=90)
        paths.append(str(path))
    return paths


def write_phone_photos(root: Path, count: int) -> list[str]:
    """12-megapixel JPEGs, as a phone writes them (scikit-image's photos, upscaled)."""
    from PIL import Image
    from skimage import data

    root.mkdir()
    photos = [
        Image.fromarray(getattr(data, n)()[..., :3]).resize((4032, 3024), Image.BICUBIC)
        for n in ("astronaut", "coffee", "chelsea", "rocket")
    ]
    paths = [str(root / f"{i}.jpg") for i in range(count)]
    for i, path in enumerate(paths):
        photos[i % len(photos)].save(path, quality=90)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "data.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    from deepcat.data.loader import make_loader
    from deepcat.data.order import Order
    from deepcat.data.resolve import resolve_data
    from deepcat.data.sources import Samples
    from deepcat.data.tensor_batches import TensorBatches
    from deepcat.inputs import input_kind
    from deepcat.inputs.image import Preprocess
    from deepcat.inputs.image_tensors import train_transform
    from deepcat.models.create import create_model
    from deepcat.models.small_cnn import SmallCNN

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_photos(Path(tmp), 256)
        samples = Samples(paths, np.zeros(len(paths), dtype=np.int64))
        pre = Preprocess(224, 256)
        augment = train_transform(pre, augment="light", hflip=True, small_images=False)
        for workers in (0, 2):
            loader = make_loader(samples, augment, input_kind(), Order(32, shuffle=True), workers=workers)
            rows.append(
                {
                    "pipeline": f"photos 640x480 JPEG -> 224 px, DataLoader, {workers} workers",
                    "images_per_s": rate(loader, 6),
                }
            )
        phones = write_phone_photos(Path(tmp) / "phone", 96)
        for min_side, how in (
            (None, "decoded whole (baseline)"),
            (2 * pre.resize, "decoded at reduced scale (deepcat)"),
        ):
            loader = make_loader(
                Samples(phones, np.zeros(len(phones), dtype=np.int64)),
                augment,
                input_kind(),
                Order(16, shuffle=True),
                workers=2,
                min_side=min_side,
            )
            rows.append(
                {
                    "pipeline": f"phone photos 4032x3024 JPEG -> 224 px, 2 workers, {how}",
                    "images_per_s": rate(loader, 5),
                }
            )
        lite0, _ = create_model(name="tf_efficientnet_lite0", num_classes=10, image_size=224)
        rows.append(
            {
                "pipeline": f"consumed: EfficientNet-Lite0 training step, 224 px, {precision()} (baseline)",
                "images_per_s": train_rate(lite0, 32, 224, steps=4),
            }
        )

    fm = resolve_data("fashion-mnist").train
    small = Preprocess(28, 28, "bilinear", (0.5,) * 3, (0.5,) * 3)
    fast = TensorBatches(fm, small, Order(128, shuffle=True), augment="light", hflip=True)
    rows.append(
        {"pipeline": "Fashion-MNIST, whole-batch tensor path (deepcat's default)", "images_per_s": rate(fast, 100)}
    )
    per_image = make_loader(
        fm,
        train_transform(small, augment="light", hflip=True, small_images=True),
        input_kind(),
        Order(128, shuffle=True),
        workers=0,
    )
    rows.append({"pipeline": "Fashion-MNIST, per-image torchvision path (before)", "images_per_s": rate(per_image, 20)})
    rows.append(
        {
            "pipeline": f"consumed: small CNN training step, 28 px, {precision()} (baseline)",
            "images_per_s": train_rate(SmallCNN(10), 128, 28, steps=20),
        }
    )
    report("data", rows, args.out)


if __name__ == "__main__":
    main()
