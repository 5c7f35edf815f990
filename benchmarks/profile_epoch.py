"""Where one epoch of deepcat's default Fashion-MNIST recipe spends its time on this machine, and what that means
for the 90-second target of issue 15 part 3.

The recipe is the one `deepcat.train('fashion-mnist')` resolves (its model, batch, optimiser, augmentation,
precision). `--steps` training steps are timed phase by phase (the batch from the loader with its augmentation;
forward with the loss; backward; the optimiser step), then the same steps run under `torch.profiler`, whose
operator times are grouped into convolution, batch norm, activation and pooling, linear, loss, optimiser and the
rest. Validation over the held-out images (with the model's test-time flip) is timed too. Reported: the seconds
one epoch takes, split by phase and by operator group; the convolutions' GFLOP/s (PyTorch's FlopCounterMode
over a training step, against the seconds the profiler gives them) beside a large matrix product's, the CPU's
practical ceiling; the epochs the recipe runs against the epochs that fit in 90 s; and the seconds the recipe's
convolutions alone would take at that ceiling.

    python benchmarks/profile_epoch.py            # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

GROUPS = (  # operator name fragment -> group; the first match wins
    ("convolution", "convolution"),
    ("conv2d", "convolution"),
    ("mkldnn_conv", "convolution"),
    ("batch_norm", "batch norm"),
    ("native_batch_norm", "batch norm"),
    ("relu", "activation and pooling"),
    ("pool", "activation and pooling"),
    ("threshold", "activation and pooling"),
    ("addmm", "linear"),
    ("linear", "linear"),
    ("mm", "linear"),
    ("cross_entropy", "loss"),
    ("log_softmax", "loss"),
    ("nll_loss", "loss"),
    ("optimizer", "optimiser"),
    ("_foreach", "optimiser"),
    ("sgd", "optimiser"),
)


def group_of(name: str) -> str:
    low = name.lower()
    return next((group for fragment, group in GROUPS if fragment in low), "other")


def conv_flops_per_image(step, batch_size: int) -> float:
    """Floating-point operations of the convolutions (forward and backward) in one training step, per image,
    as PyTorch's own FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(timed=False)
    counts = counter.get_flop_counts()["Global"]
    return sum(n for op, n in counts.items() if "convolution" in str(op)) / batch_size


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """What this CPU's BLAS reaches on a large fp32 matrix product: a practical ceiling for the convolutions."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--budget", type=float, default=90.0, help="the target's seconds")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "profile_epoch.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    from deepcat.config import TrainConfig
    from deepcat.data.loader import BadInputLog, eval_loader
    from deepcat.evaluation.scores import collect_logits
    from deepcat.training.distributed import Dist
    from deepcat.training.setup import forward_loss, prepare

    s = prepare(TrainConfig(data="fashion-mnist", audit=False), Dist())
    cfg, model = s.cfg, s.model
    batches = iter(s.train_loader)
    phases: dict[str, float] = defaultdict(float)

    def step(timed: bool) -> None:
        t0 = time.perf_counter()
        x, y, _ = next(batches)
        t1 = time.perf_counter()
        _, loss = forward_loss(s, model, x, y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        s.optimizer.step()
        s.optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if timed:
            for name, seconds in (
                ("batch and augmentation", t1 - t0),
                ("forward and loss", t2 - t1),
                ("backward", t3 - t2),
                ("optimiser step", t4 - t3),
            ):
                phases[name] += seconds

    model.train()
    for _ in range(3):  # warm-up: oneDNN picks its kernels on the first calls
        step(timed=False)
    for _ in range(args.steps):
        step(timed=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step(timed=False)
    groups: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.self_cpu_time_total > 0:
            groups[group_of(event.key)] += event.self_cpu_time_total / 1e6
    profiled = sum(groups.values())

    steps_per_epoch = len(s.train_loader)
    step_seconds = sum(phases.values()) / args.steps
    epoch_train = step_seconds * steps_per_epoch
    log = BadInputLog()
    val_loader = eval_loader(s.splits.val, s.pre, batch_size=256, workers=cfg.workers)
    started = time.perf_counter()
    collect_logits(model, val_loader, device=s.device, dtype=s.dtype, log=log, desc="val", progress=False)
    val_seconds = time.perf_counter() - started
    flops = conv_flops_per_image(step, cfg.batch_size)
    conv_seconds_per_image = groups["convolution"] / profiled * step_seconds / cfg.batch_size
    epoch = epoch_train + val_seconds
    rows = [
        {
            "part": f"training phase: {name}",
            "seconds_per_epoch": t / args.steps * steps_per_epoch,
            "share": t / sum(phases.values()),
        }
        for name, t in phases.items()
    ]
    rows += [
        {"part": f"operator group: {name}", "seconds_per_epoch": t / profiled * epoch_train, "share": t / profiled}
        for name, t in sorted(groups.items(), key=lambda kv: -kv[1])
    ]
    rows.append(
        {"part": "validation (with test-time flip)", "seconds_per_epoch": val_seconds, "share": val_seconds / epoch}
    )
    ceiling = matmul_gflops()
    summary = {
        "recipe": {
            "model": cfg.model,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "optimizer": cfg.optimizer,
            "amp": str(s.dtype),
            "train_images": len(s.splits.train),
            "val_images": len(s.splits.val),
        },
        "epoch_seconds": epoch,
        "recipe_seconds": epoch * cfg.epochs,
        "epochs_in_budget": args.budget / epoch,
        "budget_seconds": args.budget,
        "conv_gflop_per_image_train": flops / 1e9,
        "conv_gflops_per_s": flops / conv_seconds_per_image / 1e9,
        "matmul_gflops_per_s": ceiling,
        "conv_floor_seconds_for_recipe": flops * len(s.splits.train) * cfg.epochs / ceiling / 1e9,
    }
    report("profile_epoch", rows, args.out, **summary)
    for key, value in summary.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
