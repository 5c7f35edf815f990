"""`build_parser`: one sub-command per verb of the Python API's registry (`deepcat.api.VERBS`), its arguments
generated from the verb's function, so a verb registered there is a command without a line here.

Each option is declared once, in `deepcat.api` (a keyword argument and its `Args:` entry) or in a dataclass
(`TrainConfig`, the server's `Limits`, listening's `Spotting`); `flags.add_api_flags` writes its flag. What is
written here (`COMMANDS`) is only what the command line has and Python has not: the sub-command's help, how
positionals are typed (`predict [RUN | MODEL.onnx] IMAGES...`), a flag whose form differs (`--class-threshold
six=0.9`), and the flags that choose how results are printed (`--json`, `--quiet`, `--top`). A test holds the two
to the same names, types, defaults and help, and fails when an option is written here by hand.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deepcat import api
from deepcat.cli import commands
from deepcat.cli.flags import add_api_flags

__all__ = ["CLI_ONLY", "COMMANDS", "Command", "add_verb", "build_parser"]

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


def _top(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top", type=int, default=20, help="suspected label errors to print (default: %(default)s)")


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


@dataclass(frozen=True)
class Command:
    """What a verb's sub-command says differently from its function; a verb without an entry in COMMANDS gets
    the first sentence of its docstring as help, its flags generated, and its result printed as it comes."""

    help: str | None = None
    description: str | None = None
    custom: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # a flag's own form: `add_api_flags`
    skip: tuple[str, ...] = ()  # parameters the command reads its own way
    printing: tuple[str, ...] = ()  # CLI_ONLY flags
    more: Callable[[argparse.ArgumentParser], None] | None = None  # another flag that only chooses what is printed


COMMANDS: dict[str, Command] = {
    "train": Command(
        help="train a classifier; prints the run folder",
        description="Train a classifier on DATA. Every option can also live in a YAML --config.",
        custom={"resume": {"metavar": "RUN"}, "from_run": {"names": ("--from",), "metavar": "RUN"}},
    ),
    "evaluate": Command(help="accuracy, per-class metrics and confusion matrix of a run", printing=("json",)),
    "predict": Command(
        help="label images or sound clips; with no RUN, the pretrained cat / dog / neither model",
        description="deepcat predict [RUN | MODEL.onnx] IMAGES...: files, folders or globs. "
        "An exported .onnx/.ort (ONNX Runtime) or .xml (OpenVINO) runs without loading torch; "
        ".pte runs on ExecuTorch.",
        skip=("model",),  # the model, when given, is the first of the inputs
        custom={"inputs": {"nargs": "+", "metavar": "[RUN | MODEL.onnx] IMAGES"}},
        printing=("json", "monitor"),
    ),
    "export": Command(
        help="ONNX, OpenVINO IR or ExecuTorch (fp32, int8), .ort for Android, or TorchScript; checked against PyTorch",
        custom={"format": {"choices": api.export_formats()}},
        printing=("quiet",),
    ),
    "serve": Command(
        help="REST API and web page for a run or an exported model",
        description="Serve RUN, MODEL.onnx, or (with neither) the pretrained cat / dog / neither model.",
        custom={
            "model": {"metavar": "RUN | MODEL.onnx"},
            "precision": {"choices": api.PRECISIONS},
            "device": {"choices": api.DEVICES},
        },
    ),
    "check": Command(
        help="audit data: unreadable files, duplicates, leaks, imbalance; label errors",
        description="Audit DATA as `deepcat train` would split it. --fix writes a cleaned split CSV "
        "(your files are not touched); --labels RUN finds likely mislabelled images.",
        custom={"labels": {"metavar": "RUN"}, "output": {"names": ("--output", "--out")}},
        printing=("quiet",),
        more=_top,
    ),
    "shard": Command(
        help="write DATA as WebDataset tar shards (a folder or s3://...) that train streams",
        description="Split DATA as `deepcat train` would and write each split as tar shards with a manifest and "
        "the audit's facts. Then: deepcat train OUT.",
        printing=("quiet",),
    ),
    "explain": Command(
        help="Grad-CAM heatmaps: where the model looked",
        custom={"images": {"nargs": "+"}, "output": {"more": "(default: RUN/explain)"}},
    ),
    "listen": Command(
        help="keyword spotting: the words a sound model hears in a recording or live",
        custom={
            "thresholds": {
                "names": ("--class-threshold",),
                "action": _ClassThreshold,
                "metavar": "CLASS=P",
                "type": str,
                "more": "(repeat for more classes): --class-threshold six=0.9",
            }
        },
        printing=("json", "quiet"),
    ),
    "report": Command(help="(re)write RUN/report.html: data, curves, metrics, calibration, mistakes"),
    "lr-find": Command(help="sweep the learning rate and suggest one"),
    "tune": Command(
        help="search hyper-parameters (Optuna) within a time or trial budget",
        description="Search the training options not given here, for --budget or --trials. The "
        "study lives in tunes/STUDY/ (OUTPUT/STUDY/ with --output; or --storage, a "
        "database shared by many machines); the same command again continues it.",
    ),
    "label": Command(
        help="a local page to label a folder by keyboard, webcam or microphone, into DATA/labels.csv",
        description="Label DATA in the browser; every label is saved to DATA/labels.csv at once. Then: "
        "deepcat train DATA/labels.csv.",
        custom={"data": {"metavar": "DATA"}},
    ),
}


def first_sentence(function: Callable[..., Any]) -> str:
    """A verb's help when COMMANDS has none: its docstring up to the first full stop, lower-cased."""
    text = " ".join((inspect.getdoc(function) or "").split("\n\n")[0].split())
    sentence = text.split(". ")[0].rstrip(".")
    return sentence[:1].lower() + sentence[1:]


def add_verb(sub: Sub[argparse.ArgumentParser], name: str, function: Callable[..., Any]) -> None:
    """`deepcat NAME`: the flags of `function`, as COMMANDS says them, and the command that calls and prints."""
    command = COMMANDS.get(name, Command())
    p = sub.add_parser(name, help=command.help or first_sentence(function), description=command.description)
    add_api_flags(p, function, skip=command.skip, custom=command.custom)
    _printing(p, *command.printing)
    if command.more is not None:
        command.more(p)
    p.set_defaults(func=commands.command(name, function))


def build_parser() -> argparse.ArgumentParser:
    from deepcat.version import __version__

    parser = argparse.ArgumentParser(
        prog="deepcat",
        description="Train, evaluate, export and serve classifiers of images or sound clips from a folder of "
        "labelled examples.",
    )
    parser.add_argument("--version", action="version", version=f"deepcat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, function in api.VERBS.items():
        add_verb(sub, name, function)
    return parser
