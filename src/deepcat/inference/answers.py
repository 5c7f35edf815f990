"""What a prediction is, where its images come from, and the batching loop both runtimes share.

No torch here: `deepcat predict MODEL.onnx` and the server use it through `onnx_model.py`.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepcat.data.images import BadImage, is_image_file, load_image, to_rgb
from deepcat.errors import DeepcatError

InputItem = str | Path | Image.Image | np.ndarray
UNKNOWN = "unknown"  # the label of an image unlike every training class (energy score below threshold)


@dataclass
class Prediction:
    """The answer for one image: best label (or `unknown`), its probability and the top-k; or why it failed.

    `score` is the energy (logsumexp of the logits) the rejection rule compares with `threshold`."""

    source: str
    label: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    score: float | None = None
    threshold: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "label": self.label, "probability": self.probability,
                "top": [{"label": lab, "probability": p} for lab, p in self.top], "score": self.score,
                "threshold": self.threshold, "error": self.error}


def decide(row: np.ndarray, classes: list[str], *, top_k: int, score: float | None,
           threshold: float | None) -> dict[str, Any]:
    """One row of probabilities and its energy score -> label (or `unknown` when the score is below
    `threshold`), probability and top-k. The one rule `predict`, the ONNX runtime and the server share."""
    top = np.argsort(-row)[:max(1, min(top_k, len(classes)))]
    rejected = threshold is not None and score is not None and score < threshold
    return {"label": UNKNOWN if rejected else classes[top[0]], "probability": float(row[top[0]]),
            "top": [(classes[i], float(row[i])) for i in top], "score": None if score is None else float(score),
            "threshold": threshold}


def as_pil(item: InputItem) -> Image.Image:
    if isinstance(item, (str, Path)):
        return load_image(item)
    if isinstance(item, np.ndarray):
        return to_rgb(Image.fromarray(item))
    if isinstance(item, Image.Image):
        return to_rgb(item)
    raise DeepcatError(f"cannot predict on a {type(item).__name__}; pass a path, a PIL image or an array")


def predict_batches(items: Sequence[InputItem], *, prepare: Callable[[Image.Image], Any],
                    infer: Callable[[list[Any]], tuple[np.ndarray, np.ndarray | None]], classes: list[str],
                    top_k: int, threshold: float | None = None, batch_size: int = 32,
                    progress: bool = False) -> list[Prediction]:
    """Decode, prepare and classify `items` in batches; an unreadable image gets `error`, not an exception.
    `infer` maps prepared images to (probabilities, energy scores); below `threshold` the label is `unknown`."""
    from tqdm import tqdm

    results: list[Prediction] = []
    for start in tqdm(range(0, len(items), batch_size), disable=not progress, desc="predict"):
        prepared, pending = [], []
        for item in items[start:start + batch_size]:
            pred = Prediction(source=str(item) if isinstance(item, (str, Path)) else type(item).__name__)
            try:
                prepared.append(prepare(as_pil(item)))
                pending.append(pred)
            except BadImage as e:
                pred.error = str(e)
            results.append(pred)
        if prepared:
            probs, scores = infer(prepared)                                   # (B, C), (B,)
            for i, (pred, row) in enumerate(zip(pending, probs)):
                score = None if scores is None else scores[i]
                for key, value in decide(row, classes, top_k=top_k, score=score, threshold=threshold).items():
                    setattr(pred, key, value)
    return results


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Files, folders (searched recursively for images) and globs, in the order given."""
    found: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if is_image_file(p))
        elif path.exists():
            found.append(str(path))
        else:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise DeepcatError(f"no such file, folder or glob match: {pattern}")
            found += matches
    if not found:
        raise DeepcatError(f"no images found in {', '.join(patterns)}")
    return found
