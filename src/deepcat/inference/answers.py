"""What a prediction is, where its images come from, and the batching loop both runtimes share.

No torch here: `deepcat predict MODEL.onnx` and the server use it through `exported.py`.
"""

from __future__ import annotations

import glob
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from deepcat.errors import DeepcatError
from deepcat.inputs import BadInput, InputKind, all_suffixes
from deepcat.run_meta import Decision  # the owner's thresholds and costs: saved with the model, its home is run_meta

__all__ = [
    "UNKNOWN",
    "Decision",
    "InputItem",
    "Prediction",
    "Rule",
    "as_json",
    "decide",
    "decoded",
    "expand_inputs",
    "predict_batches",
]

InputItem = str | Path | Image.Image | np.ndarray | BinaryIO  # BinaryIO: an open file, e.g. a shard's member
UNKNOWN = "unknown"  # the label of an input unlike every training class (`unknown` score below threshold)


@dataclass
class Prediction:
    """The answer for one image: best label (or `unknown`), its probability and the top-k; or why it failed.

    `score` is the `unknown` score the rejection rule compares with `threshold`; `set`, when a coverage was
    asked for, is the prediction set: the classes that hold the true one with that probability."""

    source: str
    label: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    score: float | None = None
    threshold: float | None = None
    set: list[str] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "label": self.label,
            "probability": self.probability,
            "top": [{"label": lab, "probability": p} for lab, p in self.top],
            "score": self.score,
            "threshold": self.threshold,
            **({} if self.set is None else {"set": self.set}),
            "error": self.error,
        }


def decide(
    row: np.ndarray,
    classes: Sequence[str],
    *,
    top_k: int,
    score: float | None,
    threshold: float | None,
    set_limit: float | None = None,
    decision: Decision | None = None,
) -> dict[str, Any]:
    """One row of probabilities and its `unknown` score -> label (or `unknown` when the score is below
    `threshold`), probability, top-k and, with `set_limit`, the prediction set (classes whose -log probability
    is at most the limit, most probable first). The one rule `predict`, the ONNX runtime and the server share.
    `decision` (the owner's thresholds and costs) picks the label instead of the most probable class, and may
    answer `unknown` too; `probability` is then the chosen class's."""
    order = np.argsort(-row)
    top = order[: max(1, min(top_k, len(classes)))]
    rejected = threshold is not None and score is not None and score < threshold
    chosen: int | None = int(top[0])
    if decision is not None and not rejected:
        chosen = decision.choose(row)
    answer = {
        "label": UNKNOWN if rejected or chosen is None else classes[chosen],
        "probability": float(row[top[0] if chosen is None else chosen]),
        "top": [(classes[i], float(row[i])) for i in top],
        "score": None if score is None else float(score),
        "threshold": threshold,
    }
    if set_limit is not None:
        with np.errstate(divide="ignore"):
            answer["set"] = [classes[i] for i in order if -np.log(np.float64(row[i])) <= set_limit]
    return answer


def as_json(
    source: str,
    row: np.ndarray,
    score: float | None,
    *,
    classes: Sequence[str],
    top_k: int,
    threshold: float | None,
    set_limit: float | None = None,
    decision: Decision | None = None,
) -> dict[str, Any]:
    """One answer as `POST /v1/predict` gives it (also from the Flask and Django examples)."""
    answer = decide(row, classes, top_k=top_k, score=score, threshold=threshold, set_limit=set_limit, decision=decision)
    answer["top"] = [{"label": label, "probability": p} for label, p in answer["top"]]
    return {"source": source, **answer}


def decoded(item: InputItem, kind: InputKind) -> Any:
    """A path read from disk (or an open file, such as a shard's member), or an in-memory item (array, PIL
    image) taken as it is, by `kind`'s rules."""
    return kind.read(item) if isinstance(item, (str, Path, io.IOBase)) else kind.from_memory(item)


@dataclass(frozen=True)
class Rule:
    """How a row of probabilities becomes an answer (`decide`): the class names, how many to list, the `unknown`
    threshold (None: never), the prediction-set limit (None: no sets) and the owner's decision (None: the most
    probable class)."""

    classes: list[str]
    top_k: int
    threshold: float | None = None
    set_limit: float | None = None
    decision: Decision | None = None


def predict_batches(
    items: Sequence[InputItem],
    rule: Rule,
    *,
    kind: InputKind,
    prepare: Callable[[Any], Any],
    infer: Callable[[list[Any]], tuple[np.ndarray, np.ndarray | None]],
    batch_size: int = 32,
    progress: bool = False,
) -> list[Prediction]:
    """Decode, prepare and classify `items` in batches; an unreadable input gets `error`, not an exception.
    `infer` maps prepared images to (probabilities, `unknown` scores); `rule` turns each row into an answer."""
    from deepcat.progress import progress_bar

    results: list[Prediction] = []
    for start in progress_bar(range(0, len(items), batch_size), enabled=progress, desc="predict"):
        prepared, pending = [], []
        for item in items[start : start + batch_size]:
            pred = Prediction(source=str(item) if isinstance(item, (str, Path)) else type(item).__name__)
            try:
                prepared.append(prepare(decoded(item, kind)))
                pending.append(pred)
            except BadInput as e:
                pred.error = str(e)
            results.append(pred)
        if prepared:
            probs, scores = infer(prepared)  # (B, C), (B,)
            for i, (pred, row) in enumerate(zip(pending, probs)):
                score = None if scores is None else scores[i]
                answer = decide(
                    row,
                    rule.classes,
                    top_k=rule.top_k,
                    score=score,
                    threshold=rule.threshold,
                    set_limit=rule.set_limit,
                    decision=rule.decision,
                )
                for key, value in answer.items():
                    setattr(pred, key, value)
    return results


def expand_inputs(patterns: Sequence[InputItem]) -> list[InputItem]:
    """Files, folders (searched recursively for inputs deepcat reads) and globs, in the order given; in-memory
    items (arrays, PIL images) pass through."""
    suffixes = set(all_suffixes())
    found: list[InputItem] = []
    for pattern in patterns:
        if not isinstance(pattern, (str, Path)):
            found.append(pattern)
            continue
        path = Path(pattern)
        if path.is_dir():
            found += sorted(
                str(p)
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
            )
        elif path.exists():
            found.append(str(path))
        else:
            matches = sorted(glob.glob(str(pattern), recursive=True))
            if not matches:
                raise DeepcatError(f"no such file, folder or glob match: {pattern}")
            found += matches
    if not found:
        raise DeepcatError(f"no input files ({', '.join(sorted(suffixes))}) found in {', '.join(map(str, patterns))}")
    return found
