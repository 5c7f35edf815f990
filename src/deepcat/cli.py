"""The `deepcat` command: parsing and printing only; the work is in the Python API.

Imports of torch and friends happen inside each command, so `deepcat --help` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Sequence

from deepcat.config import TrainConfig
from deepcat.errors import DeepcatError


def _add_config_flags(parser: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
    """One flag per TrainConfig field, typed and documented from the dataclass."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # X | None
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, choices=f.metadata.get("choices"), help=help_text,
                                metavar=None if f.metadata.get("choices") else f.name.upper())


def _options(args: argparse.Namespace) -> dict:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from deepcat.training.loop import train

    options = _options(args)
    if args.data_arg:
        options["data"] = args.data_arg
    try:
        run = train(config_file=args.config, resume=args.resume, **options)
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is saved; continue with "
              "`deepcat train --resume RUN` (RUN is the run folder printed above)", file=sys.stderr)
        return 130
    print(run)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from deepcat.evaluation import evaluate

    metrics = evaluate(args.run, data=args.data, batch_size=args.batch_size, device=args.device, quiet=args.json)
    if args.json:
        print(json.dumps(metrics, indent=2))
    return 0


def _is_run(path: str) -> bool:
    from pathlib import Path

    return (Path(path) / "model.json").is_file()


def _is_exported(path: str) -> bool:
    from pathlib import Path

    return path.endswith((".onnx", ".ort")) and Path(path).is_file()


