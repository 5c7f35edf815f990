"""What deepcat saves about a model, typed: `RunMeta` is a run's model.json, `ExportMeta` the JSON inside every
exported file (ONNX metadata key `deepcat`, OpenVINO rt_info, ExecuTorch's constant method, LiteRT's metadata entry).

Both are read here and only here: `from_dict` brings a saved dict of any older format up to today's (`migrate_run`,
`migrate_export`, one function each, so what an old run means is written in one place), refuses one from a newer
deepcat with the fix, and returns frozen dataclasses; `to_dict` writes exactly the JSON that older deepcats, the web
page (serving/page/index.html) and ONNX consumers read. The rest of deepcat reads typed fields, never keys (timm's
`PretrainedCfg` for the same reason; scikit-learn stamps its version in every pickle).

model.json's formats (`format_version`):
  (none)  runs saved before the version was written, read as version 1
  1       format_version, model, classes, input_kind, preprocess; calibration once fitted after training.
          Within it, older runs lack input_kind (images), the calibration's later keys (score: energy, conformal,
          images, note) and the spec's layers / kwargs: the dataclasses' defaults are how those runs behaved. (The
          first calibrations name the score `max_probability`, which deepcat no longer has: such a run still reads,
          and predicting with it is refused as before, by the score's registry.)
A change of layout bumps MODEL_JSON_VERSION and adds one step to `UPGRADES`. A changed model default is not a
migration: `models.registry.NEW_RUN_KWARGS` writes it into new runs' spec (`kwargs`), so a spec saved without it
rebuilds as it was trained. The export metadata has no number of its own (its readers key on names, and its keys
stay as they are): older files lack input_kind, input, calibration, score_output, logits_output, name or version,
and `migrate_export` fills them as those files behaved; `decision` (the owner's `Decision`, from the run's
decision.json) is written only when set, so a file without one reads in older deepcats as before. Only numpy and
the input kinds load with this module: `deepcat predict MODEL.onnx` reads it without torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np

from deepcat.errors import DeepcatError, did_you_mean
from deepcat.inputs import DEFAULT_KIND, InputKind, Preprocessing, input_kind

__all__ = [
    "DEFAULT_ACCEPT",
    "MODEL_JSON_VERSION",
    "PROBABILITIES",
    "UPGRADES",
    "Calibration",
    "Decision",
    "ExportMeta",
    "ModelSpec",
    "RunMeta",
    "migrate_export",
    "migrate_run",
    "set_limit",
]

MODEL_JSON_VERSION = 1  # model.json's format; runs saved before it had one read as version 1
DEFAULT_ACCEPT = 0.95

# model.json of version v -> version v + 1 (a dict in, a dict out); none yet. `migrate_run` chains them.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

RUN_KEYS = ("format_version", "model", "classes", "input_kind", "preprocess", "calibration")
EXPORT_KEYS = (  # beside the kind's preprocessing fields, which sit at the top level
    "name",
    "version",
    "source",
    "classes",
    "calibration",
    "input_kind",
    "input",
    "output",
    "score_output",
    "logits_output",
    "deepcat_version",
    "decision",
)
PROBABILITIES = {"name": "probabilities", "kind": "probabilities"}  # the graph's first output, in every export
UPGRADE = "upgrade deepcat (pip install -U deepcat)"


@dataclass(frozen=True)
class ModelSpec:
    """Enough to rebuild the architecture: saved in the run's model.json (`model`)."""

    name: str
    num_classes: int
    layers: dict[str, Any] | None = None  # the YAML spec for layer-stack models
    kwargs: dict[str, Any] = field(default_factory=dict)


LATER = ("reference", "false_alarms", "false_alarm_hours")  # Calibration's fields written only when set


