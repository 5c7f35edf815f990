"""Find mislabelled images: out-of-fold probabilities plus confident learning (cleanlab).

A trained run's network is the feature extractor (the input of its classifier head);
a logistic regression on those features, fitted k times on k-1 folds, gives every image a
predicted probability from a model that never saw its label. cleanlab's confident learning
then ranks the images whose given label those probabilities contradict most. Training the
whole network k times would be the textbook recipe; this is the fast one (seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from deepcat.data.loader import BadImageLog, batches, eval_loader
from deepcat.data.sources import DataSplits, Samples, combined
from deepcat.data.transforms import Preprocess
from deepcat.errors import DeepcatError


@torch.no_grad()
def embeddings(model: nn.Module, samples: Samples, pre: Preprocess, *, batch_size: int = 256,
               progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Features entering the classifier head, (N, D), and the labels of the readable images."""
    from tqdm import tqdm

    from deepcat.models.create import classifier_of

    captured: list[torch.Tensor] = []
    hook = classifier_of(model).register_forward_pre_hook(lambda _, args: captured.append(args[0].flatten(1).float()))
    loader = eval_loader(samples, pre, batch_size=batch_size)
    labels = []
    model.eval()
    try:
        for x, y in tqdm(batches(loader, BadImageLog(quiet=True)), total=len(loader), desc="features", leave=False,
                         disable=not progress):
            model(x)
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
    return cross_val_predict(model, features, labels, method="predict_proba", n_jobs=1,
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))


def find_label_errors(run: str | Path, splits: DataSplits, *, folds: int = 5, progress: bool = True
                      ) -> dict[str, Any]:
    """Suspected label errors of `splits` (every split), most suspicious first, using `run`'s features."""
    from cleanlab.filter import find_label_issues

    from deepcat.runs import load_model

    model, meta = load_model(run)
    if list(splits.classes) != list(meta["classes"]):
        raise DeepcatError(f"{run} was trained on classes {meta['classes']}, the data has {splits.classes}; "
                           f"check labels with a run trained on this data")
    samples, names, where = combined(splits)
    features, labels = embeddings(model, samples, Preprocess.from_dict(meta["preprocess"]), progress=progress)
    if len(labels) != len(samples):
        raise DeepcatError("some images are unreadable; run `deepcat check DATA` and fix them first")
    probs = out_of_fold_probs(features, labels, folds=folds)
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    classes = meta["classes"]
    suspects = [{"index": int(i), "item": names[i], "split": where[i], "given": classes[labels[i]],
                 "suggested": classes[int(probs[i].argmax())], "given_probability": float(probs[i, labels[i]]),
                 "suggested_probability": float(probs[i].max())} for i in ranked]
    return {"images": int(len(labels)), "oof_accuracy": float((probs.argmax(1) == labels).mean()),
            "suspects": suspects, "_samples": samples}


def print_suspects(result: dict[str, Any], limit: int = 20) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"suspected label errors: {len(result['suspects'])} of {result['images']} images "
                        f"(out-of-fold accuracy {result['oof_accuracy']:.3f})")
    for col in ("image", "split", "given", "suggested", "p(given)", "p(suggested)"):
        table.add_column(col)
    for s in result["suspects"][:limit]:
        table.add_row(s["item"], s["split"], s["given"], f"[bold]{s['suggested']}[/bold]",
                      f"{s['given_probability']:.3f}", f"{s['suggested_probability']:.3f}")
    Console().print(table)


def save(result: dict[str, Any], out: Path, *, grid: int = 32) -> tuple[Path, Path]:
    """label_issues.json and label_issues.png (the top `grid` suspects with given -> suggested labels)."""
    from PIL import Image

    from deepcat.plots import plot_image_grid
    from deepcat.prediction import as_pil

    out.mkdir(parents=True, exist_ok=True)
    samples = result["_samples"]
    top = result["suspects"][:grid]
    images = [Image.fromarray(samples.items[s["index"]]) if samples.in_memory else as_pil(samples.items[s["index"]])
              for s in top]
    titles = [f"{s['given']} -> {s['suggested']}\n{Path(s['item']).name}" for s in top]
    png = out / "label_issues.png"
    if top:
        plot_image_grid(images, titles, png, title="Suspected label errors: given -> suggested")
    path = out / "label_issues.json"
    path.write_text(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2))
    return path, png
