"""Fine-tuning a pretrained photo model on a CPU: deepcat against the plain PyTorch loop that timm's and fastai's
documentation teach, on the same photo-like task, weights, epochs and threads, in one run.

The task: Fashion-MNIST, `--per-class` training images of each of the 10 classes written as PNG files, read and
resized to EfficientNet-Lite0's 224 px input by every contestant (real photos of clothes, upscaled). All start
from the same ImageNet weights (the packaged EfficientNet-Lite0 file). Contestants, each 1 frozen + `--unfrozen`
epochs at batch 32, AdamW with a one-cycle schedule per phase, fp32:

- the plain loop as timm's documentation teaches: timm's model and training transform (`timm.data.create_transform`:
  random resized crop of 8-100%, flip, colour jitter) through a DataLoader (2 workers), a new head as timm
  initialises it, a head epoch with the backbone frozen (its forward runs every step), then every layer at 224 px;
- the same loop with deepcat's recipe (crop of 35-100% and flip, a zero head, label smoothing 0.1), so that
  against deepcat only the implementation differs;
- `deepcat.train` as a user gets it: the head learns from backbone features computed once, then the later half
  of the layer groups learn (`unfreeze=0.5`: the early layers keep their ImageNet weights and batch-norm
  statistics and run without gradients), channels-last;
- the same with `unfreeze=1`: every layer learns after the head epoch, as in the plain loops.

deepcat trains on the same images as the loop (`val_fraction=0`, no data audit). Test accuracy on
`--test-per-class` images of each class is measured after every epoch with the clock stopped. Reported: images/s
in the frozen and unfrozen phases, the training time, and the time to each plain loop's final accuracy (less
`--tolerance`), with its ratio to that loop's own time; each contestant runs once per seed (`--seeds`: the
subset and the training seed), and the summary gives the median [min, max] over the seeds.

    python benchmarks/finetune.py            # ~45 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402
from finetune_vs_scratch import write_subset  # noqa: E402
from train_speed import Clock  # noqa: E402

BATCH = 32


def lite0_transform(*, is_training: bool):
    """timm's own transform for the model's data config, as timm's documentation builds it."""
    import timm
    import timm.data

    config = timm.data.resolve_data_config(model=timm.create_model("tf_efficientnet_lite0"))
    return timm.data.create_transform(**config, is_training=is_training)


