"""The contracts deepcat's extensions meet, as checks anyone can run: a kind of input, a model builder, an export
format. scikit-learn's `check_estimator` holds an estimator written elsewhere to what scikit-learn relies on; these
hold a kind, model or format written outside deepcat to what the rest of deepcat relies on, the way the built-in
ones are held in deepcat's own tests.

    from deepcat.testing import check_export_format, check_input_kind, check_model_builder

    check_input_kind(SENSOR, item=np.sin(np.arange(80) / 8))   # a kind, on one decoded item
    check_model_builder("sensor1d", kind="sensor")               # a builder in `deepcat.models.registry`
    check_export_format("onnx", run="runs/digits", folder=tmp)   # a format in `deepcat.exporting.formats`

Each check raises `ContractError` (a `DeepcatError`) at the first broken promise, naming what it received and
what deepcat expects; it never uses `assert`, so it holds under `python -O` too. Nothing in deepcat imports this
module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepcat.errors import DeepcatError, did_you_mean
from deepcat.inputs import Hints, InputKind, Words, input_kind

if TYPE_CHECKING:
    import torch.nn as nn

    from deepcat.exporting.export import ExportResult
    from deepcat.exporting.formats import ExportFormat

__all__ = ["ContractError", "check_export_format", "check_input_kind", "check_model_builder"]

FRONT_END_TOLERANCE = 1e-3  # the graph's front end against the training transform: float32 resizing and FFTs
TINY_HINTS = Hints(model_config=None, input_size=None, native_size=16, clip_seconds=1.0)


class ContractError(DeepcatError):
    """An input kind, model builder or export format breaks a promise the rest of deepcat relies on; the message
    names the part, what was received and what is expected."""


def _expect(ok: bool, what: str, received: Any, expected: str) -> None:
    if not ok:
        raise ContractError(f"{what}: received {received!r}; expected {expected}")


def _shape(x: Any) -> Any:
    return tuple(x.shape) if hasattr(x, "shape") else type(x).__name__


# ---- kinds of input ---------------------------------------------------------------------------------------------


def check_input_kind(kind: InputKind | str, *, item: Any, hints: Hints = TINY_HINTS) -> None:
    """Check one kind of input against what training, export, prediction and serving rely on, for one in-memory
    `item` of the kind: its preprocessing round-trips through model.json; the graph's front end turns the raw
    input (numpy, as ONNX Runtime and the server make it) into what `eval_transform` gives training; pictures are
    RGB; the example batch has the raw input's shape; a body that is not the kind is refused with `BadInput`; the
    words are filled.

    Args:
        kind: the `InputKind` (registered or not yet) or a registered kind's name.
        item: one input as `kind.from_memory` takes it (an image's (H, W, 3) uint8 array, a clip's samples).
        hints: what a new run's preprocessing is chosen from (default: 16 px images, 1 s clips).

    Returns:
        None; raises `ContractError` at the first broken promise.

    >>> check_input_kind("image", item=np.zeros((16, 16, 3), np.uint8))
    """
    import torch

    from deepcat.inputs import BadInput

    kind = input_kind(kind) if isinstance(kind, str) else kind
    name = f"input kind {kind.name!r}"
    pre = kind.default_preprocess(hints)
    _expect(pre.kind == kind.name, f"{name}: default_preprocess(...).kind", pre.kind, f"the kind's name {kind.name!r}")
    saved = pre.to_dict()
    try:
        json.dumps(saved)
    except TypeError as e:
        raise ContractError(f"{name}: preprocess.to_dict() gave {saved!r}, which JSON cannot hold ({e})") from e
    again = kind.preprocess(json.loads(json.dumps(saved)))
    _expect(again == pre, f"{name}: preprocess(to_dict()) read back from model.json", again, f"{pre!r}")
    _expect(bool(pre.describe()), f"{name}: preprocess.describe()", pre.describe(), "a non-empty description")

    decoded = kind.from_memory(item)
    model_input = kind.to_model_input(decoded, pre)
    example = kind.example(pre, 2)
    _expect(
        isinstance(model_input, np.ndarray) and model_input.dtype == np.float32,
        f"{name}: to_model_input(...) (what ONNX Runtime and the server feed the graph)",
        f"{type(model_input).__name__} of {getattr(model_input, 'dtype', '?')}",
        "a float32 numpy array",
    )
    _expect(
        model_input.shape == tuple(example.shape[1:]),
        f"{name}: to_model_input(...).shape",
        model_input.shape,
        f"one row of example(pre, 2), {tuple(example.shape[1:])}",
    )
    with torch.no_grad():
        through_graph = kind.front_end(pre).eval()(torch.from_numpy(model_input)[None])[0]
    trained_on = kind.eval_transform(pre)(decoded)
    _expect(
        tuple(through_graph.shape) == tuple(trained_on.shape),
        f"{name}: the graph's front end on to_model_input(...)",
        f"shape {tuple(through_graph.shape)}",
        f"eval_transform's shape {tuple(trained_on.shape)} (what the network trained on)",
    )
    gap = float((through_graph - trained_on).abs().max())
    _expect(
        gap <= FRONT_END_TOLERANCE,
        f"{name}: max |front_end(to_model_input(x)) - eval_transform(x)|",
        gap,
        f"at most {FRONT_END_TOLERANCE}: the exported graph must see what training saw",
    )
    shown = kind.picture(through_graph, pre)
    _expect(
        isinstance(shown, np.ndarray) and shown.dtype == np.uint8 and shown.ndim == 3 and shown.shape[2] == 3,
        f"{name}: picture(...) (the report's and Grad-CAM's drawing)",
        f"{_shape(shown)} of {getattr(shown, 'dtype', '?')}",
        "an (H, W, 3) uint8 array",
    )
    spec = kind.input_spec(pre)
    _expect(spec.get("dtype") == "float32", f"{name}: input_spec(pre)['dtype']", spec.get("dtype"), "'float32'")
    _expect(bool(kind.media_types), f"{name}: media_types", kind.media_types, "the request bodies it accepts")
    _expect(
        bool(kind.suffixes) and all(s.startswith(".") and s == s.lower() for s in kind.suffixes),
        f"{name}: suffixes",
        sorted(kind.suffixes),
        "its files' lower-case suffixes, each with its dot ('.npy')",
    )
    empty = [field for field in Words.__dataclass_fields__ if not getattr(kind.words, field)]
    _expect(not empty, f"{name}: words", kind.words, f"every field filled (empty: {', '.join(empty)})")
    try:
        kind.decode_bytes(b"\x00deepcat: not an input of any kind", "garbage", kind.default_limit, pre)
    except BadInput:
        pass
    except Exception as e:
        raise ContractError(
            f"{name}: decode_bytes on a body that is not the kind raised {type(e).__name__}: {e}; expected "
            "BadInput, which the server answers with 4xx and the CLI reports against the file"
        ) from e
    else:
        raise ContractError(f"{name}: decode_bytes accepted a body that is not the kind; expected BadInput")


# ---- model builders ---------------------------------------------------------------------------------------------


def check_model_builder(
    name: str, *, kind: InputKind | str = "image", num_classes: int = 3, image_size: int = 16
) -> nn.Module:
    """Check a model builder registered in `deepcat.models.registry` against what training, runs and export rely
    on: `create_model` builds it for `num_classes` and the kind's channels as training calls it (with the
    training options it may ignore); it maps the kind's network input (its front end's output) to (B, classes)
    logits, the same twice in eval mode; every trainable parameter gets a gradient; the spec saved in model.json
    rebuilds the same tensors; the deployable graph (front end, temperature, softmax, `unknown` score) runs it.

    Args:
        name: the registered name (`@register_model(name)`).
        kind: the input kind it is checked on ("image", "audio", or an `InputKind`); its `channels` go to the
            builder as `in_chans`.
        num_classes: classes of the new head. image_size: the input size asked for (images: 16 px keeps it fast).

    Returns:
        The model built, in eval mode.

    >>> check_model_builder("smallcnn")
    >>> check_model_builder("dscnn", kind="audio")
    """
    import torch
    import torch.nn.functional as F

    from deepcat.exporting.graph import Deployable
    from deepcat.models.create import ModelSpec, build, classifier_of, create_model, default_preprocess
    from deepcat.models.registry import MODELS

    kind = input_kind(kind) if isinstance(kind, str) else kind
    if name not in MODELS:
        raise ContractError(
            f"model {name!r} is not registered.{did_you_mean(name, MODELS)} Registered: {', '.join(MODELS)}; "
            f"register it with @deepcat.models.register_model({name!r})"
        )
    what = f"model {name!r} on {kind.name} input"
    called = f"builder(num_classes={num_classes}, image_size={image_size}, in_chans={kind.channels}, flip_average=...)"
    try:  # as training calls it: options it may not know among the keywords
        model, spec = create_model(
            name=name,
            num_classes=num_classes,
            image_size=image_size,
            in_chans=kind.channels,
            options={"flip_average": False},
        )
    except TypeError as e:
        raise ContractError(
            f"{what}: {called} raised TypeError: {e}; a builder takes num_classes, image_size and in_chans and "
            "ignores keywords it does not use (`**_`), as training passes its options to every builder"
        ) from e
    _expect(isinstance(model, torch.nn.Module), f"{what}: the builder's result", type(model).__name__, "an nn.Module")
    pre = default_preprocess(model, spec, image_size=image_size, native_size=image_size, kind=kind)
    raw = kind.example(pre, 2)
    with torch.no_grad():
        x = kind.front_end(pre).eval()(raw)  # what the network sees, e.g. (2, C, H, W)
        out = model.eval()(x)
        again = model(x)
    _expect(
        isinstance(out, torch.Tensor) and tuple(out.shape) == (2, num_classes) and out.is_floating_point(),
        f"{what}: the output for a batch of 2 of shape {tuple(x.shape)}",
        _shape(out),
        f"a float tensor of logits (2, {num_classes})",
    )
    _expect(bool(torch.isfinite(out).all()), f"{what}: the logits", "values that are not finite", "finite logits")
    _expect(torch.equal(out, again), f"{what}: two eval-mode calls on one batch", "different logits", "the same logits")

    head = classifier_of(model)
    _expect(
        any(True for _ in head.parameters()),
        f"{what}: classifier_of(model) (the head trained alone while the body is frozen)",
        type(head).__name__,
        "the module holding the classifier's weights (named head, fc or classifier, or the last child)",
    )

    saved = json.loads(json.dumps(asdict(spec)))  # as model.json holds it
    rebuilt = build(ModelSpec(**saved), image_size=image_size)
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    _expect(
        mine == theirs,
        f"{what}: the model rebuilt from its model.json spec {saved}",
        sorted(set(mine.items()) ^ set(theirs.items()))[:6],
        "the same tensors by name and shape, so a run's weights load into it",
    )

    net = Deployable(model, pre)
    with torch.no_grad():
        probabilities, score, logits = net(raw)
    _expect(
        tuple(probabilities.shape) == (2, num_classes) and tuple(score.shape) == (2,),
        f"{what}: the deployable graph's (probabilities, unknown score)",
        (_shape(probabilities), _shape(score)),
        f"((2, {num_classes}), (2,))",
    )
    _expect(
        bool(torch.allclose(logits, out, atol=1e-5)),
        f"{what}: the deployable graph's logits",
        "logits unlike the model's own",
        "the model's logits on the front end's output",
    )
    model.train()  # last: a training step moves batch norm's running statistics
    F.cross_entropy(model(x), torch.arange(2) % num_classes).backward()
    starved = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    _expect(not starved, f"{what}: parameters without a gradient after a training step", starved, "none")
    model.zero_grad(set_to_none=True)
    model.eval()
    return model


# ---- export formats ---------------------------------------------------------------------------------------------


def check_export_format(
    name: str, *, run: str | Path, folder: str | Path, check_images: int = 500, calibration_images: int | None = None
) -> ExportResult:
    """Check an export format registered in `deepcat.exporting.formats` on a trained run: it writes a file that
    its own runtime opens and that agrees with PyTorch within the format's bound (fp32: probabilities to 1e-4;
    int8: top-1 agreement and accuracy), and the file's deepcat metadata reads back with the run's classes and
    preprocessing, as prediction and serving read them.

    Args:
        name: the registered format (`FORMATS.add(name, ExportFormat(...))`).
        run: a trained run folder; a tiny one does (`deepcat.train(data="digits", epochs=2)`).
        folder: where the file is written (its default file name), not the run's export folder.
        check_images: validation images compared with PyTorch (at most). calibration_images: int8 formats'
            calibration images (None: as `deepcat export` chooses).

    Returns:
        The export's `ExportResult` (path, bytes, the check's figures).

    >>> run = deepcat.train(data="digits", epochs=2, progress=False)
    >>> check_export_format("onnx", run=run, folder="/tmp/kit").check.max_abs_diff
    """
    from deepcat.exporting.export import export_run
    from deepcat.exporting.formats import FORMATS
    from deepcat.run_folder import read_model_json

    if name not in FORMATS:
        raise ContractError(
            f"export format {name!r} is not registered.{did_you_mean(name, FORMATS)} Registered: "
            f"{', '.join(FORMATS)}; register it with FORMATS.add({name!r}, ExportFormat(...))"
        )
    chosen = FORMATS.get(name)
    what = f"export format {name!r}"
    _expect(
        chosen.precision in ("fp32", "int8"), f"{what}: precision", chosen.precision, "'fp32' or 'int8' (its bound)"
    )
    _expect(bool(Path(chosen.filename).suffix), f"{what}: filename", chosen.filename, "a file name with a suffix")
    read_metadata = _metadata_reader(name, chosen)
    out = Path(folder) / chosen.filename
    try:
        result = export_run(
            Path(run),
            format=name,
            output=out,
            calibration_images=calibration_images,
            check_images=check_images,
            progress=False,
        )
    except DeepcatError as e:
        raise ContractError(f"{what}: writing and checking {out} failed: {e}") from e
    _expect(
        out.is_file() and out.stat().st_size > 0, f"{what}: the written file", str(out), "a file that holds the model"
    )
    _expect(result.check.passed, f"{what}: its check against PyTorch", result.check.to_dict(), "passed")

    try:
        meta = read_metadata(out)
    except DeepcatError as e:
        raise ContractError(f"{what}: the metadata read back from {out.name} is not deepcat's ({e})") from e
    run_meta = read_model_json(Path(run))
    _expect(
        meta.classes == run_meta.classes,
        f"{what}: classes in its metadata",
        list(meta.classes),
        f"the run's {list(run_meta.classes)}",
    )
    _expect(
        meta.preprocess == run_meta.preprocess,
        f"{what}: the preprocessing in its metadata",
        meta.preprocess.to_dict(),
        f"the run's {run_meta.preprocess.to_dict()}",
    )
    return result


def _metadata_reader(name: str, chosen: ExportFormat) -> Callable[[Path], Any]:
    """How a format's files give their deepcat metadata back: its own reader, else the runtime deepcat opens the
    suffix with; a format with neither is refused before anything is written."""
    from deepcat.inference.runtimes import RUNTIMES

    if chosen.read_metadata is not None:
        return chosen.read_metadata
    suffix = Path(chosen.filename).suffix
    if suffix not in RUNTIMES:
        raise ContractError(
            f"export format {name!r}: its files end in {suffix!r}, which no runtime in "
            f"deepcat.inference.runtimes.RUNTIMES opens ({', '.join(RUNTIMES)}); expected a runtime for the suffix, "
            "or ExportFormat(read_metadata=...) to read the file's metadata"
        )

    def through_runtime(path: Path) -> Any:
        from deepcat.inference.exported import load_exported

        return load_exported(path).meta

    return through_runtime
