"""Fashion-MNIST: wall time from the start of training to each of 90/91/92/93/94% test accuracy, for
`deepcat.train` with its default recipe and two baselines run in the same process, one after another:

- the pytorch/examples MNIST loop (two conv layers, dropout, Adam 1e-3, batch 128, fp32);
- a strong hand-written recipe: small ResNet 32/64/128, SGD + one-cycle over 7 epochs, crop + flip,
  label smoothing 0.1, bf16 autocast, channels_last (augmentation on whole batches, as deepcat does).

Test accuracy is measured after every epoch with the clock stopped, on all 10,000 test images. deepcat's
time includes its own work: loading, the data audit (cached after the first run), validation each epoch,
and calibration, report and scoring at the end (reported separately as `after_training_seconds`).

    python benchmarks/train_speed.py              # ~20 min on 2 cores
    python benchmarks/train_speed.py --only deepcat
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

TARGETS = (0.90, 0.91, 0.92, 0.93, 0.94)


class Clock:
    """Wall time with pauses (while the benchmark, not the contestant, evaluates)."""

    def __init__(self):
        self.started, self.paused = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.paused

    def pause(self):
        clock = self

        class _Pause:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                clock.paused += time.perf_counter() - self.t

        return _Pause()


def test_tensors(normalise: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    from deepcat.data.sources import resolve_data

    test = resolve_data("fashion-mnist", val_fraction=0.0).test
    x = torch.from_numpy(test.items).float().div(255).sub(normalise[0]).div(normalise[1])[:, None]
    return x, torch.from_numpy(test.labels)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, rgb: bool = False, dtype=None) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 1000):
        xb = x[i:i + 1000]
        xb = xb.expand(-1, 3, -1, -1) if rgb else xb
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            correct += (model(xb).argmax(1) == y[i:i + 1000]).sum().item()
    model.train()
    return correct / len(y)


def times_to(curve: list[tuple[float, float]]) -> dict:
    out = {}
    for target in TARGETS:
        hit = next((t for t, acc in curve if acc >= target), None)
        out[f"s_to_{round(target * 100)}"] = hit
    return out


def deepcat_contestant(budget: float) -> dict:
    import deepcat

    x, y = test_tensors((0.5, 0.5))
    curve: list[tuple[float, float]] = []
    clock = Clock()

    class TestAccuracy:
        def on_epoch_end(self, *, model, **_):
            with clock.pause():
                curve.append((clock.elapsed(), accuracy(model, x, y, rgb=True, dtype=torch.bfloat16)))

    with tempfile.TemporaryDirectory() as tmp:
        clock.started = time.perf_counter()
        run = deepcat.train(data="fashion-mnist", output=tmp, name="speed", callbacks=[TestAccuracy()],
                            progress=False)
        total = clock.elapsed()
        cal = json.loads((run / "calibration.json").read_text())
    return {"contestant": "deepcat.train('fashion-mnist') (default recipe)", "epochs": len(curve),
            "ece_before": cal["ece_before"], "ece_after": cal["ece_after"],
            "best_test_accuracy": max(a for _, a in curve), "training_seconds": curve[-1][0],
            "after_training_seconds": total - curve[-1][0], **times_to(curve), "curve": curve}


class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py, unchanged."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = self.fc2(self.dropout2(F.relu(self.fc1(torch.flatten(self.dropout1(x), 1)))))
        return F.log_softmax(x, dim=1)


def train_tensors(normalise: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    from deepcat.data.sources import resolve_data

    train = resolve_data("fashion-mnist", val_fraction=0.0).train
    x = torch.from_numpy(train.items).float().div(255).sub(normalise[0]).div(normalise[1])[:, None]
    return x, torch.from_numpy(train.labels)


def examples_contestant(budget: float, epochs: int) -> dict:
    """The pytorch/examples loop: a DataLoader over the 60,000 training images, Adam 1e-3, batch 128, fp32."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(1)
    clock = Clock()
    x, y = train_tensors((0.2860, 0.3530))
    tx, ty = test_tensors((0.2860, 0.3530))
    model = ExamplesNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
    curve = []
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            F.nll_loss(model(xb), yb).backward()
            optimizer.step()
        with clock.pause():
            curve.append((clock.elapsed(), accuracy(model, tx, ty)))
        if clock.elapsed() > budget:
            break
    return {"contestant": "pytorch/examples MNIST loop (Adam, fp32) (baseline)", "epochs": len(curve),
            "best_test_accuracy": max(a for _, a in curve), "training_seconds": curve[-1][0],
            "after_training_seconds": 0.0, **times_to(curve), "curve": curve}


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class StrongNet(nn.Module):
    """A small ResNet, widths 32/64/128."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(conv_bn(1, 32), conv_bn(32, 32), nn.MaxPool2d(2), conv_bn(32, 64), conv_bn(64, 64),
                                  nn.MaxPool2d(2), conv_bn(64, 128), conv_bn(128, 128), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.body(x))


def strong_contestant(budget: float, epochs: int = 7) -> dict:
    torch.manual_seed(1)
    clock = Clock()
    x, y = train_tensors((0.5, 0.5))
    tx, ty = test_tensors((0.5, 0.5))
    model = StrongNet().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * math.ceil(len(y) / 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=steps)
    curve = []
    padded = F.pad(x, (3, 3, 3, 3), mode="reflect")
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for i in range(0, len(y), 128):
            index = order[i:i + 128]
            dy, dx = np.random.randint(0, 7, 2)
            xb = padded[index, :, dy:dy + 28, dx:dx + 28]      # one crop offset per batch: simple, hand-written
            if np.random.rand() < 0.5:
                xb = xb.flip(-1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), y[index],
                                       label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        with clock.pause():
            curve.append((clock.elapsed(), accuracy(model, tx, ty, dtype=torch.bfloat16)))
        if clock.elapsed() > budget:
            break
    return {"contestant": "strong hand-written recipe (ResNet 32/64/128, one-cycle, bf16) (baseline)",
            "epochs": len(curve), "best_test_accuracy": max(a for _, a in curve), "training_seconds": curve[-1][0],
            "after_training_seconds": 0.0, **times_to(curve), "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=600, help="seconds per baseline before it stops")
    parser.add_argument("--examples-epochs", type=int, default=5)
    parser.add_argument("--only", choices=("deepcat", "examples", "strong"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    runs = {"deepcat": lambda: deepcat_contestant(args.budget),
            "examples": lambda: examples_contestant(args.budget, args.examples_epochs),
            "strong": lambda: strong_contestant(args.budget)}
    rows = [fn() for name, fn in runs.items() if args.only in (None, name)]
    table = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    report("train_speed", table, args.out, curves={r["contestant"]: r["curve"] for r in rows},
           targets={"deepcat s_to_93": 90})


if __name__ == "__main__":
    main()