@dataclass(frozen=True)
class Calibration:
    """What is saved with a model (model.json and the export metadata): temperature, the `unknown` score and its
    rejection threshold, the prediction sets' limits. Fitted by deepcat.evaluation.calibration."""

    temperature: float = 1.0
    threshold: float | None = None  # score below which the answer is `unknown`
    score: str = "energy"  # which score (deepcat.inference.unknown_score); energy in old runs
    target_accept: float = DEFAULT_ACCEPT  # share of known validation images the threshold accepts
    images: int = 0  # validation images all of this rests on
    note: str | None = None  # why the temperature was kept at 1.0, if it was
    conformal: dict[str, float | None] | None = None  # coverage ("0.90") -> set limit (see `conformal_quantiles`)
    reference: dict[str, Any] | None = None  # validation's answers, which the field is compared with (monitor.py)
    # sound: each keyword's [threshold, false activations per hour] on a held-out stream of no keyword, thresholds
    # rising, and that stream's length (deepcat.inference.false_alarms); `listen --false-alarms-per-hour` reads it
    false_alarms: dict[str, list[list[float]]] | None = None
    false_alarm_hours: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The saved fields; the later ones (LATER) only when set, so a model without them reads in the deepcats
        from before them."""
        values = asdict(self)
        return {k: v for k, v in values.items() if k not in LATER or v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, *, where: str = "the calibration") -> Calibration:
        """From the saved JSON; keys a run saved before they existed take their defaults (None: no calibration)."""
        if not values:
            return cls()
        _refuse_unknown(values, [f.name for f in fields(cls)], where)
        return cls(**values)

    def rejects(self, scores: np.ndarray) -> np.ndarray:
        """True where the scores (N,) fall below the threshold."""
        if self.threshold is None:
            return np.zeros(len(scores), dtype=bool)
        return np.asarray(scores) < self.threshold

    def set_limit(self, coverage: float) -> float:
        """The set limit for `coverage` (inf: every class); raises when the model has none or `coverage` is
        off the grid."""
        return set_limit(self.conformal, coverage, DeepcatError)


def set_limit(conformal: Mapping[str, float | None] | None, coverage: float, error: type[Exception]) -> float:
    """The one lookup every runtime uses (the model's metadata carries `conformal`); inf: every class."""
    if not conformal:
        raise error(
            "this model has no prediction sets: it was trained without a validation split (or before "
            "deepcat had them); retrain it to use coverage"
        )
    key = f"{coverage:.2f}"
    if key not in conformal or abs(float(key) - coverage) > 1e-9:
        raise error(f"coverage must be one of 0.50, 0.51, ..., 0.99; received {coverage}")
    limit = conformal[key]
    return float("inf") if limit is None else float(limit)


@dataclass(frozen=True)
class Decision:
    """Which class to answer, as its owner decides (a run's decision.json, or `--decision FILE`): a class answered
    only at or above its least probability (`thresholds`), and what each mistake costs (`costs[true][answered]`;
    a pair not written costs 1, a right answer 0), so that a false "dog" can cost more than a missed one.

    The answer is the class of least expected cost under the calibrated probabilities (Bayes' rule; with no costs
    that is the most probable class) among those that reach their threshold, else `unknown`. The server, `predict`,
    the exported file's metadata and the page (serving/page/index.html, `decided`) apply this one rule.

    >>> Decision.from_dict({"thresholds": {"dog": 0.8}, "costs": {"cat": {"dog": 5}}}, classes=("cat", "dog"))
    """

    classes: tuple[str, ...]
    thresholds: dict[str, float] = field(default_factory=dict)  # class -> least probability to answer it
    costs: dict[str, dict[str, float]] = field(default_factory=dict)  # true class -> answered class -> cost

    def to_dict(self) -> dict[str, Any]:
        """As the decision file and the export metadata hold it (the classes are the model's own)."""
        return {"thresholds": dict(self.thresholds), "costs": {true: dict(row) for true, row in self.costs.items()}}

    @classmethod
    def from_dict(cls, raw: Any, *, classes: Sequence[str], where: str = "the decision") -> Decision:
        """Checked against the model's `classes`: a name it lacks, a probability outside 0..1 or a negative cost
        is a DeepcatError that names `where` and the fix."""
        fix = f"; fix {where}"
        if not isinstance(raw, Mapping):
            raise DeepcatError(f'{where} must be a JSON object such as {{"thresholds": {{...}}, "costs": {{...}}}}')
        _refuse_keys(raw, ("thresholds", "costs"), where)
        thresholds = {
            name: _number(p, f"{where}: thresholds.{name}", 0, 1)
            for name, p in _named(raw.get("thresholds", {}), classes, f"{where}: thresholds").items()
        }
        costs: dict[str, dict[str, float]] = {}
        for true, row in _named(raw.get("costs", {}), classes, f"{where}: costs").items():
            costs[true] = {
                answered: _number(c, f"{where}: costs.{true}.{answered}", 0, None)
                for answered, c in _named(row, classes, f"{where}: costs.{true}").items()
            }
        if not thresholds and not costs:
            raise DeepcatError(f"{where} sets neither thresholds nor costs, so it changes no answer{fix}")
        return cls(tuple(classes), thresholds, costs)

    @classmethod
    def read(cls, path: str | Path, *, classes: Sequence[str]) -> Decision:
        """A decision file (JSON) for a model with `classes`."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeepcatError(f"{path}: no such decision file") from None
        except ValueError as e:
            raise DeepcatError(f"{path} is not JSON ({e}); write it as in docs/deploy/serve.md") from None
        return cls.from_dict(raw, classes=classes, where=str(path))

    @cached_property
    def matrix(self) -> np.ndarray:
        """(C, C) float64 costs, [true, answered], in the classes' order."""
        index = {name: i for i, name in enumerate(self.classes)}
        out = 1 - np.eye(len(self.classes))
        for true, row in self.costs.items():
            for answered, cost in row.items():
                out[index[true], index[answered]] = cost
        return out

    @cached_property
    def least(self) -> np.ndarray:
        """(C,) the least probability each class is answered at (0: any)."""
        return np.array([self.thresholds.get(name, 0.0) for name in self.classes], dtype=np.float64)

    def choose(self, row: np.ndarray) -> int | None:
        """The class to answer for one row of calibrated probabilities (C,), or None (`unknown`)."""
        p = np.asarray(row, dtype=np.float64)
        risk = (p[:, None] * self.matrix).sum(0)  # (C,) expected cost of each answer, summed over true classes
        for j in np.lexsort((-p, risk)):  # least risk first, then the more probable; the page sorts the same
            if p[j] >= self.least[j]:
                return int(j)
        return None


def _named(values: Any, classes: Sequence[str], where: str) -> dict[str, Any]:
    """A JSON object keyed by class names, each one of `classes`."""
    if not isinstance(values, Mapping):
        raise DeepcatError(f"{where} must be a JSON object keyed by class name; received {values!r}")
    for name in values:
        if name not in classes:
            raise DeepcatError(
                f"{where} names {name!r}, which is not one of the model's classes ({', '.join(classes[:20])})."
                f"{did_you_mean(name, classes)}"
            )
    return dict(values)


def _number(value: Any, where: str, low: float, high: float | None) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < low or (high is not None and value > high):
        valid = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise DeepcatError(f"{where} must be a number {valid}; received {value!r}")
    return float(value)


def _refuse_keys(values: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = [key for key in values if key not in known]
    if unknown:
        raise DeepcatError(
            f"{where} holds {unknown[0]!r}; a decision has {' and '.join(known)}.{did_you_mean(unknown[0], known)}"
        )


class _ReadsLikeItsJson:
    """Deprecated dict reads (`meta["classes"]`, `meta.get("calibration")`) for code written when the metadata was
    a dict: they still answer, from `to_dict()`, with a DeprecationWarning that names the typed field to read."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        _deprecated_read(key)
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        _deprecated_read(key)
        return self.to_dict().get(key, default)


def _deprecated_read(key: str) -> None:
    import warnings

    warnings.warn(
        f"reading the metadata as a dict (meta[{key!r}]) is deprecated: read its typed fields "
        "(meta.classes, meta.preprocess, meta.calibration, ...) or meta.to_dict()",
        DeprecationWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class RunMeta(_ReadsLikeItsJson):
    """A run's model.json: the architecture, the class names, the input kind's preprocessing and, once fitted
    after training, the calibration (None before it, or without a validation split's fit).

    >>> meta = read_model_json(run)  # deepcat.run_folder
    >>> meta.classes, meta.preprocess.describe(), meta.calibration_or_default.threshold
    """

    model: ModelSpec
    classes: tuple[str, ...]
    preprocess: Preprocessing
    calibration: Calibration | None = None

    @property
    def kind(self) -> InputKind:
        """The input kind the run was trained on."""
        return input_kind(self.preprocess.kind)

    @property
    def image_size(self) -> int:
        """The network's input size the architecture is built for (0: a kind without one, such as sound)."""
        return int(getattr(self.preprocess, "input_size", 0))

    @property
    def calibration_or_default(self) -> Calibration:
        """The calibration predictions use: the fitted one, else none (temperature 1, no threshold, energy)."""
        return self.calibration or Calibration()

    def to_dict(self) -> dict[str, Any]:
        """model.json as written (keys in this order), stamped with this deepcat's format version."""
        out = {
            "format_version": MODEL_JSON_VERSION,
            "model": asdict(self.model),
            "classes": list(self.classes),
            "input_kind": self.preprocess.kind,
            "preprocess": self.preprocess.to_dict(),
        }
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str = "model.json") -> RunMeta:
        """A model.json of any format this deepcat knows, typed, so no reader restates a key or a default.

        Args:
            raw: the JSON object as saved (any format version up to MODEL_JSON_VERSION).
            where: the file, as errors name it.

        Returns:
            The run's metadata in today's format (`to_dict` writes it back).
        """
        meta = migrate_run(raw, where=where)
        pre = _preprocessing(meta["input_kind"], meta["preprocess"], f"{where} (preprocess)", "train the run again")
        _refuse_unknown(meta["preprocess"], pre.to_dict(), f"{where} (preprocess)")
        model = dict(meta["model"])
        _refuse_unknown(model, [f.name for f in fields(ModelSpec)], f"{where} (model)")
        missing = [key for key in ("name", "num_classes") if key not in model]
        if missing:
            raise DeepcatError(
                f"{where} (model) lacks {', '.join(missing)}, so the network cannot be rebuilt: train the run again"
            )
        return cls(
            model=ModelSpec(**model),
            classes=tuple(meta["classes"]),
            preprocess=pre,
            calibration=(
                None
                if meta.get("calibration") is None
                else Calibration.from_dict(meta["calibration"], where=f"{where} (calibration)")
            ),
        )


def migrate_run(raw: Mapping[str, Any], *, where: str = "model.json") -> dict[str, Any]:
    """Every migration of model.json in one place, so what an old run means is decided once.

    Args:
        raw: model.json as saved; a format version above MODEL_JSON_VERSION, or a key this deepcat does not know,
            is a DeepcatError that says to upgrade.
        where: the file, as errors name it.

    Returns:
        The same JSON in today's layout, stamped with MODEL_JSON_VERSION, as the run behaved when it was saved.
    """
    meta = dict(raw)
    version = meta.pop("format_version", 1)  # runs saved before the version was written are version 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DeepcatError(f"{where} has format version {version!r}; a deepcat model.json has a whole number >= 1")
    if version > MODEL_JSON_VERSION:
        raise DeepcatError(
            f"{where} has format version {version}, newer than this deepcat reads ({MODEL_JSON_VERSION}): {UPGRADE}"
        )
    while version < MODEL_JSON_VERSION:
        meta, version = UPGRADES[version](meta), version + 1
    missing = [key for key in ("model", "classes", "preprocess") if key not in meta]
    if missing:
        raise DeepcatError(f"{where} lacks {', '.join(missing)}; it is not a deepcat model.json (train a run again)")
    _refuse_unknown(meta, RUN_KEYS, where)
    meta.setdefault("input_kind", DEFAULT_KIND)  # runs saved before kinds existed are images
    meta["preprocess"] = _older_preprocessing(meta["input_kind"], meta["preprocess"])
    return {"format_version": MODEL_JSON_VERSION, **meta}


def _older_preprocessing(kind: str, saved: Mapping[str, Any]) -> dict[str, Any]:
    """A preprocessing field added after runs were saved with its kind, set as those runs computed: sound's
    per-band mean normalisation came in f80ca0b, default on, so a sound run saved without it never normalised."""
    return {"mean_normalise": False, **saved} if kind == "audio" else dict(saved)


@dataclass(frozen=True)
class ExportMeta(_ReadsLikeItsJson):
    """The metadata inside an exported file: what a consumer needs to feed the model and read its answer. Its
    preprocessing fields sit at the JSON's top level (`resize`, `input_size`, ... for images), where ONNX
    consumers and the web page read them. `calibration.threshold`: below this score (the `score_output`) the
    answer is `unknown`; `calibration.conformal`: the prediction sets' limits; `decision`: the owner's thresholds
    and costs that pick the answer."""

    name: str
    version: str | None  # the weights' digest (or "imagenet"): which model answered
    source: str | None  # the architecture it was exported from
    classes: tuple[str, ...]
    preprocess: Preprocessing
    calibration: Calibration | None
    input: dict[str, Any]  # the graph's input as the kind describes it (`InputKind.input_spec`): name, layout, ...
    output: dict[str, Any]
    score_output: str | None  # the `unknown` score's output (None: files from before it)
    logits_output: str | None  # the logits' output (None: files from before it)
    deepcat_version: str  # the deepcat that wrote the file ("" before it was recorded)
    decision: Decision | None = None  # the owner's thresholds and costs (the run's decision.json); None: the likeliest

    @property
    def kind(self) -> InputKind:
        return input_kind(self.preprocess.kind)

    @property
    def input_name(self) -> str:
        return str(self.input["name"])

    @property
    def calibration_or_default(self) -> Calibration:
        return self.calibration or Calibration()

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in the file (keys in this order)."""
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "classes": list(self.classes),
            **self.preprocess.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "input_kind": self.preprocess.kind,
            "input": self.input,
            "output": self.output,
            "score_output": self.score_output,
            "logits_output": self.logits_output,
            "deepcat_version": self.deepcat_version,
            **({} if self.decision is None else {"decision": self.decision.to_dict()}),  # older readers lack it
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str) -> ExportMeta:
        """From the JSON text a file stores; `where` (the file) names it in errors."""
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise DeepcatError(f"{where}: its deepcat metadata is not JSON ({e}); export the run again") from None
        if not isinstance(raw, dict):
            raise DeepcatError(f"{where}: its deepcat metadata is not a JSON object; export the run again")
        return cls.from_dict(raw, where=where)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str = "the export metadata") -> ExportMeta:
        """The metadata of an export by any deepcat this one reads, typed.

        Args:
            raw: the JSON object the file stores; keys this deepcat does not know are refused (a newer deepcat).
            where: the file, as errors name it.

        Returns:
            The metadata with older files' missing keys filled as they behaved (`migrate_export`).
        """
        meta = migrate_export(raw, where=where)
        kind = input_kind(meta["input_kind"])
        own = {key: value for key, value in meta.items() if key not in EXPORT_KEYS}  # the preprocessing's fields
        pre = _preprocessing(kind.name, own, where, "export the run again with `deepcat export RUN`")
        _refuse_unknown(own, pre.to_dict(), where, str(meta["deepcat_version"]))
        calibration = meta["calibration"]
        return cls(
            name=meta["name"],
            version=meta["version"],
            source=meta["source"],
            classes=tuple(meta["classes"]),
            preprocess=pre,
            calibration=None if calibration is None else Calibration.from_dict(calibration, where=where),
            input=dict(meta["input"]) if meta["input"] is not None else kind.input_spec(pre),
            output=dict(meta["output"]),
            score_output=meta["score_output"],
            logits_output=meta["logits_output"],
            deepcat_version=meta["deepcat_version"],
            decision=(
                None
                if meta["decision"] is None
                else Decision.from_dict(meta["decision"], classes=meta["classes"], where=f"{where} (decision)")
            ),
        )


def migrate_export(raw: Mapping[str, Any], *, where: str = "the export metadata") -> dict[str, Any]:
    """Every migration of the export metadata in one place: what an older file lacks, filled as it behaved.

    Args:
        raw: the JSON object a file stores; one without classes is not deepcat's (a DeepcatError).
        where: the file, as errors name it.

    Returns:
        The JSON with today's keys: images when no kind was recorded, no calibration (never `unknown`), no score or
        logits output named, and `input` None where the kind's own description (`input_spec`) applies.
    """
    if "classes" not in raw:
        raise DeepcatError(f"{where}: its deepcat metadata has no classes; export the run again with `deepcat export`")
    return {
        "name": "model",
        "version": None,
        "source": None,
        "calibration": None,
        "input_kind": DEFAULT_KIND,  # files exported before kinds existed are images
        "input": None,  # filled from the kind (`input_spec`)
        "output": PROBABILITIES,
        "score_output": None,
        "logits_output": None,
        "deepcat_version": "",
        "decision": None,  # the most probable class
        **raw,
        **_older_preprocessing(raw.get("input_kind", DEFAULT_KIND), raw),
    }


def _preprocessing(kind: str, values: Mapping[str, Any], where: str, fix: str) -> Preprocessing:
    """The kind's preprocessing dataclass from its saved fields; one missing is an error that names it."""
    try:
        return cast(Preprocessing, input_kind(kind).preprocess(dict(values)))
    except KeyError as e:
        raise DeepcatError(
            f"{where} lacks the {kind} preprocessing's {e.args[0]!r}, so deepcat cannot feed the model: {fix}"
        ) from None


def _refuse_unknown(
    values: Mapping[str, Any], known: Sequence[str] | Mapping[str, Any], where: str, writer: str = ""
) -> None:
    """Keys this deepcat does not know mean a newer one wrote the file: say so, rather than drop what it meant."""
    unknown = [key for key in values if key not in known]
    if unknown:
        by = f" (deepcat {writer})" if writer else ""
        raise DeepcatError(
            f"{where} holds {', '.join(map(repr, unknown))}, which this deepcat does not know: it was written by a "
            f"newer deepcat{by}; {UPGRADE}.{did_you_mean(unknown[0], known)}"
        )
