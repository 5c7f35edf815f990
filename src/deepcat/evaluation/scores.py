"""Evaluation: accuracy, top-k, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from deepcat.data.loader import BadInputLog, batches, eval_loader
from deepcat.data.sources import DataSplits, Samples
from deepcat.device import amp_dtype, autocast, pick_device
from deepcat.errors import DeepcatError
from deepcat.progress import progress_bar

__all__ = [
    "Evaluation",
    "Scoring",
    "collect_logits",
    "collect_outputs",
    "compute_metrics",
    "evaluate_run",
    "features_of",
    "iter_outputs",
    "logits_of",
    "pick_eval_samples",
    "score",
]


def collect_logits(
    model: nn.Module,
    loader: DataLoader[Any],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    log: BadInputLog,
    desc: str = "eval",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) as float32 and labels (N,) over a loader; unreadable images are skipped."""
    (logits,), labels = collect_outputs(
        model, loader, device=device, dtype=dtype, log=log, desc=desc, progress=progress
    )
    return logits, labels


PHOTO_ELEMENTS = 3 * 224 * 224
# Photos at 224 px (or as many input elements) per forward pass when scoring. On a CPU, larger parts are slower:
# their activations pass glibc's mmap threshold and are faulted in again at every layer (benchmarks/cpu_memory.py).
FORWARD_PHOTOS = {"cpu": 4, "cuda": 32}


