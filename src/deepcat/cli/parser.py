"""`build_parser`: one sub-parser per verb of the Python API. Flags that mirror a dataclass (TrainConfig, the
server's Limits) are generated from its fields, so their names, types, defaults and help live in one place."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Collection

from deepcat.api import DEVICES, NEAR_DUPLICATE_BITS, PRECISIONS, Limits, Spotting, export_formats
from deepcat.cli import commands
from deepcat.config import TrainConfig

__all__ = ["CLI_ONLY", "VERBS", "add_dataclass_flags", "build_parser"]

CLI_ONLY = {"json": "print JSON instead of a table", "quiet": "no progress bars", "top": "rows to print"}


def add_dataclass_flags(
    parser: argparse.ArgumentParser, cls: type, *, only: Collection[str] | None = None, skip: Collection[str] = ()
) -> None:
    """One flag per field of the dataclass `cls`, typed, with its default and help. Booleans get --x/--no-x."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # X | None
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=kind,
                default=None,
                choices=f.metadata.get("choices"),
                help=help_text,
                metavar=None if f.metadata.get("choices") else f.name.upper(),
            )


def _train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier; prints the run folder",
        description="Train a classifier on DATA. Every option can also live in a YAML --config.",
    )
    p.add_argument("data", nargs="?", metavar="DATA", help=TrainConfig.help_of("data") + " (default: digits)")
    p.add_argument("--config", help="YAML file of options (command-line flags win)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder (only --epochs may change)")
    add_dataclass_flags(p, TrainConfig, skip=("data",))
    p.set_defaults(func=commands.train)


def _evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of a run")
    p.add_argument("run", metavar="RUN", help="run folder printed by `deepcat train`")
    p.add_argument("data", nargs="?", metavar="DATA", help="data to evaluate on (default: the run's test split)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help=TrainConfig.help_of("device"))
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"), help=TrainConfig.help_of("amp"))
    p.add_argument("--which", default="best", choices=("best", "last"), help="weights: best (val acc, then loss), last")
    p.add_argument("--json", action="store_true", help=CLI_ONLY["json"])
    p.set_defaults(func=commands.evaluate)


def _predict(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "predict",
        help="label images; with no RUN, the pretrained cat / dog / neither model",
        description="deepcat predict [RUN | MODEL.onnx] IMAGES...: files, folders or globs. "
        "An exported .onnx/.ort (ONNX Runtime) or .xml (OpenVINO) runs without loading torch; "
        ".pte runs on ExecuTorch.",
    )
    p.add_argument("inputs", nargs="+", metavar="[RUN | MODEL.onnx] IMAGES")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument(
        "--reject",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="answer `unknown` below the run's calibrated threshold (--no-reject: always a class)",
    )
    p.add_argument(
        "--coverage",
        type=float,
        help="also answer the set of classes that holds the true one with "
        "this probability (0.50 to 0.99, e.g. 0.9), fitted on the run's validation images",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--output",
        help="write rows to this .csv or .parquet as they come (millions of inputs, memory flat; a rerun skips "
        "what it holds; IMAGES may be one folder or URL of shards; under torchrun the processes share the work)",
    )
    p.add_argument("--json", action="store_true", help=CLI_ONLY["json"])
    p.set_defaults(func=commands.predict)


def _export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="ONNX, OpenVINO IR or ExecuTorch (fp32, int8), .ort for Android, or TorchScript; checked against PyTorch",
    )
    p.add_argument("run", metavar="RUN")
    p.add_argument("--format", default="onnx", choices=export_formats())
    p.add_argument("--output", help="file to write (default: RUN/export/model.<format>)")
    p.add_argument("--calibration-images", type=int, help="int8: training images to calibrate on (auto: by size)")
    p.add_argument("--check-images", type=int, default=500, help="validation images the check compares on")
    p.add_argument("--quiet", action="store_true", help=CLI_ONLY["quiet"])
    p.set_defaults(func=commands.export)


def _serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="REST API and web page for a run or an exported model",
        description="Serve RUN, MODEL.onnx, or (with neither) the pretrained cat / dog / neither model.",
    )
    p.add_argument("model", nargs="?", metavar="RUN | MODEL.onnx")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require this key in X-API-Key (default: $DEEPCAT_API_KEY, else none)")
    p.add_argument(
        "--reject",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="answer `unknown` below the model's threshold (--no-reject: never)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="for a RUN: auto serves "
        "its int8 export when that passed its check (`deepcat export RUN --format onnx-int8`), else fp32; on a "
        "GPU, fp32",
    )
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto: a CUDA GPU where ONNX Runtime has its CUDA provider (pip install onnxruntime-gpu), else the CPU",
    )
    add_dataclass_flags(p, Limits)
    p.set_defaults(func=commands.serve)


def _check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="audit data: unreadable files, duplicates, leaks, imbalance; label errors",
        description="Audit DATA as `deepcat train` would split it. --fix writes a cleaned split CSV "
        "(your files are not touched); --labels RUN finds likely mislabelled images.",
    )
    p.add_argument("data", metavar="DATA", help=TrainConfig.help_of("data"))
    add_dataclass_flags(p, TrainConfig, only=commands.CHECK_SPLIT)
    p.add_argument(
        "--near",
        type=int,
        default=NEAR_DUPLICATE_BITS,
        help="perceptual-hash bits within which images are near duplicates",
    )
    p.add_argument(
        "--fix", action="store_true", help="write clean.csv: duplicates, leaks, conflicts and unreadable files removed"
    )
    p.add_argument("--labels", metavar="RUN", help="find label errors with this run's network (trained on DATA)")
    p.add_argument("--output", "--out", help="folder for audit.json and clean.csv (default: checks/<data name>)")
    p.add_argument("--top", type=int, default=20, help="suspected label errors to print")
    p.add_argument("--quiet", action="store_true", help=CLI_ONLY["quiet"])
    p.set_defaults(func=commands.check)


