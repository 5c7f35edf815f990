"""Fine-tuning a pretrained photo model on a CPU: deepcat against the loops and the tool people use, on the same
photo-like task, weights, epochs, threads and allocator (the one deepcat sets on a CPU, `device.keep_freed_memory`),
each seed in one run.

The task: Fashion-MNIST, `--per-class` training images of each of the 10 classes written as PNG files (a subset
drawn by the seed), read and resized to EfficientNet-Lite0's 224 px input by every contestant, and
`--test-per-class` test images of each class (2,000 by default). All start from the same ImageNet weights (the
packaged EfficientNet-Lite0 file). Every contestant trains 1 frozen + `--unfrozen` epochs at batch 32, fp32:

- the plain loop as timm's documentation teaches: timm's model and training transform (`timm.data.create_transform`:
  random resized crop of 8-100%, flip, colour jitter) through a DataLoader (2 workers), a new head as timm
  initialises it, a head epoch with the backbone frozen (its forward runs every step), then every layer, AdamW
  with a one-cycle schedule per phase;
- the same loop with deepcat's recipe (crop of 35-100% and flip, a zero head, label smoothing 0.1): against
  `deepcat.train(unfreeze=1)` only the implementation differs;
- a plain loop with deepcat's whole recipe written out: the head learns from backbone features computed once,
  then the later half of timm's layer groups learn (the early ones keep their weights and batch-norm statistics),
  channels-last: against deepcat's default only the implementation differs, against the loops above the recipe;
- fastai as its documentation teaches: `vision_learner(dls, 'tf_efficientnet_lite0')` (its head, its
  normalisation from timm's config) on `ImageDataLoaders.from_folder` with fastai's presizing (`Resize(460)`,
  `aug_transforms(size=224, min_scale=0.75)`), then `learn.fine_tune(unfrozen)` with its defaults (base_lr 2e-3,
  one frozen epoch, discriminative learning rates); its per-epoch validation is skipped, the test is measured
  as for everyone;
- `deepcat.train` as a user gets it (the recipe above), and with `unfreeze=1` (every layer learns after the head
  epoch, as in the first two loops).

deepcat trains on the same images as the loops (`val_fraction=0`, no data audit). Test accuracy is measured
after every epoch with the clock stopped, on the same test tensors for everyone. Reported per seed: images/s in
the frozen and unfrozen phases, training time, final test accuracy, and the time to each of TARGETS (fixed before
any run); the summary gives, per contestant, the final accuracy's median [min, max] and mean and standard
deviation over seeds, and for each target the share of seeds that reached it and their median time. Contestants
take turns in an order that rotates with the seed. Seeds may run in parts (`--seeds 2`): rows merge into the
results file, each with its commit; rows from another CPU are dropped.

    python benchmarks/finetune.py                 # ~1 h 30 min on 2 cores: 3 seeds
    python benchmarks/finetune.py --seeds 3 4     # two more, merged
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
from common import merged, report  # noqa: E402
from finetune_vs_scratch import write_subset  # noqa: E402
from train_speed import Clock  # noqa: E402

from deepcat.device import keep_freed_memory  # noqa: E402

BATCH = 32
TARGETS = (0.70, 0.75, 0.80)  # test accuracy; fixed before the runs, from the 400-image results of the last version


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


def lite0(seed: int, *, zero_head: bool) -> nn.Module:
    """timm's Lite0 with the packaged ImageNet weights and a new 10-class head (timm's init, or zeros)."""
    import timm

    from deepcat.models import efficientnet_lite0

    torch.manual_seed(seed)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    weights = {k: v for k, v in efficientnet_lite0.load_state_dict().items() if not k.startswith("classifier.")}
    model.load_state_dict(weights, strict=False)  # timm.create_model(pretrained=True) where the hub is reachable
    if zero_head:
        nn.init.zeros_(model.classifier.weight)
        nn.init.zeros_(model.classifier.bias)
    return model


def one_cycle_epochs(model, net, loader, *, lr, epochs, loss_fn, clock, curve, phases, phase, test, inputs=None):
    """`epochs` of AdamW with a one-cycle schedule on `net`'s parameters that learn; test accuracy of `model`
    after each, off the clock. `inputs` turns a batch's x into what `net` takes (channels-last, say)."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
    for _ in range(epochs):
        started, images = clock.elapsed(), 0
        net.train()
        if phase == "unfrozen":
            keep_frozen_batchnorm(net)
        for x, y in loader:
            loss = loss_fn(net(inputs(x) if inputs else x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            images += len(y)
        phases.append((phase, images, clock.elapsed() - started))
        with clock.pause():
            curve.append((clock.elapsed(), accuracy(model, *test[:2])))


def keep_frozen_batchnorm(model: nn.Module) -> None:
    """Batch norm whose weights do not learn keeps its statistics (evaluation mode), as PyTorch users freeze it."""
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            m.eval()


def plain_loop(train_dir: Path, test: tuple, *, unfrozen: int, seed: int, same_recipe: bool) -> dict:
    """A head epoch on the frozen backbone, then everything, at 224 px in fp32. As timm's documentation teaches
    (its training transform, a new head as timm initialises it, plain cross-entropy), or with `same_recipe`
    deepcat's augmentation, zero head and label smoothing 0.1 (but every layer learning, the backbone's forward in
    the head epoch)."""
    from torchvision import datasets

    model = lite0(seed, zero_head=same_recipe)
    transform = deepcat_recipe_transform() if same_recipe else lite0_transform(is_training=True)
    data = datasets.ImageFolder(str(train_dir), transform)
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1 if same_recipe else 0.0)
    clock, curve, phases = Clock(), [], []
    common = dict(loss_fn=loss_fn, clock=clock, curve=curve, phases=phases, test=test)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("classifier."))
    one_cycle_epochs(model, model, loader, lr=2e-3, epochs=1, phase="frozen", **common)
    for p in model.parameters():
        p.requires_grad_(True)
    one_cycle_epochs(model, model, loader, lr=1e-3, epochs=unfrozen, phase="unfrozen", **common)
    name = "deepcat's augmentation, every layer" if same_recipe else "timm's transform, every layer"
    return summarise(f"plain PyTorch loop, {name}", curve, phases)