def forward_rows(x: torch.Tensor, device: torch.device) -> int:
    """How many rows of `x` one scoring pass on `device` holds: FORWARD_PHOTOS' photos' worth of input elements."""
    photos = FORWARD_PHOTOS.get(device.type, FORWARD_PHOTOS["cuda"])
    return max(1, photos * PHOTO_ELEMENTS // max(1, x[0].numel()))


def forward_in_parts(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`model(x)`'s outputs (as a tuple), run on parts of `x` of `forward_rows` rows: a network's activations grow
    with its input (EfficientNet-Lite0 on a batch of 256 photos at 224 px peaked at 5.3 GB resident), and on a CPU
    a part past a few photos is slower, not faster. Small inputs (Fashion-MNIST, spectrograms) run in larger
    parts, with as many input elements."""
    rows = forward_rows(x, x.device)
    parts = [model(part) for part in x.split(rows)]
    columns = zip(*(part if isinstance(part, tuple) else (part,) for part in parts))
    return tuple(torch.cat(column) for column in columns)


def iter_outputs(
    model: nn.Module,
    loader: DataLoader[Any],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    log: BadInputLog,
    desc: str = "eval",
    progress: bool = True,
) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
    """Each batch's outputs (one tensor, or a tuple: `WithFeatures` gives features and logits) as float32 CPU
    tensors, and its labels; unreadable images are skipped. A caller that stores them row by row (a memory-mapped
    file) never holds them all."""
    model.eval()
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    for x, y in progress_bar(batches(loader, log), total=len(loader), desc=desc, leave=False, enabled=progress):
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(device, dtype):
            out = forward_in_parts(model, x)
        yield [t.float().cpu() for t in out], y


def collect_outputs(
    model: nn.Module,
    loader: DataLoader[Any],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    log: BadInputLog,
    desc: str = "eval",
    progress: bool = True,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each of the model's outputs as float32 arrays, and the labels, over a loader (`iter_outputs`, joined)."""
    outputs, labels = [], []
    for out, y in iter_outputs(model, loader, device=device, dtype=dtype, log=log, desc=desc, progress=progress):
        outputs.append(out)
        labels.append(y)
    if not outputs:
        raise DeepcatError("no readable images to evaluate")
    return [torch.cat(column).numpy() for column in zip(*outputs)], torch.cat(labels).numpy()


@dataclass
class Evaluation:
    """A model's scores on one split; `to_dict()` is the JSON file (`test_metrics.json`, `evaluation/metrics.json`)."""

    data: str
    split: str
    images: int
    accuracy: float
    top_k: int
    top_k_accuracy: float
    ece: float  # expected calibration error at the run's temperature
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out[f"top{self.top_k}_accuracy"] = out.pop("top_k_accuracy")
        return out


def compute_metrics(
    probs: np.ndarray, labels: np.ndarray, classes: list[str], *, data: str, split: str, top_k: int = 5
) -> Evaluation:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from deepcat.evaluation.calibration import expected_calibration_error

    pred = probs.argmax(1)
    k = min(top_k, len(classes))
    top = np.argsort(-probs, axis=1)[:, :k]
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, pred, labels=range(len(classes)), zero_division=0
    )
    return Evaluation(
        data=data,
        split=split,
        images=int(len(labels)),
        accuracy=float((pred == labels).mean()),
        top_k=k,
        top_k_accuracy=float((top == labels[:, None]).any(1).mean()),
        ece=expected_calibration_error(probs, labels),
        per_class={
            c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        confusion_matrix=confusion_matrix(labels, pred, labels=range(len(classes))).tolist(),
    )


def pick_eval_samples(splits: DataSplits, run_classes: list[str]) -> tuple[str, Samples]:
    """Test split if there is one, else val, else everything; labels re-indexed to the run's classes."""
    name = "test" if splits.test is not None else "val" if splits.val is not None else "train"
    samples = splits.split(name) or splits.train
    unknown = [c for c in splits.classes if c not in run_classes]
    if unknown:
        raise DeepcatError(
            f"the data has classes the model was not trained on: {unknown}. The model knows {run_classes}"
        )
    remap = np.array([run_classes.index(c) for c in splits.classes])
    return name, Samples(samples.items, remap[samples.labels], samples.ids)


@dataclass(frozen=True)
class Scoring:
    """How a model is run over samples for scoring: preprocessing, device, autocast dtype (None: fp32), loader
    workers, batch size and whether a bar shows."""

    pre: Any
    device: torch.device
    dtype: torch.dtype | None = None
    workers: int | None = None
    batch_size: int = 256
    progress: bool = True


def logits_of(
    model: nn.Module, samples: Samples, how: Scoring, *, desc: str = "score"
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of `model` on `samples`, preprocessed for evaluation."""
    loader = eval_loader(samples, how.pre, batch_size=how.batch_size, workers=how.workers)
    return collect_logits(
        model.to(how.device),
        loader,
        device=how.device,
        dtype=how.dtype,
        log=BadInputLog(),
        desc=desc,
        progress=how.progress,
    )


def features_of(
    model: nn.Module,
    samples: Samples,
    how: Scoring,
    *,
    classes: int,
    desc: str = "features",
    quiet: bool = False,
    tapped: nn.Module | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penultimate features (or what `tapped`, a `WithFeatures` of `model`, captures), logits and labels of
    `model` on `samples` in one pass; `quiet`: unreadable inputs were already reported (the training split),
    skip them without a word."""
    from deepcat.inference.unknown_score import WithFeatures, classifier_layer

    loader = eval_loader(samples, how.pre, batch_size=how.batch_size, workers=how.workers)
    tapped = tapped if tapped is not None else WithFeatures(model, classifier_layer(model, classes=classes))
    (features, logits), labels = collect_outputs(
        tapped.to(how.device),
        loader,
        device=how.device,
        dtype=how.dtype,
        log=BadInputLog(quiet=quiet),
        desc=desc,
        progress=how.progress,
    )
    return features, logits, labels


def score(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    classes: list[str],
    temperature: float,
    data: str,
    split: str,
    json_path: Path,
) -> Evaluation:
    """Metrics (with the ECE at `temperature`) of `data`'s `split`, saved as JSON at `json_path` and as
    confusion_matrix.png beside it."""
    from deepcat.evaluation.calibration import softmax
    from deepcat.evaluation.plots import plot_confusion

    metrics = compute_metrics(softmax(logits, temperature), labels, classes, data=data, split=split)
    json_path.write_text(json.dumps(metrics.to_dict(), indent=2))
    plot_confusion(
        np.array(metrics.confusion_matrix),
        classes,
        json_path.parent / "confusion_matrix.png",
        title=f"{data} ({split}): accuracy {metrics.accuracy:.3f}",
    )
    return metrics


def evaluate_run(
    run_dir: Path, *, data: str | None, batch_size: int, device: str, amp: str, which: str, progress: bool
) -> Evaluation:
    """Score a run on DATA (default: its own test split, else val); writes RUN/evaluation/."""
    from deepcat.run_folder import load_model, read_config, run_splits

    model, meta = load_model(run_dir, which=which)
    cal, classes = meta.calibration_or_default, list(meta.classes)
    data_name = data or read_config(run_dir)["data"]
    split_name, samples = pick_eval_samples(run_splits(run_dir, data), classes)
    dev = pick_device(device)
    out = run_dir / "evaluation"
    out.mkdir(exist_ok=True)
    how = Scoring(meta.preprocess, dev, amp_dtype(amp, dev), batch_size=batch_size, progress=progress)
    logits, labels = logits_of(model, samples, how)
    return score(
        logits,
        labels,
        classes=classes,
        temperature=cal.temperature,
        data=data_name,
        split=split_name,
        json_path=out / "metrics.json",
    )