def _shard(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "shard",
        help="write DATA as WebDataset tar shards (a folder or s3://...) that train streams",
        description="Split DATA as `deepcat train` would and write each split as tar shards with a manifest and "
        "the audit's facts. Then: deepcat train OUT.",
    )
    p.add_argument("data", metavar="DATA", help=TrainConfig.help_of("data"))
    p.add_argument("--out", required=True, help="folder or URL (s3://bucket/prefix) for the shards")
    p.add_argument("--per-shard", type=int, default=10_000, help="inputs per shard at most")
    p.add_argument("--shard-mb", type=float, default=500, help="megabytes per shard at most")
    add_dataclass_flags(p, TrainConfig, only=commands.CHECK_SPLIT)
    p.add_argument("--quiet", action="store_true", help=CLI_ONLY["quiet"])
    p.set_defaults(func=commands.shard)


def _explain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="Grad-CAM heatmaps: where the model looked")
    p.add_argument("run", metavar="RUN")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="files, folders or globs")
    p.add_argument("--target", help="class to explain (default: the predicted class)")
    p.add_argument("--output", help="folder for the PNGs (default: RUN/explain)")
    p.set_defaults(func=commands.explain)


def _class_threshold(text: str) -> tuple[str, float]:
    name, _, value = text.rpartition("=")
    try:
        if name:
            return name, float(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: give CLASS=PROBABILITY, e.g. six=0.9")


def _listen(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("listen", help="keyword spotting: the words a sound model hears in a recording or live")
    p.add_argument("model", metavar="MODEL", help="a sound run folder or its exported file")
    p.add_argument("recording", metavar="RECORDING", nargs="?", help="a wav, flac, ogg or mp3 file")
    p.add_argument("--mic", action="store_true", help="listen to the microphone until Ctrl-C (deepcat[mic])")
    p.add_argument(
        "--mic-device",
        default=None,
        help="the input device's name or number (python -m sounddevice)",
    )
    add_dataclass_flags(p, Spotting, skip=("thresholds",))
    p.add_argument(
        "--class-threshold",
        dest="thresholds",
        action="append",
        type=_class_threshold,
        metavar="CLASS=P",
        help="a class's own threshold, in place of --threshold (repeat for more classes): --class-threshold six=0.9",
    )
    p.add_argument(
        "--reject",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="windows the model answers `unknown` hold no keyword (--no-reject: every window counts)",
    )
    p.add_argument("--json", action="store_true", help=CLI_ONLY["json"])
    p.add_argument("--quiet", action="store_true", help=CLI_ONLY["quiet"])
    p.set_defaults(func=commands.listen)


def _report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="(re)write RUN/report.html: data, curves, metrics, calibration, mistakes")
    p.add_argument("run", metavar="RUN")
    p.set_defaults(func=commands.report)


def _lr_find(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lr-find", help="sweep the learning rate and suggest one")
    p.add_argument("data", nargs="?", metavar="DATA", help=TrainConfig.help_of("data"))
    p.add_argument("--config", help="YAML file of options")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--start-lr", type=float, default=1e-6)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--plot", default="lr_find.png", help="where to save the loss-vs-lr plot")
    add_dataclass_flags(p, TrainConfig, skip=("data",))
    p.set_defaults(func=commands.lr_find)


def _tune(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tune",
        help="search hyper-parameters (Optuna) within a time or trial budget",
        description="Search the training options not given here, for --budget or --trials. The "
        "study lives in tunes/STUDY/ (OUTPUT/STUDY/ with --output; or --storage, a "
        "database shared by many machines); the same command again continues it.",
    )
    p.add_argument("data", nargs="?", metavar="DATA", help=TrainConfig.help_of("data") + " (default: digits)")
    p.add_argument("--config", help="YAML file of fixed options")
    p.add_argument("--budget", help="wall time, e.g. 30m, 2h, 90s")
    p.add_argument("--trials", type=int, help="trials in all (across every process on the study)")
    p.add_argument("--space", help="YAML search space (default: one for the model auto picks)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="trial processes on this machine (each trial loads its data with the train default)",
    )
    p.add_argument(
        "--storage",
        help="shared study database, e.g. postgresql://user@host/db (default: SQLite in tunes/STUDY/study.db)",
    )
    p.add_argument("--study", help="study name (default: the data's name)")
    p.add_argument(
        "--pruning",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop poor trials early from their per-epoch validation accuracy",
    )
    add_dataclass_flags(p, TrainConfig, skip=("data", "workers"))
    p.set_defaults(func=commands.tune)


VERBS = (_train, _evaluate, _predict, _export, _serve, _check, _shard, _explain, _listen, _report, _lr_find, _tune)


def build_parser() -> argparse.ArgumentParser:
    from deepcat.version import __version__

    parser = argparse.ArgumentParser(
        prog="deepcat", description="Train, evaluate and use image classifiers from a folder of labelled images."
    )
    parser.add_argument("--version", action="version", version=f"deepcat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in VERBS:
        add(sub)
    return parser