def plain_partial_loop(train_dir: Path, test: tuple, *, unfrozen: int, seed: int) -> dict:
    """deepcat's recipe as a plain loop: the backbone's pooled features of every training image once (the
    evaluation transform), the head's epoch on them (timm's dropout before it), then the later half of timm's
    layer groups learn with deepcat's augmentation, channels-last, label smoothing 0.1."""
    from timm.models import group_parameters
    from torchvision import datasets

    model = lite0(seed, zero_head=True)
    clock, curve, phases = Clock(), [], []
    common = dict(loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1), clock=clock, curve=curve, phases=phases, test=test)
    model.to(memory_format=torch.channels_last)
    plain = datasets.ImageFolder(str(train_dir), lite0_transform(is_training=False))
    features, labels, started = [], [], clock.elapsed()
    model.eval()
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(plain, batch_size=64, num_workers=2):
            x = x.contiguous(memory_format=torch.channels_last)
            features.append(model.forward_head(model.forward_features(x), pre_logits=True))
            labels.append(y)
    cached = torch.utils.data.TensorDataset(torch.cat(features), torch.cat(labels))
    phases.append(("frozen", 0, clock.elapsed() - started))  # the head epoch's images/s includes computing them
    head = nn.Sequential(nn.Dropout(model.drop_rate), model.classifier)
    head_loader = torch.utils.data.DataLoader(cached, batch_size=BATCH, shuffle=True, drop_last=True)
    one_cycle_epochs(model, head, head_loader, lr=2e-3, epochs=1, phase="frozen", **common)
    groups = list(group_parameters(model, model.group_matcher(coarse=False)).values())
    early = {name for names in groups[: round(len(groups) / 2)] for name in names}
    for name, p in model.named_parameters():
        p.requires_grad_(name not in early)
    data = datasets.ImageFolder(str(train_dir), deepcat_recipe_transform())
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
    channels_last = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731
    one_cycle_epochs(model, model, loader, lr=1e-3, epochs=unfrozen, phase="unfrozen", inputs=channels_last, **common)
    return summarise("plain PyTorch loop, deepcat's recipe (cached head features, later half learns)", curve, phases)


def fastai_run(data: Path, test: tuple, *, unfrozen: int, seed: int) -> dict:
    """fastai's `vision_learner(...).fine_tune(unfrozen)` with its defaults on fastai's presizing pipeline; the
    ImageNet weights from the packaged file through timm's `pretrained_cfg_overlay` (the hub is not reachable)."""
    from fastai.vision.all import (
        Callback,
        CancelValidException,
        ImageDataLoaders,
        Resize,
        aug_transforms,
        set_seed,
        vision_learner,
    )

    from deepcat.models import efficientnet_lite0

    clock, curve, phases = Clock(), [], []
    x, y, classes = test

    class Watch(Callback):
        def before_epoch(self):
            self.started, self.images = clock.elapsed(), 0

        def after_batch(self):
            if self.training:
                self.images += len(self.yb[0])

        def before_validate(self):  # the test is measured below, as for everyone
            phases.append(("frozen" if not phases else "unfrozen", self.images, clock.elapsed() - self.started))
            with clock.pause():
                curve.append((clock.elapsed(), accuracy(self.learn.model, x, y)))
            raise CancelValidException

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "tf_efficientnet_lite0.pth"
        torch.save(efficientnet_lite0.load_state_dict(), weights)
        set_seed(seed)
        clock.started = time.perf_counter()
        dls = ImageDataLoaders.from_folder(
            data,
            train="train",
            valid="test",
            item_tfms=Resize(460),
            batch_tfms=aug_transforms(size=224, min_scale=0.75),
            bs=BATCH,
            num_workers=2,
        )
        assert list(dls.vocab) == classes, "class order differs from the test's"
        learn = vision_learner(dls, "tf_efficientnet_lite0", pretrained_cfg_overlay={"file": str(weights)})
        learn.recorder.valid_metrics = False
        learn.add_cb(Watch())
        with learn.no_bar(), learn.no_logging():
            learn.fine_tune(unfrozen)
    return summarise("fastai vision_learner + fine_tune (its defaults)", curve, phases)


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
        **{f"s_to_{round(t * 100)}": next((s for s, acc in curve if acc >= t), None) for t in TARGETS},
        curve=curve,
    )
    return row


