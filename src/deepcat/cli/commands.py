"""What each sub-command runs: parsed flags in (`flags.api_options` reads them back into the verb's keyword
arguments), a call of the Python API, what it returned printed. Nothing else. A verb whose printing says more than
its result (`PRINTERS`) has its function here; any other verb of `deepcat.api.VERBS` runs through `call`."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepcat import api
from deepcat.cli.flags import api_options
from deepcat.errors import DeepcatError

__all__ = [
    "PRINTERS",
    "call",
    "check",
    "command",
    "evaluate",
    "explain",
    "export",
    "listen",
    "lr_find",
    "predict",
    "shard",
    "train",
    "tune",
]


def train(args: argparse.Namespace) -> int:
    try:
        run = api.train(args.data, **api_options(args, api.train))
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the last finished epoch is saved; continue with "
            "`deepcat train --resume RUN` (RUN is the run folder printed above)",
            file=sys.stderr,
        )
        return 130
    print(run)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from deepcat.cli.tables import print_evaluation

    metrics = api.evaluate(args.run, args.data, **api_options(args, api.evaluate), progress=not args.json)
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
    else:
        print_evaluation(metrics, f"{Path(args.run).name} on {metrics.data} ({metrics.split})")
        print(f"saved {Path(args.run) / 'evaluation'}/metrics.json and confusion_matrix.png")
    return 0


def predict(args: argparse.Namespace) -> int:
    from deepcat.api.predict import monitor_report
    from deepcat.cli.tables import print_monitor, print_predictions

    inputs = list(args.inputs)
    model = inputs.pop(0) if inputs and api.model_source(inputs[0]) is not None else None
    if not inputs:
        raise DeepcatError("no images given: deepcat predict [RUN | MODEL.onnx] IMAGE [IMAGE ...]")
    classifier = api.load(model)
    options = api_options(args, api.predict)
    if args.output and args.monitor:
        raise DeepcatError(
            "--monitor compares the answers it prints with the run's validation answers, and --output writes "
            "them to a file instead: drop --output, on a sample of the inputs if there are many"
        )
    if args.output:  # this process's share, under torchrun
        written = api.predict(classifier, inputs, **options, progress=not args.json)
        summary = {
            "output": str(written.path),
            "predicted": written.predicted,
            "skipped": written.skipped,
            "errors": written.errors,
            "seconds": round(written.seconds, 1),
        }
        print(json.dumps(summary) if args.json else "  ".join(f"{k} {v}" for k, v in summary.items()))
        return 0
    predictions = api.predict(classifier, inputs, **options, progress=not args.json)
    report = monitor_report(classifier, predictions) if args.monitor else None
    if args.json:
        found = {"model": classifier.name, "predictions": [p.to_dict() for p in predictions]}
        print(json.dumps({**found, **({"monitor": report} if report else {})}, indent=2))
    else:
        print_predictions(predictions, classifier.name, args.top_k)
        if report:
            print_monitor(report)
    return 1 if all(p.error for p in predictions) else 0


def export(args: argparse.Namespace) -> int:
    result = api.export(args.run, **api_options(args, api.export), progress=not args.quiet)
    check = result.check
    speed = f", {result.ms_batch1:.2f} ms per image here" if result.ms_batch1 else ""
    accuracy = (
        f", accuracy PyTorch {check.accuracy_pytorch:.2%} vs exported {check.accuracy_exported:.2%}"
        if check.accuracy_pytorch is not None and check.accuracy_exported is not None
        else ""
    )
    searched = (result.precision or {}).get("search_images")
    search = f" (another {searched} chose its float layers)" if searched else ""
    print(
        f"{result.format}: {result.path} ({result.bytes / 1e6:.2f} MB{speed})\n"
        f"checked on {check.images} validation images{search} ({check.rule}): "
        f"max |diff| {check.max_abs_diff:.2e}, top-1 agreement {check.top1_agreement:.2%}"
        f"{accuracy}"
    )
    return 0


def shard(args: argparse.Namespace) -> int:
    out = api.shard(args.data, **api_options(args, api.shard), progress=not args.quiet)
    print(f"shards: {out}; train on them with `deepcat train {out}`")
    return 0


def check(args: argparse.Namespace) -> int:
    from deepcat.cli.tables import print_audit, print_suspects

    result = api.check(args.data, **api_options(args, api.check), progress=not args.quiet)
    print_audit(result.audit)
    print(f"findings: {result.audit_path}")
    if result.clean is not None:
        clean = result.clean
        print(
            f"cleaned split: {clean.path} ({clean.kept} kept, {clean.dropped} dropped: "
            f"{', '.join(f'{k} {v}' for k, v in clean.reasons.items() if v)}); "
            f"train on it with `deepcat train {clean.path}`"
        )
    if result.label_errors is not None:
        print_suspects(result.label_errors, limit=args.top)
        run = Path(args.labels)
        print(
            f"suspected label errors: {run / 'label_issues.json'}, {run / 'label_issues.png'}; "
            f"report: {run / 'report.html'}"
        )
    return 0


def explain(args: argparse.Namespace) -> int:
    out = args.output or f"{args.run.rstrip('/')}/explain"
    for r in api.explain(args.run, args.images, **{**api_options(args, api.explain), "output": out}):
        print(f"{r.source}: predicted {r.predicted}; Grad-CAM of {r.label} ({r.probability:.3f})")
    print(f"heatmaps in {out}")
    return 0


def listen(args: argparse.Namespace) -> int:
    options = api_options(args, api.listen)
    if args.mic:
        heard = api.listen(args.model, args.recording, **options)
        print("listening (Ctrl-C stops)", file=sys.stderr)
        try:
            for d in heard:
                print(json.dumps(dataclasses.asdict(d)) if args.json else _detection(d), flush=True)
        except KeyboardInterrupt:
            pass
        return 0
    found = api.listen(args.model, args.recording, **options, progress=not args.quiet)
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in found]))
        return 0
    for d in found:
        print(_detection(d))
    print(f"{len(found)} keyword{'s' if len(found) != 1 else ''} heard", file=sys.stderr)
    return 0


def _detection(d: Any) -> str:
    return f"{d.seconds:9.2f} s  {d.label}  ({d.score:.2f})"


def lr_find(args: argparse.Namespace) -> int:
    result = api.lr_find(args.data, **api_options(args, api.lr_find))
    print(f"suggested learning rate: {result.suggested_lr:.2e}  (plot: {result.plot})")
    return 0


def tune(args: argparse.Namespace) -> int:
    result = api.tune(args.data, **api_options(args, api.tune))
    print(f"{result.trials} trials ({result.complete} finished, {result.pruned} pruned, {result.failed} failed)")
    if result.best_run is not None:
        print(
            f"best validation accuracy {result.best_value:.4f}: {result.best_run}\n"
            f"reproduce it: deepcat train --config {result.best_config}\nreport: {result.folder / 'report.html'}"
        )
    return 0


PRINTERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
    "export": export,
    "check": check,
    "shard": shard,
    "explain": explain,
    "listen": listen,
    "lr-find": lr_find,
    "tune": tune,
}


def command(name: str, function: Callable[..., Any]) -> Callable[[argparse.Namespace], int]:
    """What `deepcat NAME` runs: its printer, or `call` of its function."""
    return PRINTERS.get(name) or functools.partial(call, function=function)


def call(args: argparse.Namespace, *, function: Callable[..., Any]) -> int:
    """Call `function` with the parsed positionals and flags, and print what it returns: nothing for None, a
    dataclass as JSON, a list one item a line, anything else as `str` gives it."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    inputs = [getattr(args, n) for n, p in inspect.signature(function).parameters.items() if p.kind in positional]
    result = function(*inputs, **api_options(args, function))
    for item in result if isinstance(result, list) else [] if result is None else [result]:
        is_record = dataclasses.is_dataclass(item) and not isinstance(item, type)
        print(json.dumps(dataclasses.asdict(item), default=str) if is_record else item)
    return 0
