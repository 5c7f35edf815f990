"""Find mislabelled images: out-of-fold probabilities plus confident learning (cleanlab).

A trained run's network is the feature extractor (the input of its classifier head);
a logistic regression on those features, fitted k times on k-1 folds, gives every image a
predicted probability from a model that never saw its label. cleanlab's confident learning
then ranks the images whose given label those probabilities contradict most. Training the
whole network k times would be the textbook recipe; this is the fast one (seconds).
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from deepcat.data.loader import BadInputLog, batches, eval_loader
from deepcat.data.sources import DataSplits, Samples, combined
from deepcat.errors import DeepcatError
from deepcat.evaluation.scores import forward_in_parts
from deepcat.inputs import DEFAULT_KIND, Preprocessing, Words, input_kind

__all__ = ["LabelErrors", "Suspect", "embeddings", "find_label_errors", "out_of_fold_probs", "save"]


@dataclass
class Suspect:
    """One image whose given label its out-of-fold probabilities contradict."""

    index: int  # row in the combined train + val + test samples
    item: str
    split: str
    given: str
    suggested: str
    given_probability: float
    suggested_probability: float


@dataclass
class LabelErrors:
    """Suspected label errors, most suspicious first; `to_dict()` is label_issues.json."""

    images: int
    oof_accuracy: float  # accuracy of the out-of-fold probabilities
    suspects: list[Suspect]
    samples: Samples = field(repr=False)  # what `index` points into (for the image grid)
    input_kind: str = DEFAULT_KIND

    @property
    def words(self) -> Words:
        """How the kind of input is named in messages and tables."""
        return input_kind(self.input_kind).words

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "oof_accuracy": self.oof_accuracy,
            "suspects": [asdict(s) for s in self.suspects],
        }


@torch.no_grad()
def embeddings(
    model: nn.Module, samples: Samples, pre: Preprocessing, *, batch_size: int = 256, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Features entering the classifier head, (N, D), and the labels of the readable images."""
    from deepcat.models.create import classifier_of
    from deepcat.progress import progress_bar

    captured: list[torch.Tensor] = []
    hook = classifier_of(model).register_forward_pre_hook(lambda _, args: captured.append(args[0].flatten(1).float()))
    loader = eval_loader(samples, pre, batch_size=batch_size)
    labels = []
    model.eval()
    try:
        for x, y in progress_bar(
            batches(loader, BadInputLog(quiet=True)),
            total=len(loader),
            desc="features",
            leave=False,
            enabled=progress,
        ):
            forward_in_parts(model, x)  # the hook captures each part's features
            labels.append(y)
    finally:
        hook.remove()
    return torch.cat(captured).numpy(), torch.cat(labels).numpy()


def out_of_fold_probs(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each image's class probabilities from a logistic regression fitted without it (stratified k-fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = np.bincount(labels).min()
    folds = max(2, min(folds, int(smallest)))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.5))
    probs: np.ndarray = cross_val_predict(
        model,
        features,
        labels,
        method="predict_proba",
        n_jobs=1,
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    return probs


def find_label_errors(run: str | Path, splits: DataSplits, *, folds: int = 5, progress: bool = True) -> LabelErrors:
    """Suspected label errors of `splits` (every split), most suspicious first, using `run`'s features."""
    from cleanlab.filter import find_label_issues

    from deepcat.run_folder import load_model

    model, meta = load_model(run)
    classes = list(meta.classes)
    if list(splits.classes) != classes:
        raise DeepcatError(
            f"{run} was trained on classes {classes}, the data has {splits.classes}; "
            f"check labels with a run trained on this data"
        )
    samples, names, where = combined(splits)
    features, labels = embeddings(model, samples, meta.preprocess, progress=progress)
    if len(labels) != len(samples):
        raise DeepcatError("some images are unreadable; run `deepcat check DATA` and fix them first")
    probs = out_of_fold_probs(features, labels, folds=folds)
    # cleanlab's worker processes read module globals set in the parent: under the spawn start method (macOS,
    # Windows, a spawned process) they are not there, so it runs in this process
    jobs = None if multiprocessing.get_start_method() == "fork" else 1
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=jobs)
    suspects = [
        Suspect(
            int(i),
            names[i],
            where[i],
            classes[labels[i]],
            classes[int(probs[i].argmax())],
            float(probs[i, labels[i]]),
            float(probs[i].max()),
        )
        for i in ranked
    ]
    return LabelErrors(
        int(len(labels)), float((probs.argmax(1) == labels).mean()), suspects, samples, splits.input_kind
    )


def save(result: LabelErrors, out: Path, *, grid: int = 32) -> tuple[Path, Path]:
    """label_issues.json and label_issues.png (the top `grid` suspects with given -> suggested labels)."""

    from deepcat.evaluation.plots import plot_image_grid

    out.mkdir(parents=True, exist_ok=True)
    samples = result.samples
    top = result.suspects[:grid]
    kind = input_kind(result.input_kind)
    images = [kind.show(samples.decode(s.index, kind)) for s in top]
    titles = [f"{s.given} -> {s.suggested}\n{Path(s.item).name}" for s in top]
    png = out / "label_issues.png"
    if top:
        plot_image_grid(images, titles, png, title="Suspected label errors: given -> suggested")
    path = out / "label_issues.json"
    path.write_text(json.dumps(result.to_dict(), indent=2))
    return path, png