def cmd_predict(args: argparse.Namespace) -> int:
    from deepcat.prediction import expand_inputs

    inputs = list(args.inputs)
    model = inputs.pop(0) if inputs and (_is_run(inputs[0]) or _is_exported(inputs[0])) else None
    if not inputs:
        raise DeepcatError("no images given: deepcat predict [RUN | MODEL.onnx] IMAGE [IMAGE ...]")
    files = expand_inputs(inputs)
    if model and _is_exported(model):  # ONNX Runtime only: torch is never imported on this path
        from deepcat.runtime import load_onnx

        classifier = load_onnx(model)
    else:
        from deepcat.predict import load

        classifier = load(model)
    predictions = classifier.predict(files, top_k=args.top_k, reject=not args.no_reject,
                                     progress=len(files) > 64 and not args.json)
    if args.json:
        print(json.dumps({"model": classifier.name, "predictions": [p.to_dict() for p in predictions]}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"predictions ({classifier.name})")
        for col in ("image", "label", "probability", f"top {args.top_k}"):
            table.add_column(col)
        for p in predictions:
            if p.error:
                table.add_row(p.source, "[red]error[/red]", "", p.error)
            else:
                top = ", ".join(f"{lab} {prob:.3f}" for lab, prob in p.top)
                label = (f"[yellow]unknown[/yellow] (< {p.threshold:.3f})" if p.label == "unknown"
                         else f"[bold]{p.label}[/bold]")
                table.add_row(p.source, label, f"{p.probability:.3f}", top)
        Console().print(table)
    return 1 if all(p.error for p in predictions) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from deepcat.export import export

    result = export(args.run, format=args.format, output=args.output)
    check = result["check"]
    speed = f", {result['ms_batch1']:.2f} ms per image here" if result.get("ms_batch1") else ""
    print(f"{result['format']}: {result['path']} ({result['bytes'] / 1e6:.2f} MB{speed})\n"
          f"checked on {check['images']} validation images: max |diff| {check['max_abs_diff']:.2e}, "
          f"top-1 agreement {check['top1_agreement']:.2%}, accuracy PyTorch {check['accuracy_pytorch']:.2%} "
          f"vs exported {check['accuracy_exported']:.2%}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    import uvicorn

    from deepcat.serving.app import Limits, create_app

    model = args.model
    if model is None or _is_run(model):
        from deepcat.export.api import serving_model

        model = serving_model(model)
    elif not _is_exported(model):
        raise DeepcatError(f"{model} is neither a run folder nor an .onnx/.ort file")
    api_key = args.api_key or os.environ.get("DEEPCAT_API_KEY")
    limits = Limits(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_bytes=args.max_bytes,
                    max_pixels=args.max_pixels, max_files=args.max_files)
    app = create_app(Path(model), limits=limits, api_key=api_key, reject=not args.no_reject)
    print(f"serving {model} on http://{args.host}:{args.port} (docs at /docs){' with an API key' if api_key else ''}",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deepcat.data import audit
    from deepcat.data.sources import resolve_data

    splits = resolve_data(args.data, val_fraction=args.val_fraction, seed=args.seed, classes=args.classes)
    out = Path(args.out or Path("checks") / splits.name)
    found = audit.audit(splits, near=args.near, progress=not args.quiet)  # = deepcat.check(DATA), splits kept
    audit.write_json(found, out / "audit.json")
    found.print_table()
    print(f"findings: {out / 'audit.json'}")
    if args.fix:
        counts = audit.fix_split(splits, found, out / "clean.csv")
        print(f"cleaned split: {out / 'clean.csv'} ({counts['kept']} kept, {counts['dropped']} dropped: "
              f"{', '.join(f'{k} {v}' for k, v in counts.items() if k not in ('kept', 'dropped') and v)}); "
              f"train on it with `deepcat train {out / 'clean.csv'}`")
    if args.labels:
        from deepcat.label_errors import find_label_errors, print_suspects, save

        result = find_label_errors(args.labels, splits, progress=not args.quiet)
        print_suspects(result, limit=args.top)
        json_path, png = save(result, Path(args.labels))
        from deepcat.report import write_report

        print(f"suspected label errors: {json_path}, {png}; report: {write_report(args.labels)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from deepcat.report import write_report

    print(write_report(args.run))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from deepcat.explain import explain
    from deepcat.prediction import expand_inputs

    out = args.output or f"{args.run.rstrip('/')}/explain"
    results = explain(args.run, expand_inputs(args.images), target=args.target, output=out)
    for r in results:
        print(f"{r.source}: predicted {r.predicted}; Grad-CAM of {r.label} ({r.probability:.3f})")
    print(f"heatmaps in {out}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from deepcat.training.lr_find import lr_find

    options = _options(args)
    if args.data_arg:
        options["data"] = args.data_arg
    result = lr_find(config_file=args.config, steps=args.steps, plot=args.plot, **options)
    print(f"suggested learning rate: {result['suggested_lr']:.2e}  (plot: {args.plot})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepcat", description="Train, evaluate and use image classifiers "
                                     "from a folder of labelled images.")
    parser.add_argument("--version", action="version", version="deepcat 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a classifier; prints the run folder",
                       description="Train a classifier on DATA. Every option can also live in a YAML --config.")
    p.add_argument("data_arg", nargs="?", metavar="DATA", help=TrainConfig.help_of("data") + " (default: digits)")
    p.add_argument("--config", help="YAML file of options (command-line flags win)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder")
    _add_config_flags(p, skip=("data",))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of a run")
    p.add_argument("run", metavar="RUN", help="run folder printed by `deepcat train`")
    p.add_argument("data", nargs="?", metavar="DATA", help="data to evaluate on (default: the run's test split)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label images; with no RUN, the pretrained cat / dog / neither model",
                       description="deepcat predict [RUN | MODEL.onnx] IMAGES...: files, folders or globs. "
                                   "An exported .onnx/.ort runs on ONNX Runtime without loading torch.")
    p.add_argument("inputs", nargs="+", metavar="[RUN | MODEL.onnx] IMAGES")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--no-reject", action="store_true",
                   help="always answer a training class, never `unknown` (below the run's calibrated threshold)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="ONNX (fp32, int8), .ort for Android, or TorchScript; checked against PyTorch")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--format", default="onnx", choices=("onnx", "onnx-int8", "ort", "torchscript"))
    p.add_argument("--output", help="file to write (default: RUN/export/model.<format>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="REST API and web page for a run or an exported model",
                       description="Serve RUN, MODEL.onnx, or (with neither) the pretrained cat / dog / neither model.")
    p.add_argument("model", nargs="?", metavar="RUN | MODEL.onnx")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require this key in X-API-Key (default: $DEEPCAT_API_KEY, else none)")
    p.add_argument("--max-batch", type=int, default=32, help="largest micro-batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="longest a request waits for its batch to fill")
    p.add_argument("--max-bytes", type=int, default=10_000_000, help="largest image upload")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image, refused before decoding")
    p.add_argument("--max-files", type=int, default=64, help="most images in one batch request")
    p.add_argument("--no-reject", action="store_true", help="never answer `unknown`")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="audit data: unreadable files, duplicates, leaks, imbalance; label errors",
                       description="Audit DATA as `deepcat train` would split it. --fix writes a cleaned split CSV "
                                   "(your files are not touched); --labels RUN finds likely mislabelled images.")
    p.add_argument("data", metavar="DATA", help=TrainConfig.help_of("data"))
    p.add_argument("--out", help="folder for audit.json and clean.csv (default: checks/<data name>)")
    p.add_argument("--fix", action="store_true", help="write clean.csv: duplicates, leaks, conflicts and "
                   "unreadable files removed")
    p.add_argument("--labels", metavar="RUN", help="find label errors with this run's network (trained on DATA)")
    p.add_argument("--top", type=int, default=20, help="suspected label errors to print")
    p.add_argument("--near", type=int, default=4, help="perceptual-hash bits within which images are near duplicates")
    p.add_argument("--val-fraction", type=float, default=0.2, help="as in train: decides the split checked for leaks")
    p.add_argument("--seed", type=int, default=0, help="as in train: decides the split checked for leaks")
    p.add_argument("--classes", help=TrainConfig.help_of("classes"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("explain", help="Grad-CAM heatmaps: where the model looked")
    p.add_argument("run", metavar="RUN")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="files, folders or globs")
    p.add_argument("--target", help="class to explain (default: the predicted class)")
    p.add_argument("--output", help="folder for the PNGs (default: RUN/explain)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("report", help="(re)write RUN/report.html: data, curves, metrics, calibration, mistakes")
    p.add_argument("run", metavar="RUN")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("lr-find", help="sweep the learning rate and suggest one")
    p.add_argument("data_arg", nargs="?", metavar="DATA", help=TrainConfig.help_of("data"))
    p.add_argument("--config", help="YAML file of options")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--plot", default="lr_find.png", help="where to save the loss-vs-lr plot")
    _add_config_flags(p, skip=("data",))
    p.set_defaults(func=cmd_lr_find)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DeepcatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