CONTESTANTS = (
    ("timm loop", lambda data, test, **c: plain_loop(data / "train", test, **c, same_recipe=False)),
    ("same-augmentation loop", lambda data, test, **c: plain_loop(data / "train", test, **c, same_recipe=True)),
    ("same-recipe loop", lambda data, test, **c: plain_partial_loop(data / "train", test, **c)),
    ("fastai", lambda data, test, **c: fastai_run(data, test, **c)),
    (
        "deepcat",
        lambda data, test, **c: deepcat_run(
            data, test, **c, name="deepcat.train (default: cached head features, the later half of the layers learns)"
        ),
    ),
    (
        "deepcat unfreeze=1",
        lambda data, test, **c: deepcat_run(
            data, test, **c, unfreeze=1.0, name="deepcat.train, unfreeze=1 (every layer)"
        ),
    ),
)


def one_seed(args: argparse.Namespace, seed: int) -> list[dict]:
    """Every contestant on the subset drawn with `seed`, in an order rotated by the seed (no contestant always
    runs first, on a cold disk cache, or last)."""
    turn = seed % len(CONTESTANTS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fashion-subset"
        write_subset(data, args.per_class, args.test_per_class, seed)
        test = test_tensors(data / "test")
        for key, contestant in CONTESTANTS[turn:] + CONTESTANTS[:turn]:
            row = {"key": key, **contestant(data, test, unfrozen=args.unfrozen, seed=seed), "seed": seed}
            print({k: v for k, v in row.items() if k != "curve"}, flush=True)
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per contestant over its seeds: final accuracy's median [min, max], mean and standard deviation; for each
    target, how many seeds reached it and their median seconds; median images/s per phase."""
    out = []
    for key in dict.fromkeys(r["key"] for r in rows):
        runs = [r for r in rows if r["key"] == key]
        final = [r["final_test_accuracy"] for r in runs]
        row: dict = {
            "key": key,
            "contestant": runs[0]["contestant"],
            "seeds": len(runs),
            "final_test_accuracy": [statistics.median(final), min(final), max(final)],
            "final_test_accuracy_mean_sd": [statistics.mean(final), statistics.stdev(final) if len(final) > 1 else 0],
            "frozen_images_per_s": statistics.median(r["frozen_images_per_s"] for r in runs),
            "unfrozen_images_per_s": statistics.median(r["unfrozen_images_per_s"] for r in runs),
            "training_seconds": statistics.median(r["training_seconds"] for r in runs),
        }
        for target in TARGETS:
            times = [r[f"s_to_{round(target * 100)}"] for r in runs if r[f"s_to_{round(target * 100)}"] is not None]
            row[f"reached_{round(target * 100)}"] = f"{len(times)} of {len(runs)}"
            row[f"median_s_to_{round(target * 100)}"] = statistics.median(times) if times else None
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--unfrozen", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "finetune.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    # deepcat's CPU path keeps freed memory (a process-wide allocator setting); set it for every contestant from
    # the start, so the order of turns does not decide who runs with it
    allocator = "keeps freed memory (every contestant)" if keep_freed_memory() else "glibc as it comes"
    new = [row for seed in args.seeds for row in one_seed(args, seed)]
    same = ("per_class", "test_per_class", "unfrozen")
    rows = merged(args.out, new, lambda r: r["seed"] in args.seeds or any(r.get(k) != vars(args)[k] for k in same))
    rows = [{**r, **{k: vars(args)[k] for k in same}} for r in rows]
    report(
        "finetune", rows, args.out, hide=("curve",), summary=summary(rows), targets=list(TARGETS), allocator=allocator
    )
    for row in summary(rows):
        print(row)


if __name__ == "__main__":
    main()
