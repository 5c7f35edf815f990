"""Fashion-MNIST: wall time from the start of training to each of 90/91/92/93/94% test accuracy (TARGETS, fixed
before any run), for `deepcat.train` and two baselines, each run once per seed (`--seeds`):

- `deepcat.train('fashion-mnist')`, its default recipe: it trains on 48,000 images and holds 12,000 out for
  validation, calibration and `unknown`; and the same recipe on all 60,000 (`val_fraction=0`), the data the
  baselines get;
- pytorch/examples mnist/main.py as upstream writes it (its net, Adadelta lr 1.0, StepLR gamma 0.7, batch 64,
  its own 14 epochs, its normalisation), run to the end of its schedule, on all 60,000 images;
- a strong hand-written recipe: small ResNet 32/64/128, SGD with a one-cycle schedule laid over the same wall
  budget as deepcat's training with that seed (the learning rate follows the clock), crop + flip, label
  smoothing 0.1, channels_last, bf16 autocast where the CPU has native bf16 (as deepcat), on all 60,000 images.

Every contestant runs with the same 2 torch threads, the same allocator (the one deepcat sets on a CPU,
`device.keep_freed_memory`, set before the first turn) and answers the test with the same test-time flip: deepcat's
small CNN averages the features of an image and of its mirror before its linear head (its default), the
baselines average their logits over the two (the same thing for a linear head). Test accuracy is measured after
every epoch with the clock stopped, on all 10,000 test images. deepcat's time includes its own work: loading, the
data audit (cached after the first run), validation each epoch, and calibration, report and scoring at the end
(reported separately as `after_training_seconds`).

The contestants take turns in an order that changes with the seed (deepcat's default always before the strong
recipe, whose budget it sets). Seeds may run in parts (`--seeds 2`, about an hour each on 2 cores): rows merge
into the results file, each with its commit; rows from another CPU are dropped. The summary gives each
contestant's median [min, max] over its seeds, and for each target how many of its seeds reached it.

    python benchmarks/train_speed.py              # ~3 h on 2 cores: seeds 0, 1, 2
    python benchmarks/train_speed.py --seeds 3 4  # two more, merged
    python benchmarks/train_speed.py --only deepcat --seeds 0 --out /tmp/quick.json
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
from common import merged, report  # noqa: E402

from deepcat.device import amp_dtype, keep_freed_memory  # noqa: E402

CPU_AMP = amp_dtype("auto", torch.device("cpu"))  # the strong recipe's: bf16 only where the CPU has it natively
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
    from deepcat.data.resolve import resolve_data

    test = resolve_data("fashion-mnist", val_fraction=0.0).test
    x = torch.from_numpy(test.items).float().div(255).sub(normalise[0]).div(normalise[1])[:, None]
    return x, torch.from_numpy(test.labels)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, rgb: bool = False, flip: bool = True) -> float:
    """Test accuracy on the model's own device, with the autocast deepcat picks there; `flip`: the logits
    averaged over each image and its mirror (deepcat's model does it itself)."""
    model.eval()
    device = next(model.parameters()).device
    dtype = amp_dtype("auto", device)
    correct = 0
    for i in range(0, len(x), 1000):
        xb = x[i : i + 1000].to(device)
        xb = xb.expand(-1, 3, -1, -1) if rgb else xb
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(xb) + model(xb.flip(-1)) if flip else model(xb)
            correct += (logits.argmax(1).cpu() == y[i : i + 1000]).sum().item()
    model.train()
    return correct / len(y)


def times_to(curve: list[tuple[float, float]]) -> dict:
    out = {}
    for target in TARGETS:
        hit = next((t for t, acc in curve if acc >= target), None)
        out[f"s_to_{round(target * 100)}"] = hit
    return out


def deepcat_contestant(seed: int, val_fraction: float | None = None) -> dict:
    """The default recipe; `val_fraction=0`: on all 60,000 training images (no validation split, so no
    calibration or `unknown` threshold either)."""
    import deepcat

    x, y = test_tensors((0.5, 0.5))
    curve: list[tuple[float, float]] = []
    clock = Clock()

    class TestAccuracy:
        def on_epoch_end(self, *, model, **_):
            with clock.pause():
                curve.append((clock.elapsed(), accuracy(model, x, y, rgb=True, flip=False)))

    with tempfile.TemporaryDirectory() as tmp:
        clock.started = time.perf_counter()
        options = {} if val_fraction is None else {"val_fraction": val_fraction}
        run = deepcat.train(
            data="fashion-mnist",
            output=tmp,
            name="speed",
            callbacks=[TestAccuracy()],
            progress=False,
            seed=seed,
            **options,
        )
        total = clock.elapsed()
        cal_file = run / "calibration.json"
        cal = json.loads(cal_file.read_text()) if cal_file.is_file() else {}
    name = (
        "deepcat.train('fashion-mnist') (default recipe)"
        if val_fraction is None
        else f"deepcat.train('fashion-mnist', val_fraction={val_fraction:g})"
    )
    return {
        "contestant": name,
        "train_images": 48_000 if val_fraction is None else 60_000,
        "epochs": len(curve),
        "ece_before": cal.get("ece_before"),
        "ece_after": cal.get("ece_after"),
        "best_test_accuracy": max(a for _, a in curve),
        "training_seconds": curve[-1][0],
        "after_training_seconds": total - curve[-1][0],
        **times_to(curve),
        "curve": curve,
    }


class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py's Net, unchanged."""

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
    from deepcat.data.resolve import resolve_data

    train = resolve_data("fashion-mnist", val_fraction=0.0).train
    x = torch.from_numpy(train.items).float().div(255).sub(normalise[0]).div(normalise[1])[:, None]
    return x, torch.from_numpy(train.labels)


def examples_contestant(seed: int, epochs: int = 14) -> dict:
    """pytorch/examples mnist/main.py with its defaults: batch 64, Adadelta lr 1.0, StepLR(step_size=1,
    gamma=0.7), 14 epochs, Normalize((0.1307,), (0.3081,)), a shuffled DataLoader; run to its last epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    clock = Clock()
    x, y = train_tensors((0.1307, 0.3081))
    tx, ty = test_tensors((0.1307, 0.3081))
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    curve = []
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            F.nll_loss(model(xb), yb).backward()
            optimizer.step()
        with clock.pause():
            curve.append((clock.elapsed(), accuracy(model, tx, ty)))
        scheduler.step()
    return {
        "contestant": "pytorch/examples mnist/main.py as upstream (baseline)",
        "train_images": len(y),
        "epochs": len(curve),
        "best_test_accuracy": max(a for _, a in curve),
        "training_seconds": curve[-1][0],
        "after_training_seconds": 0.0,
        **times_to(curve),
        "curve": curve,
    }


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class StrongNet(nn.Module):
    """A small ResNet, widths 32/64/128."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(1, 32),
            conv_bn(32, 32),
            nn.MaxPool2d(2),
            conv_bn(32, 64),
            conv_bn(64, 64),
            nn.MaxPool2d(2),
            conv_bn(64, 128),
            conv_bn(128, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.body(x))


def strong_contestant(seed: int, budget: float) -> dict:
    """One-cycle over `budget` seconds of training: the learning rate follows the clock, so the schedule ends
    (annealed to zero) exactly when the budget does."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    clock = Clock()
    x, y = train_tensors((0.5, 0.5))
    tx, ty = test_tensors((0.5, 0.5))
    model = StrongNet().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    curve = []
    padded = F.pad(x, (3, 3, 3, 3), mode="reflect")
    while clock.elapsed() < budget:
        order = torch.randperm(len(y))
        for i in range(0, len(y), 128):
            progress = clock.elapsed() / budget
            if progress >= 1:
                break
            for group in optimizer.param_groups:  # one-cycle: 30% warm-up, then cosine down to zero
                group["lr"] = 0.1 * (
                    progress / 0.3 if progress < 0.3 else 0.5 * (1 + math.cos(math.pi * (progress - 0.3) / 0.7))
                )
            index = order[i : i + 128]
            dy, dx = np.random.randint(0, 7, 2)
            xb = padded[index, :, dy : dy + 28, dx : dx + 28]  # one crop offset per batch: simple, hand-written
            if np.random.rand() < 0.5:
                xb = xb.flip(-1)
            with torch.autocast("cpu", dtype=CPU_AMP, enabled=CPU_AMP is not None):
                loss = F.cross_entropy(
                    model(xb.contiguous(memory_format=torch.channels_last)), y[index], label_smoothing=0.1
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with clock.pause():
            curve.append((clock.elapsed(), accuracy(model, tx, ty)))
    return {
        "contestant": "strong hand-written recipe (ResNet 32/64/128, one-cycle over deepcat's budget) (baseline)",
        "train_images": len(y),
        "epochs": len(curve),
        "best_test_accuracy": max(a for _, a in curve),
        "training_seconds": curve[-1][0],
        "after_training_seconds": 0.0,
        **times_to(curve),
        "curve": curve,
    }


def summary(rows: list[dict]) -> list[dict]:
    """Per contestant: the median and range over seeds of best accuracy, training time and time to each target;
    a target some seeds never reached says how many did (the median is then of those)."""
    out = []
    for name in dict.fromkeys(r["contestant"] for r in rows):
        runs = [r for r in rows if r["contestant"] == name]
        row = {"contestant": f"{name}: median [min, max] of {len(runs)}"}
        for key in ("best_test_accuracy", "training_seconds", *(f"s_to_{round(t * 100)}" for t in TARGETS)):
            values = [r[key] for r in runs if r[key] is not None]
            row[key] = (
                (
                    f"{np.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]"
                    + (f" ({len(values)} of {len(runs)})" if len(values) < len(runs) else "")
                )
                if values
                else f"never (0 of {len(runs)})"
            )
        out.append(row)
    return out


# the order of each seed's turns (seed modulo 3): every contestant at several places, deepcat's default before
# the strong recipe, whose budget it sets
ORDERS = (
    ("deepcat", "deepcat-all", "examples", "strong"),
    ("examples", "deepcat", "strong", "deepcat-all"),
    ("deepcat-all", "deepcat", "examples", "strong"),
)


def one_seed(seed: int, only: set[str]) -> list[dict]:
    rows, budget = [], None
    for key in ORDERS[seed % len(ORDERS)]:
        if key not in only:
            continue
        if key == "deepcat":
            row = deepcat_contestant(seed=seed)
            budget = row["training_seconds"]
        elif key == "deepcat-all":
            row = deepcat_contestant(seed=seed, val_fraction=0.0)
        elif key == "examples":
            row = examples_contestant(seed=seed)
        else:
            if budget is None:
                raise SystemExit("the strong recipe's budget is deepcat's training time: run it with deepcat")
            row = strong_contestant(seed=seed, budget=budget)
        rows.append({"key": key, "seed": seed, **row})
        print({k: v for k, v in rows[-1].items() if k != "curve"}, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=ORDERS[0], default=list(ORDERS[0]))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    # deepcat's CPU path keeps freed memory (a process-wide allocator setting); set it for every contestant from
    # the start, so the order of turns does not decide who runs with it
    allocator = "keeps freed memory (every contestant)" if keep_freed_memory() else "glibc as it comes"
    new = [row for seed in args.seeds for row in one_seed(seed, set(args.only))]
    rows = merged(args.out, new, lambda r: "key" not in r or (r["seed"] in args.seeds and r["key"] in args.only))
    report(
        "train_speed",
        rows,
        args.out,
        hide=("curve",),
        summary=summary(rows),
        torch_threads=2,
        targets=[round(t * 100) for t in TARGETS],
        test_time_flip="every contestant",
        allocator=allocator,
    )
    for row in summary(rows):
        print(row)


if __name__ == "__main__":
    main()
