"""`build_parser`: one sub-command per verb of the Python API, its arguments generated from the verb's function.

Each option is declared once, in `deepcat.api` (a keyword argument and its `Args:` entry) or in a dataclass
(`TrainConfig`, the server's `Limits`, listening's `Spotting`); `flags.add_api_flags` writes its flag. What is
written here is only what the command line has and Python has not: the sub-command's help, how positionals are
typed (`predict [RUN | MODEL.onnx] IMAGES...`), a flag whose form differs (`--class-threshold six=0.9`), and the
flags that choose how results are printed (`--json`, `--quiet`, `--top`). A test holds the two to the same names,
types, defaults and help, and fails when an option is written here by hand.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from deepcat import api
from deepcat.cli import commands
from deepcat.cli.flags import add_api_flags

__all__ = ["CLI_ONLY", "VERBS", "build_parser"]

CLI_ONLY = {  # how results are printed
    "json": "print JSON instead of a table",
    "quiet": "no progress bars",
    "monitor": "also print how these inputs compare with the validation split (drift test, accuracy estimated "
    "without labels, alarm): the report the server's /v1/monitor gives",
}
Sub = argparse._SubParsersAction  # the `add_subparsers()` object each verb adds its sub-command to


def _printing(parser: argparse.ArgumentParser, *names: str) -> None:
    """--json / --quiet: how the command prints what its call returned; Python has no such option."""
    for name in names:
        parser.add_argument(f"--{name}", action="store_true", help=CLI_ONLY[name])


def _train(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier; prints the run folder",
        description="Train a classifier on DATA. Every option can also live in a YAML --config.",
    )
    add_api_flags(
        p, api.train, custom={"resume": {"metavar": "RUN"}, "from_run": {"names": ("--from",), "metavar": "RUN"}}
    )
    p.set_defaults(func=commands.train)


def _evaluate(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of a run")
    add_api_flags(p, api.evaluate)
    _printing(p, "json")
    p.set_defaults(func=commands.evaluate)


def _predict(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "predict",
        help="label images or sound clips; with no RUN, the pretrained cat / dog / neither model",
        description="deepcat predict [RUN | MODEL.onnx] IMAGES...: files, folders or globs. "
        "An exported .onnx/.ort (ONNX Runtime) or .xml (OpenVINO) runs without loading torch; "
        ".pte runs on ExecuTorch.",
    )
    inputs = {"nargs": "+", "metavar": "[RUN | MODEL.onnx] IMAGES"}  # the model, when given, is the first
    add_api_flags(p, api.predict, skip=("model",), custom={"inputs": inputs})
    _printing(p, "json", "monitor")
    p.set_defaults(func=commands.predict)


def _export(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="ONNX, OpenVINO IR or ExecuTorch (fp32, int8), .ort for Android, or TorchScript; checked against PyTorch",
    )
    add_api_flags(p, api.export, custom={"format": {"choices": api.export_formats()}})
    _printing(p, "quiet")
    p.set_defaults(func=commands.export)


def _serve(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="REST API and web page for a run or an exported model",
        description="Serve RUN, MODEL.onnx, or (with neither) the pretrained cat / dog / neither model.",
    )
    custom: dict[str, dict[str, Any]] = {
        "model": {"metavar": "RUN | MODEL.onnx"},
        "precision": {"choices": api.PRECISIONS},
        "device": {"choices": api.DEVICES},
    }
    add_api_flags(p, api.serve, custom=custom)
    p.set_defaults(func=commands.serve)


def _check(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="audit data: unreadable files, duplicates, leaks, imbalance; label errors",
        description="Audit DATA as `deepcat train` would split it. --fix writes a cleaned split CSV "
        "(your files are not touched); --labels RUN finds likely mislabelled images.",
    )
    custom: dict[str, dict[str, Any]] = {"labels": {"metavar": "RUN"}, "output": {"names": ("--output", "--out")}}
    add_api_flags(p, api.check, custom=custom)
    p.add_argument("--top", type=int, default=20, help="suspected label errors to print (default: %(default)s)")
    _printing(p, "quiet")
    p.set_defaults(func=commands.check)


def _shard(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "shard",
        help="write DATA as WebDataset tar shards (a folder or s3://...) that train streams",
        description="Split DATA as `deepcat train` would and write each split as tar shards with a manifest and "
        "the audit's facts. Then: deepcat train OUT.",
    )
    add_api_flags(p, api.shard)
    _printing(p, "quiet")
    p.set_defaults(func=commands.shard)


def _explain(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="Grad-CAM heatmaps: where the model looked")
    custom = {"images": {"nargs": "+"}, "output": {"more": "(default: RUN/explain)"}}
    add_api_flags(p, api.explain, custom=custom)
    p.set_defaults(func=commands.explain)


class _ClassThreshold(argparse.Action):
    """`--class-threshold six=0.9`, repeated: {"six": 0.9, ...}, as `Spotting.thresholds` holds them."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        name, _, value = str(values).rpartition("=")
        try:
            if name:
                setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), name: float(value)})
                return
        except ValueError:
            pass
        parser.error(f"{option_string} {values!r}: give CLASS=PROBABILITY, e.g. six=0.9")


def _listen(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("listen", help="keyword spotting: the words a sound model hears in a recording or live")
    thresholds = {
        "names": ("--class-threshold",),
        "action": _ClassThreshold,
        "metavar": "CLASS=P",
        "type": str,
        "more": "(repeat for more classes): --class-threshold six=0.9",
    }
    add_api_flags(p, api.listen, custom={"thresholds": thresholds})
    _printing(p, "json", "quiet")
    p.set_defaults(func=commands.listen)


def _report(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="(re)write RUN/report.html: data, curves, metrics, calibration, mistakes")
    add_api_flags(p, api.report)
    p.set_defaults(func=commands.report)


def _lr_find(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lr-find", help="sweep the learning rate and suggest one")
    add_api_flags(p, api.lr_find)
    p.set_defaults(func=commands.lr_find)


def _tune(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tune",
        help="search hyper-parameters (Optuna) within a time or trial budget",
        description="Search the training options not given here, for --budget or --trials. The "
        "study lives in tunes/STUDY/ (OUTPUT/STUDY/ with --output; or --storage, a "
        "database shared by many machines); the same command again continues it.",
    )
    add_api_flags(p, api.tune)
    p.set_defaults(func=commands.tune)


def _label(sub: Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "label",
        help="a local page to label a folder by keyboard, webcam or microphone, into DATA/labels.csv",
        description="Label DATA in the browser; every label is saved to DATA/labels.csv at once. Then: "
        "deepcat train DATA/labels.csv.",
    )
    add_api_flags(p, api.label, custom={"data": {"metavar": "DATA"}})
    p.set_defaults(func=commands.label)


VERBS: tuple[Callable[[Sub[argparse.ArgumentParser]], None], ...] = (
    _train,
    _evaluate,
    _predict,
    _export,
    _serve,
    _check,
    _shard,
    _explain,
    _listen,
    _report,
    _lr_find,
    _tune,
    _label,
)


def build_parser() -> argparse.ArgumentParser:
    from deepcat.version import __version__

    parser = argparse.ArgumentParser(
        prog="deepcat",
        description="Train, evaluate, export and serve classifiers of images or sound clips from a folder of "
        "labelled examples.",
    )
    parser.add_argument("--version", action="version", version=f"deepcat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in VERBS:
        add(sub)
    return parser
