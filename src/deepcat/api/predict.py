"""`deepcat predict`: label inputs with a run, an exported model or the pretrained one; rows to a file at scale."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from deepcat.api.load import load

__all__ = ["predict"]

if TYPE_CHECKING:
    from deepcat.inference.answers import InputItem, Prediction
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inference.prediction_file import PredictionFile
    from deepcat.inference.torch_model import Classifier


@overload
def predict(
    model: str | Path | Classifier | ExportedClassifier | None,
    inputs: Sequence[InputItem],
    *,
    top_k: int = ...,
    reject: bool = ...,
    coverage: float | None = ...,
    batch_size: int = ...,
    output: None = ...,
    progress: bool = ...,
    decision: str | Path | None = ...,
) -> list[Prediction]: ...


@overload
def predict(
    model: str | Path | Classifier | ExportedClassifier | None,
    inputs: Sequence[InputItem],
    *,
    top_k: int = ...,
    reject: bool = ...,
    coverage: float | None = ...,
    batch_size: int = ...,
    output: str | Path,
    progress: bool = ...,
    decision: str | Path | None = ...,
) -> PredictionFile: ...


def predict(
    model: str | Path | Classifier | ExportedClassifier | None,
    inputs: Sequence[InputItem],
    *,
    top_k: int = 3,
    reject: bool = True,
    coverage: float | None = None,
    batch_size: int = 32,
    output: str | Path | None = None,
    progress: bool = False,
    decision: str | Path | None = None,
) -> list[Prediction] | PredictionFile:
    """Label files, folders or globs (or in-memory images) with a run, an exported model, a classifier from
    `load`, or (model None) the pretrained cat / dog / neither model. With `reject`, inputs below the calibrated
    threshold are `unknown`; with `coverage` (0.50 to 0.99), each answer has the set of classes that holds the
    true one that often. `progress` shows a bar when there are more than 64 inputs.

    With `output` (a .csv or .parquet path), rows are written as they come instead of returned: memory stays
    flat over millions of inputs, a second call skips what the file holds, `inputs` may be one folder or URL of
    shards (`shard`), and under torchrun the processes share the work and write one file.

    Args:
        model: a run folder, an .onnx/.ort/.xml (or its .bin)/.pte/.tflite file, a loaded classifier, or None.
        inputs: files, folders or globs; in Python also in-memory items (numpy arrays, PIL images).
        top_k: classes listed in each answer.
        reject: answer `unknown` below the model's calibrated threshold (off: always a class).
        coverage: also answer the set of classes that holds the true one with this probability (0.50 to 0.99,
            e.g. 0.9), fitted on the run's validation images.
        batch_size: inputs per forward pass.
        output: write rows to this .csv or .parquet as they come (millions of inputs, memory flat; a rerun skips
            what it holds; the inputs may be one folder or URL of shards; under torchrun the processes share
            the work).
        progress: show a bar (over 64 inputs).
        decision: a decision file (JSON: per-class least probabilities and a cost matrix, see docs/deploy/serve.md)
            to answer by, in place of the model's own (a run's decision.json, or an exported file's metadata).

    Returns:
        One `Prediction` per input, in order (an unreadable file's has `error` set); with `output`, a
        `PredictionFile` saying how many inputs were predicted and skipped.

    Examples:
        >>> [p.label for p in deepcat.predict("runs/pets", ["photos/"])]
        >>> [p.set for p in deepcat.predict("runs/pets", ["photos/"], coverage=0.9)]
        >>> deepcat.predict("runs/pets", ["s3://bucket/pets"], output="preds.parquet").predicted
        >>> deepcat.predict("runs/pets", ["photos/"], decision="decision.json")  # a false "dog" costs more
    """
    from deepcat.inference.answers import Decision, expand_inputs

    classifier = load(model) if model is None or isinstance(model, (str, Path)) else model
    options: dict[str, Any] = dict(top_k=top_k, reject=reject, coverage=coverage, batch_size=batch_size)
    if decision is not None:
        options["decision"] = Decision.read(decision, classes=classifier.classes)
    if output is not None:
        return _predict_to_file(classifier, inputs, Path(output), options, progress=progress)
    items = expand_inputs(inputs)
    return classifier.predict(items, **options, progress=progress and len(items) > 64)  # type: ignore[return-value]


def _predict_to_file(
    classifier: Classifier | ExportedClassifier,
    inputs: Sequence[InputItem],
    output: Path,
    options: dict[str, Any],
    *,
    progress: bool,
) -> PredictionFile:
    """`predict` into a file: the inputs (files, or every input of a set of shards), this process's share."""
    from deepcat.data import shards
    from deepcat.data.sources import combined
    from deepcat.inference.answers import expand_inputs
    from deepcat.inference.prediction_file import Share, predict_to_file
    from deepcat.training import distributed

    names: Sequence[str]
    if len(inputs) == 1 and isinstance(inputs[0], str) and shards.is_shards(inputs[0]):
        members = combined(shards.from_shards(inputs[0]))[0].items
        assert isinstance(members, shards.ShardMembers)  # noqa: S101 - from_shards made it
        names, read = list(members), members.item
    else:
        items = expand_inputs(inputs)
        names, read = [str(i) for i in items], lambda i: items[i]
    d = distributed.init_distributed()
    share = Share(d.rank, d.world_size, lambda: distributed.barrier(d))
    try:
        return predict_to_file(
            lambda batch: classifier.predict(batch, **options),  # type: ignore[arg-type,return-value]
            names,
            read,
            output,
            top_k=options["top_k"],
            share=share,
            progress=progress and d.is_main,
        )
    finally:
        distributed.cleanup(d)


def monitor_report(classifier: Classifier | ExportedClassifier, predictions: Sequence[Prediction]) -> dict[str, Any]:
    """The server's monitor report (`/v1/monitor`) over a batch of `predict`'s answers, its window all of them:
    how they compare with the validation split (drift tests, accuracy estimated without labels, alarm)."""
    from deepcat.inference.monitor import monitor_for

    monitor = monitor_for(classifier.classes, classifier.calibration, window=max(1, len(predictions)))
    monitor.observe_predictions(predictions)
    return monitor.report()
