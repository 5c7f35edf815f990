"""GPU figures, one prepared script: ResNet-50 training images/s at 224 px with bf16 autocast and channels_last,
without and with torch.compile; and Fashion-MNIST wall time to 93% test accuracy with deepcat's default
recipe (48,000 images, and all 60,000), test accuracy measured after each epoch with the clock stopped, as in
`train_speed.py`. The same code runs without a GPU (on the CPU, with --quick, to prove it works).

    python benchmarks/gpu.py                 # on a GPU machine, ~5 min
    python benchmarks/gpu.py --quick         # anywhere, ~1 min
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def resnet50_rate(device: torch.device, *, compiled: bool, batch: int, steps: int, size: int) -> float:
    import timm

    model = timm.create_model("resnet50", num_classes=1000).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step_model = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    warmup = 3
    for i in range(steps + warmup):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(step_model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: prove the script runs (CPU)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch, steps, size = (8, 2, 64) if args.quick else (256, 30, 224)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    rows = []
    for compiled in (False, True):
        rows.append(
            {
                "measure": f"ResNet-50 training, bf16, channels_last{', torch.compile' if compiled else ''}",
                "device": name,
                "batch": batch,
                "image_size": size,
                "images_per_s": resnet50_rate(device, compiled=compiled, batch=batch, steps=steps, size=size),
            }
        )
    from train_speed import deepcat_contestant

    if not args.quick:
        for val_fraction in (None, 0.0):
            result = deepcat_contestant(seed=0, val_fraction=val_fraction)
            rows.append(
                {
                    "measure": result["contestant"],
                    "device": name,
                    "epochs": result["epochs"],
                    "best_test_accuracy": result["best_test_accuracy"],
                    "s_to_93": result["s_to_93"],
                    "training_seconds": result["training_seconds"],
                    "after_training_seconds": result["after_training_seconds"],
                }
            )
    report("gpu", rows, args.out)


if __name__ == "__main__":
    main()