def test_tensors(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The test images as Lite0's evaluation sees them (resize 256, centre crop 224, its mean and std)."""
    from torchvision import datasets

    test = datasets.ImageFolder(str(folder), lite0_transform(is_training=False))
    x = torch.stack([test[i][0] for i in range(len(test))])
    return x, torch.tensor(test.targets), test.classes


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    correct = sum((model(x[i : i + 64]).argmax(1) == y[i : i + 64]).sum().item() for i in range(0, len(x), 64))
    model.train(was_training)
    return correct / len(y)


def deepcat_recipe_transform():
    """deepcat's photo augmentation, written out: random resized crop of 35-100% of the image, flip."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.RandomResizedCrop(224, scale=(0.35, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.5,) * 3, (0.5,) * 3),
        ]
    )


def plain_loop(train_dir: Path, test: tuple, *, unfrozen: int, seed: int, same_recipe: bool) -> dict:
    """A head epoch on the frozen backbone, then everything, at 224 px in fp32. As timm's documentation teaches
    (its training transform, a new head as timm initialises it, plain cross-entropy), or with `same_recipe`
    deepcat's recipe (its augmentation, a zero head, label smoothing 0.1): then only the implementation differs."""
    import timm
    from torchvision import datasets

    from deepcat.models import efficientnet_lite0

    torch.manual_seed(seed)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    weights = {k: v for k, v in efficientnet_lite0.load_state_dict().items() if not k.startswith("classifier.")}
    model.load_state_dict(weights, strict=False)  # timm.create_model(pretrained=True) where the hub is reachable
    if same_recipe:
        nn.init.zeros_(model.classifier.weight)
        nn.init.zeros_(model.classifier.bias)
    transform = deepcat_recipe_transform() if same_recipe else lite0_transform(is_training=True)
    data = datasets.ImageFolder(str(train_dir), transform)
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1 if same_recipe else 0.0)
    clock, curve, phases = Clock(), [], []
    for phase, epochs, lr in (("frozen", 1, 2e-3), ("unfrozen", unfrozen, 1e-3)):
        for name, p in model.named_parameters():
            p.requires_grad_(phase == "unfrozen" or name.startswith("classifier."))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
        for _ in range(epochs):
            started, images = clock.elapsed(), 0
            model.train()
            for x, y in loader:
                loss = loss_fn(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                images += len(y)
            phases.append((phase, images, clock.elapsed() - started))
            with clock.pause():
                curve.append((clock.elapsed(), accuracy(model, *test[:2])))
    name = "deepcat's recipe" if same_recipe else "timm's transform"
    return summarise(f"plain PyTorch loop, {name} (fp32, 224 px, backbone forward in the head epoch)", curve, phases)


def deepcat_run(data: Path, test: tuple, *, unfrozen: int, seed: int, name: str, **options) -> dict:
    """`deepcat.train` on `data`'s train/ and test/ folders; its own evaluation at the end is off the clock."""
    import json

    import deepcat

    clock, curve, phases = Clock(), [], []
    x, y, classes = test

    class Watch:
        def on_epoch_start(self, *, epoch, **_):
            self.started, self.epoch, self.batches = clock.elapsed(), epoch, 0

        def on_batch_end(self, **_):
            self.batches += 1

        def on_epoch_end(self, *, model, **_):
            phase = "frozen" if self.epoch < 1 else "unfrozen"
            phases.append((phase, self.batches * BATCH, clock.elapsed() - self.started))
            with clock.pause():
                curve.append((clock.elapsed(), accuracy(model, x, y)))

    with tempfile.TemporaryDirectory() as tmp:
        clock.started = time.perf_counter()
        run = deepcat.train(
            data=str(data),
            model="tf_efficientnet_lite0",
            pretrained=True,
            epochs=1 + unfrozen,
            freeze_epochs=1,
            batch_size=BATCH,
            val_fraction=0.0,
            audit=False,
            workers=2,
            seed=seed,
            output=tmp,
            name="run",
            callbacks=[Watch()],
            progress=False,
            **options,
        )
        assert json.loads((run / "model.json").read_text())["classes"] == classes, "class order differs from the test's"
    return summarise(name, curve, phases)


def summarise(name: str, curve: list[tuple[float, float]], phases: list[tuple[str, int, float]]) -> dict:
    row: dict = {"contestant": name}
    for phase in ("frozen", "unfrozen"):
        done = [(n, s) for p, n, s in phases if p == phase]
        row[f"{phase}_images_per_s"] = sum(n for n, _ in done) / sum(s for _, s in done)
    row.update(
        training_seconds=curve[-1][0],
        final_test_accuracy=curve[-1][1],
        best_test_accuracy=max(a for _, a in curve),
        curve=curve,
    )
    return row


def one_seed(args: argparse.Namespace, seed: int) -> list[dict]:
    """Every contestant on the subset drawn with `seed`, and each one's time to each plain loop's final accuracy."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fashion-subset"
        write_subset(data, args.per_class, args.test_per_class, seed)
        test = test_tensors(data / "test")
        common = {"unfrozen": args.unfrozen, "seed": seed}
        rows = [
            plain_loop(data / "train", test, **common, same_recipe=False),
            plain_loop(data / "train", test, **common, same_recipe=True),
            deepcat_run(
                data,
                test,
                **common,
                name="deepcat.train (default: head on features computed once, the later half of the layers unfrozen)",
            ),
            deepcat_run(data, test, **common, unfreeze=1.0, name="deepcat.train, unfreeze=1 (every layer)"),
        ]
    for short, baseline in (("timm_loop", rows[0]), ("same_recipe_loop", rows[1])):
        target = baseline["final_test_accuracy"] - args.tolerance
        reached = {id(row): next((t for t, acc in row["curve"] if acc >= target), None) for row in rows}
        for row in rows:
            row[f"target_{short}"] = target
            row[f"s_to_{short}_final"] = reached[id(row)]
            row[f"speed_up_vs_{short}"] = reached[id(baseline)] / reached[id(row)] if reached[id(row)] else None
    for row in rows:
        row["seed"] = seed
    return rows


def spread(values: list) -> list | None:
    """[median, min, max] of the values that exist; None when a contestant never got there in some seed."""
    if any(v is None for v in values):
        return None
    return [statistics.median(values), min(values), max(values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=40)
    parser.add_argument("--unfrozen", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "finetune.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = [row for seed in args.seeds for row in one_seed(args, seed)]
    keys = (
        "frozen_images_per_s",
        "unfrozen_images_per_s",
        "training_seconds",
        "final_test_accuracy",
        "s_to_timm_loop_final",
        "speed_up_vs_timm_loop",
        "s_to_same_recipe_loop_final",
        "speed_up_vs_same_recipe_loop",
    )
    names = list(dict.fromkeys(r["contestant"] for r in runs))
    summary = [
        {"contestant": name, **{key: spread([r[key] for r in runs if r["contestant"] == name]) for key in keys}}
        for name in names
    ]
    report(
        "finetune",
        [{k: v for k, v in r.items() if k != "curve"} for r in runs],
        args.out,
        summary_median_min_max=summary,
        per_class=args.per_class,
        test_per_class=args.test_per_class,
        seeds=args.seeds,
        curves=[{"contestant": r["contestant"], "seed": r["seed"], "curve": r["curve"]} for r in runs],
    )
    for row in summary:
        print(row)


if __name__ == "__main__":
    main()
