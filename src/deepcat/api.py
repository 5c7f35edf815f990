"""The Python API: one function per `deepcat` command, with the same options, typed and keyword-only.

The CLI (`cli.py`) parses flags into these calls and prints what they return; a test walks both and
fails when they differ. Each function is the front of one layer: data/ (check), training/ (train,
lr_find), evaluation/ (evaluate, explain, report), inference/ (predict, load), export/, serving/.
Heavy libraries load inside each function, so `import deepcat` stays instant.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from typing_extensions import Unpack

from deepcat.config import TrainConfig, TrainOptions
from deepcat.data.audit.findings import NEAR_DUPLICATE_BITS
from deepcat.errors import DeepcatError
from deepcat.inference.listen import Spotting
from deepcat.inference.runtimes import DEVICES
from deepcat.run_folder import model_source
from deepcat.serving.limits import Limits
from deepcat.serving.model_file import PRECISIONS

__all__ = [
    "DEVICES",
    "NEAR_DUPLICATE_BITS",
    "PRECISIONS",
    "CheckResult",
    "Limits",
    "check",
    "evaluate",
    "explain",
    "export",
    "export_formats",
    "listen",
    "load",
    "lr_find",
    "model_source",
    "predict",
    "report",
    "shard",
    "serve",
    "Spotting",
    "train",
    "tune",
]

if TYPE_CHECKING:
    from deepcat.data.audit import Audit, CleanSplit
    from deepcat.evaluation.explain import Explanation
    from deepcat.evaluation.label_errors import LabelErrors
    from deepcat.evaluation.scores import Evaluation
    from deepcat.exporting.export import ExportResult
    from deepcat.inference.answers import InputItem, Prediction
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inference.listen import Detection
    from deepcat.inference.prediction_file import PredictionFile
    from deepcat.inference.torch_model import Classifier
    from deepcat.training.lr_find import LrFind
    from deepcat.tuning.results import TuneResult


def train(  # type: ignore[misc]  # DATA may come first, as on the command line
    data: str | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    **options: Unpack[TrainOptions],
) -> Path:
    """Train a classifier and return its run folder. `options` are the fields of `TrainConfig` (flags of
    `deepcat train`); `config` is a YAML file of them (arguments win). After fitting, the best weights are
    calibrated, scored on the test split and reported (`report.html`).

    Args:
        data: DATA (a folder, a CSV, a built-in name); may also come in `options` or `config`.
        config: a YAML file of training options. resume: a run folder to continue to its epochs.
        callbacks: objects with some of the `on_*` event methods. progress: show progress bars.
        options: the fields of `TrainConfig`.

    Returns:
        The run folder (config.yaml, model.json, the weights, metrics, report.html).

    >>> run = deepcat.train("pets", model="resnet18", epochs=5)
    >>> deepcat.train(resume=run)  # continue an interrupted run
    """
    from deepcat.config import resolve_config
    from deepcat.evaluation.finish import after_training
    from deepcat.training.checkpoint import restarted_run, resume_point
    from deepcat.training.loggers import log_run_folder
    from deepcat.training.loop import fit

    if data is not None:
        options["data"] = data
    if not resume:
        cfg, state = resolve_config(config_file=config, **options), None
        resume = restarted_run(Path(cfg.output))  # torchrun restarted the workers: continue its run
    if resume:
        cfg, state = resume_point(Path(resume), dict(options))
    fitted = fit(cfg, state=state, run_dir=Path(resume) if resume else None, callbacks=callbacks, progress=progress)
    if fitted.is_main:
        after_training(fitted.run_dir, fitted.splits, progress=progress)
        log_run_folder(fitted.run_dir, cfg)
    return fitted.run_dir


def evaluate(
    run: str | Path,
    data: str | None = None,
    *,
    batch_size: int = 256,
    device: str = "auto",
    amp: str = "auto",
    which: str = "best",
    progress: bool = True,
) -> Evaluation:
    """Score a run on DATA (default: its own test split, else val); writes RUN/evaluation/.

    Args:
        run: a run folder. data: DATA to score on (default: the run's own test split, else val).
        batch_size, device, amp: how to run the model. which: "best" or "last" weights. progress: show a bar.

    Returns:
        An `Evaluation`: accuracy, top-k accuracy, ECE, per-class metrics and the confusion matrix.

    >>> deepcat.evaluate("runs/smallcnn-digits").accuracy
    """
    from deepcat.evaluation.scores import evaluate_run

    return evaluate_run(
        Path(run), data=data, batch_size=batch_size, device=device, amp=amp, which=which, progress=progress
    )


def load(model: str | Path | None = None, *, which: str = "best") -> Classifier | ExportedClassifier:
    """A classifier to call `.predict` on: a run folder (PyTorch), an exported .onnx/.ort/.xml/.pte/.tflite file
    (ONNX Runtime, OpenVINO, ExecuTorch or LiteRT; only ExecuTorch imports torch), or with neither the pretrained
    cat / dog / neither model.

    Args:
        model: a run folder, an .onnx/.ort/.xml/.pte/.tflite file, or None. which: "best" or "last" weights of a run.

    Returns:
        A `Classifier` (PyTorch) or an `ExportedClassifier` (ONNX Runtime, OpenVINO or ExecuTorch), each with
        `.predict`.

    >>> deepcat.load("runs/pets").predict("cat.jpg").label
    >>> deepcat.load("runs/pets/export/model.onnx").predict(["a.jpg", "b.jpg"])
    """
    if model is not None and model_source(model) == "exported":
        from deepcat.inference.exported import load_exported

        return load_exported(model)
    from deepcat.inference.torch_model import load_run, pretrained_cat_dog

    return pretrained_cat_dog() if model is None else load_run(model, which=which)


@overload
def predict(
    model: str | Path | Classifier | ExportedClassifier | None,
    inputs: Sequence[InputItem],
    *,
    top_k: int = 3,
    reject: bool = True,
    coverage: float | None = None,
    batch_size: int = 32,
    output: None = None,
    progress: bool = False,
) -> list[Prediction]: ...


@overload
def predict(
    model: str | Path | Classifier | ExportedClassifier | None,
    inputs: Sequence[InputItem],
    *,
    top_k: int = 3,
    reject: bool = True,
    coverage: float | None = None,
    batch_size: int = 32,
    output: str | Path,
    progress: bool = False,
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
) -> list[Prediction] | PredictionFile:
    """Label files, folders or globs (or in-memory images) with a run, an exported model, a classifier from
    `load`, or (model None) the pretrained cat / dog / neither model. With `reject`, inputs below the calibrated
    threshold are `unknown`; with `coverage` (0.50 to 0.99), each answer has the set of classes that holds the
    true one that often. `progress` shows a bar when there are more than 64 inputs.

    With `output` (a .csv or .parquet path), rows are written as they come instead of returned: memory stays
    flat over millions of inputs, a second call skips what the file holds, `inputs` may be one folder or URL of
    shards (`shard`), and under torchrun the processes share the work and write one file.

    Args:
        model: a run folder, an .onnx/.ort/.xml/.pte/.tflite file, a loaded classifier, or None.
        inputs: files, folders, globs, or in-memory items (numpy arrays, PIL images).
        top_k: classes listed in each answer; reject: answer `unknown` below the threshold; coverage: also answer
            a prediction set; batch_size: inputs per forward pass; output: write rows here (see above).

    Returns:
        One `Prediction` per input, in order (an unreadable file's has `error` set); with `output`, a
        `PredictionFile` saying how many inputs were predicted and skipped.

    >>> [p.label for p in deepcat.predict("runs/pets", ["photos/"])]
    >>> [p.set for p in deepcat.predict("runs/pets", ["photos/"], coverage=0.9)]
    >>> deepcat.predict("runs/pets", ["s3://bucket/pets"], output="preds.parquet").predicted
    """
    from deepcat.inference.answers import expand_inputs

    classifier = load(model) if model is None or isinstance(model, (str, Path)) else model
    options: dict[str, Any] = dict(top_k=top_k, reject=reject, coverage=coverage, batch_size=batch_size)
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


def export_formats() -> list[str]:
    """The names `export(format=...)` accepts.

    Returns:
        The registered export formats' names.
    """
    from deepcat.exporting.formats import FORMATS

    return FORMATS.names()


def export(
    run: str | Path,
    *,
    format: str = "onnx",
    output: str | Path | None = None,
    calibration_images: int | None = None,
    check_images: int = 500,
    progress: bool = True,
) -> ExportResult:
    """Write a deployable model (ONNX, OpenVINO or ExecuTorch, fp32 or int8; .ort; TorchScript) and check it against
    PyTorch on the run's validation images; a check out of bounds raises DeepcatError. The run's report lists the
    file.

    Args:
        run: a run folder. format: a name from `export_formats()`. output: the file to write (default:
            RUN/export/<format's file>). calibration_images: int8's calibration images (auto by size).
        check_images: validation images the check compares on. progress: show progress bars.

    Returns:
        An `ExportResult`: the file, its size, the check's figures and, for int8, what stayed float.

    >>> deepcat.export("runs/pets", format="onnx-int8").path
    """
    from deepcat.evaluation.finish import after_export
    from deepcat.exporting.export import export_run

    result = export_run(
        Path(run),
        format=format,
        output=output,
        calibration_images=calibration_images,
        check_images=check_images,
        progress=progress,
    )
    after_export(run)
    return result


def serve(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    reject: bool = True,
    precision: str = "auto",
    device: str = "auto",
    limits: Limits | None = None,
) -> None:
    """Serve a run (exported to ONNX on first use), an exported file (.onnx, .ort, .xml), or the pretrained
    cat / dog / neither model: the REST API and the web page, until interrupted. `api_key` defaults to
    $DEEPCAT_API_KEY. `precision`: a run's int8 export is served on a CPU when it passed its check (auto), or
    choose fp32 or int8. `device`: ONNX Runtime's CUDA provider where it has one and the machine a GPU (auto), or
    choose cpu or cuda.

    Args:
        model: a run folder, an exported file, or None for the pretrained cat / dog / neither model.
        host, port: where to listen. api_key: required in X-API-Key when set. reject: answer `unknown` below
            the threshold. precision: auto, fp32 or int8. device: auto, cpu or cuda. limits: the server's `Limits`.

    Returns:
        Nothing; it serves until interrupted.

    >>> deepcat.serve("runs/pets", port=8080, limits=Limits(max_batch=16))
    """
    from deepcat.serving.start import run_server

    run_server(
        model,
        host=host,
        port=port,
        api_key=api_key,
        reject=reject,
        precision=precision,
        device=device,
        limits=limits or Limits(),
    )


@dataclass
class CheckResult:
    """What `deepcat check` found and wrote."""

    audit: Audit
    audit_path: Path  # audit.json
    clean: CleanSplit | None = None  # with fix=True: the cleaned split CSV
    label_errors: LabelErrors | None = None  # with labels=RUN


def check(
    data: str,
    *,
    val_fraction: float = TrainConfig.val_fraction,
    seed: int = TrainConfig.seed,
    classes: str | None = TrainConfig.classes,
    data_root: str | None = TrainConfig.data_root,
    modality: str = TrainConfig.modality,
    near: int = NEAR_DUPLICATE_BITS,
    fix: bool = False,
    labels: str | Path | None = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> CheckResult:
    """Audit DATA as `deepcat.train` would split it (the same split options): unreadable files, duplicates,
    leaks, imbalance. `fix` writes a cleaned split CSV (your files are never touched); `labels=RUN` finds likely
    mislabelled images with a run trained on DATA. Files go to `output` (default: checks/<data name>).

    Args:
        data: DATA. val_fraction, seed, classes, data_root, modality: split it as `train` would.
        near: perceptual-hash bits within which images are near duplicates. fix: write a cleaned split CSV.
        labels: a run trained on DATA, to look for label errors with. output: where files go. progress: bars.

    Returns:
        A `CheckResult`: the `Audit`, audit.json's path, and the cleaned split and label errors when asked.

    >>> found = deepcat.check("pets").audit
    >>> found.count("leak"), found.unreadable
    """
    from deepcat.data import audit
    from deepcat.data.resolve import splits_of

    splits = splits_of(
        dict(data=data, val_fraction=val_fraction, seed=seed, classes=classes, data_root=data_root, modality=modality)
    )
    out = Path(output or Path("checks") / splits.name)
    found = audit.audit(splits, near=near, progress=progress)
    audit.write_json(found, out / "audit.json")
    result = CheckResult(found, out / "audit.json")
    if fix:
        result.clean = audit.fix_split(splits, found, out / "clean.csv")
    if labels:
        from deepcat.evaluation.finish import check_labels

        result.label_errors = check_labels(labels, splits, progress=progress)
    return result


def shard(
    data: str,
    *,
    out: str,
    per_shard: int = 10_000,
    shard_mb: float = 500,
    val_fraction: float = TrainConfig.val_fraction,
    seed: int = TrainConfig.seed,
    classes: str | None = TrainConfig.classes,
    data_root: str | None = TrainConfig.data_root,
    modality: str = TrainConfig.modality,
    progress: bool = True,
) -> str:
    """Write DATA, split as `train` would split it, as WebDataset tar shards under `out` (a folder or a URL such
    as `s3://bucket/pets`), with a manifest and the audit's facts. `deepcat.train(out)` then streams them.

    Args:
        data: DATA. out: where the shards go. per_shard, shard_mb: a shard closes at this many inputs or MB.
        val_fraction, seed, classes, data_root, modality: split DATA as `train` would. progress: bars.

    Returns:
        `out`, to train on.

    >>> deepcat.train(deepcat.shard("pets", out="s3://bucket/pets"))
    """
    from deepcat.data.resolve import splits_of
    from deepcat.data.shards import write_shards

    splits = splits_of(
        dict(data=data, val_fraction=val_fraction, seed=seed, classes=classes, data_root=data_root, modality=modality)
    )
    return write_shards(splits, out, per_shard=per_shard, shard_mb=shard_mb, seed=seed, progress=progress)


def explain(
    run: str | Path, images: Sequence[InputItem], *, target: str | None = None, output: str | Path | None = None
) -> list[Explanation]:
    """Grad-CAM for each image (files, folders, globs or in-memory images): where the network found evidence for
    `target` (a class name) or for the class it predicted. With `output`, one PNG per image is written there.

    Args:
        run: a run folder. images: files, folders, globs or in-memory images. target: a class name (default:
            the predicted class). output: a folder for one PNG per image.

    Returns:
        One `Explanation` per image: its label, probability and heatmap.

    >>> deepcat.explain("runs/pets", ["cat.jpg"], output="explain/")[0].label
    """
    from deepcat.evaluation.explain import explain_run
    from deepcat.inference.answers import expand_inputs

    return explain_run(Path(run), expand_inputs(images), target=target, output=output)


@overload
def listen(
    model: str | Path | Classifier | ExportedClassifier,
    recording: str | Path,
    *,
    mic: Literal[False] = False,
    mic_device: str | None = None,
    spotting: Spotting | None = None,
    reject: bool = True,
    progress: bool = False,
) -> list[Detection]: ...


@overload
def listen(
    model: str | Path | Classifier | ExportedClassifier,
    recording: None = None,
    *,
    mic: Literal[True],
    mic_device: str | None = None,
    spotting: Spotting | None = None,
    reject: bool = True,
    progress: bool = False,
) -> Iterator[Detection]: ...


def listen(
    model: str | Path | Classifier | ExportedClassifier,
    recording: str | Path | None = None,
    *,
    mic: bool = False,
    mic_device: str | None = None,
    spotting: Spotting | None = None,
    reject: bool = True,
    progress: bool = False,
) -> list[Detection] | Iterator[Detection]:
    """Keywords heard in a recording (or live, from the microphone) by a sound model: a window of the model's
    clip length every `hop_ms`, each class's probability averaged over the last `smooth` windows, a keyword
    reported when that reaches `threshold`, then nothing for `refractory_ms`. With `reject`, windows the model
    answers `unknown` (no word it knows, or other speech) hold no keyword.

    Args:
        model: a sound run, its exported file, or a loaded classifier. recording: a wav, flac, ogg or mp3 file.
        mic: listen to the microphone instead (`pip install 'deepcat[mic]'`); mic_device: its name or number.
        spotting: the window, smoothing, threshold and refractory settings (default: `Spotting()`).
        reject: windows below the calibrated `unknown` threshold hold no keyword. progress: a bar (files).

    Returns:
        For a recording, one `Detection` (label, seconds from the start when it was reported, smoothed
        probability) per keyword; with `mic`, the detections as they are heard (an endless iterator).

    >>> [(d.label, d.seconds) for d in deepcat.listen("runs/spoken-digits", "call.wav")]
    >>> for heard in deepcat.listen("runs/spoken-digits", mic=True): print(heard.label)
    """
    from deepcat.inference.listen import listen as listen_to
    from deepcat.inference.listen import listen_stream, microphone

    spotting = spotting or Spotting()
    if (recording is None) != mic:
        raise DeepcatError("listen to a RECORDING or to the microphone (--mic), one of the two")
    if mic:
        device = int(mic_device) if mic_device is not None and mic_device.isdigit() else mic_device
        blocks = microphone(spotting.hop_ms, device=device)  # opened first: a missing microphone is said at once
        classifier = load(model) if isinstance(model, (str, Path)) else model
        return listen_stream(classifier, blocks, spotting, reject=reject)
    assert recording is not None  # noqa: S101 - checked above
    classifier = load(model) if isinstance(model, (str, Path)) else model
    return listen_to(classifier, recording, spotting, reject=reject, progress=progress)


def report(run: str | Path) -> Path:
    """(Re)write RUN/report.html from the run folder's files.

    Args:
        run: a run folder.

    Returns:
        The report's path.
    """
    from deepcat.evaluation.finish import write_report

    return write_report(run)


def lr_find(  # type: ignore[misc]  # DATA may come first, as on the command line
    data: str | None = None,
    *,
    config: str | Path | None = None,
    steps: int = 100,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    plot: str | Path | None = "lr_find.png",
    progress: bool = True,
    **options: Unpack[TrainOptions],
) -> LrFind:
    """Raise the lr exponentially over `steps` batches and suggest the one where the loss falls fastest
    (as fastai's `lr_find`); the options are `train`'s.

    Args:
        data, config, options: as for `train`. steps: batches to sweep over. start_lr, end_lr: the sweep's
            range. plot: where to save the loss-against-lr plot (None: no plot). progress: show a bar.

    Returns:
        An `LrFind`: the rates, losses and the suggested lr.

    >>> deepcat.lr_find("digits").suggested_lr
    """
    from deepcat.config import resolve_config
    from deepcat.training.lr_find import sweep

    if data is not None:
        options["data"] = data
    return sweep(
        resolve_config(config_file=config, **options),
        start_lr=start_lr,
        end_lr=end_lr,
        steps=steps,
        plot=plot,
        progress=progress,
    )


def tune(  # type: ignore[misc]  # DATA may come first, as on the command line
    data: str | None = None,
    *,
    config: str | Path | None = None,
    budget: str | None = None,
    trials: int | None = None,
    space: str | Path | None = None,
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    pruning: bool = True,
    progress: bool = True,
    **options: Unpack[TrainOptions],
) -> TuneResult:
    """Search training options with Optuna (TPE, seeded; poor trials pruned from their per-epoch validation
    accuracy) for `budget` ("30m", "2h") or `trials`, whichever ends first. `options` are fixed, the rest of
    `space` (a YAML file, or the default for the data's model) is searched. The study lives in
    tunes/STUDY/study.db (OUTPUT/STUDY/ when `output` is given), or in `storage` (e.g. postgresql://...) shared
    by processes on many machines; `workers` runs that many trial processes here. The same call again continues
    the study.

    Args:
        data, config, options: as for `train`; options given are fixed. budget, trials: when to stop.
        space: a YAML space file. workers: trial processes here. storage: a shared database URL. study: its
            name. pruning: stop poor trials early. progress: a line per trial.

    Returns:
        A `TuneResult`: trials, the best score, best.yaml and the best run's folder.

    >>> result = deepcat.tune("digits", trials=20)
    >>> result.best_value, result.best_config   # tunes/digits/best.yaml: `deepcat train --config` it
    """
    from deepcat.config import resolve_config
    from deepcat.evaluation.finish import after_training
    from deepcat.tuning.study import Search, search

    if data is not None:
        options["data"] = data
    fixed = {k: v for k, v in options.items() if v is not None}
    result, splits, judge = search(
        resolve_config(config_file=config, **options),
        fixed,
        Search(budget, trials, space, workers, storage, study, pruning),
        progress=progress,
    )
    if judge and result.best_run is not None and not (result.best_run / "report.html").is_file():
        after_training(result.best_run, splits, progress=progress)  # the winner, calibrated and reported
    return result
