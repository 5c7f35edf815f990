"""`deepcat train --quick`: the quick model as an ordinary run folder. The pretrained backbone stays as it is; the
head is `fit_quick`'s linear layer on the backbone's features of the training inputs (for files, through the
`FeatureCache` beside the data, so a second quick run on the same DATA embeds nothing), loaded into the model's
own classifier. The run is then written by training's own code (`start_run`, the `Checkpoint` callback), and the
public `train` judges it as any other run (calibration, the `unknown` score, test metrics, the report), so
`evaluate`, `export`, `serve` and `predict` take it like any run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn

from deepcat.config import TrainConfig
from deepcat.data.loader import BadInputLog
from deepcat.errors import DeepcatError
from deepcat.models.create import classifier_of, default_preprocess
from deepcat.teach.backbone import DEFAULT_BACKBONE
from deepcat.teach.features import FeatureCache
from deepcat.teach.quick import QuickHead, fit_quick
from deepcat.training import head_features
from deepcat.training.checkpoint import Checkpoint
from deepcat.training.distributed import Dist
from deepcat.training.loop import Fitted, start_run
from deepcat.training.setup import Setup, prepare

__all__ = ["fit_quick_run", "load_head", "quick_config"]


def quick_config(cfg: TrainConfig) -> TrainConfig:
    """The configuration a quick run is saved with: a pretrained backbone (`auto`: EfficientNet-Lite0, even for
    small images) fitted in one step (epochs 1, no frozen epochs)."""
    if cfg.pretrained is False or cfg.weights:
        raise DeepcatError(
            "--quick fits a head on a pretrained backbone's features; it takes neither --no-pretrained nor "
            f"--weights (received pretrained={cfg.pretrained}, weights={cfg.weights!r}). Drop them, or train "
            "without --quick"
        )
    model = DEFAULT_BACKBONE if cfg.model == "auto" else cfg.model
    return dataclasses.replace(cfg, model=model, pretrained=True, epochs=1, freeze_epochs=0)


def fit_quick_run(cfg: TrainConfig, *, progress: bool = True) -> Fitted:
    """Write a quick run's folder (config.yaml, model.json, split.csv, best/last weights, metrics.csv) and return it
    with its splits, for `evaluation.finish.after_training`.

    Args:
        cfg: the run's configuration with `quick` set (`deepcat.train(..., quick=True)`).
        progress: show progress bars.

    Returns:
        The run folder and its data splits.
    """
    s = prepare(quick_config(cfg), Dist())
    if s.pre.kind != "image":
        raise DeepcatError(
            f"--quick takes images; {s.splits.name} holds {s.pre.kind} inputs. Train sound without --quick"
        )
    head_layer = classifier_of(s.model)
    if not isinstance(head_layer, nn.Linear):
        raise DeepcatError(
            f"--quick needs a model whose classifier is one linear layer; {s.spec.name}'s is "
            f"{type(head_layer).__name__}. Use {DEFAULT_BACKBONE} (the default) or another timm model ending in one"
        )
    run_dir = start_run(s, None, Dist())
    started = time.perf_counter()
    features, labels = training_features(s, progress=progress)
    head = fit_quick(features, labels, classes=s.splits.classes)
    load_head(s.model, head)
    row = _metrics(head, features, labels, time.perf_counter() - started)
    state = {"epoch": 1, "step": 0, "best_acc": row["train_acc"], "best_loss": row["train_loss"], "history": [row]}
    print(f"quick head: {head.kind} on {head.labelled} training inputs' features", file=sys.stderr)
    Checkpoint(run_dir, lambda: state).on_epoch_end(metrics=row, history=[row], eval_model=s.model, improved=True)
    return Fitted(run_dir, s.splits, True)


def training_features(s: Setup, *, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of the readable training inputs: image files through the `FeatureCache` of their folder
    when the run's preprocessing is the backbone's own; otherwise (inputs in memory, another --image-size) one pass
    of the run's model, as its frozen epochs compute them (`training.head_features`)."""
    train = s.splits.train
    own = default_preprocess(s.model, s.spec, image_size=None, native_size=None)
    if isinstance(train.items, list) and not train.in_memory and own == s.pre:
        cache = FeatureCache(_data_root(s.cfg.data), backbone=s.spec.name)
        found = cache.features(train.items, progress=progress)
        BadInputLog().report([f"{path}: {reason}" for path, reason in found.bad])
        if not found.ok.any():
            raise DeepcatError(f"none of {s.splits.name}'s {len(train)} training inputs could be read")
        return found.features[found.ok], train.labels[found.ok]
    batches = head_features.feature_batches(s, BadInputLog(), progress=progress)
    return batches.features.numpy(), batches.labels.numpy()


def _data_root(data: str) -> Path:
    """The folder whose files the cache keys: DATA itself, or the folder of a CSV file."""
    path = Path(data)
    return path if path.is_dir() else path.parent


def load_head(model: nn.Module, head: QuickHead) -> None:
    """Copy the quick head into `model`'s classifier layer (same classes, same feature width)."""
    layer = cast(nn.Linear, classifier_of(model))
    if tuple(layer.weight.shape) != head.weight.shape:
        raise DeepcatError(
            f"the quick head is {head.weight.shape[0]} classes x {head.weight.shape[1]} features; the model's "
            f"classifier is {tuple(layer.weight.shape)}: fit it on this model's features"
        )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.weight))
        layer.bias.copy_(torch.from_numpy(head.bias))


def _metrics(head: QuickHead, features: np.ndarray, labels: np.ndarray, seconds: float) -> dict[str, Any]:
    """metrics.csv's one row, as the loop writes an epoch's (on the training inputs the head was fitted on)."""
    probs = head.predict_proba(features)
    right = probs[np.arange(len(labels)), labels]
    return {
        "epoch": 1,
        "train_loss": float(-np.log(np.maximum(right, 1e-12)).mean()),
        "train_acc": float((probs.argmax(1) == labels).mean()),
        "seconds": seconds,
    }
