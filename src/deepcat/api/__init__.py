"""The Python API: one function per `deepcat` command, typed and keyword-only, one module per verb.

Each function's signature and docstring are the single declaration of its command's options: the signature gives
each option's name, type and default, its `Args:` section the help, and `deepcat.cli` generates the flags from
them (a test compares the two). Options that are a dataclass's fields (`TrainConfig` for train, lr-find and tune;
the server's `Limits`; listening's `Spotting`) are declared there. Each function is the front of one layer: data/
(check, shard), training/ (train, lr_find), tuning/ (tune), evaluation/ (evaluate, explain, report), inference/
(predict, load, listen), exporting/ (export), serving/ (serve, label). Heavy libraries load inside each function, so
`import deepcat` stays instant.

`VERBS` is the registry: a new verb is one module here (its function) and its line in `VERBS`, with the import
that names it. `deepcat.<verb>`, the `deepcat <verb>` sub-command (its flags generated, its result printed) and
the API reference page all come from it; `deepcat.cli` only adds what a command line says differently. Type
checkers cannot read a registry, so `deepcat/__init__.py` also names the verb for them (a test holds it to
`VERBS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepcat.api.check import CheckResult as CheckResult
from deepcat.api.check import check as check
from deepcat.api.evaluate import evaluate as evaluate
from deepcat.api.explain import explain as explain
from deepcat.api.export import export as export
from deepcat.api.export import export_formats as export_formats
from deepcat.api.label import label as label
from deepcat.api.listen import listen as listen
from deepcat.api.load import load as load
from deepcat.api.lr_find import lr_find as lr_find
from deepcat.api.predict import predict as predict
from deepcat.api.report import report as report
from deepcat.api.serve import serve as serve
from deepcat.api.shard import shard as shard
from deepcat.api.train import train as train
from deepcat.api.tune import tune as tune
from deepcat.data.audit.findings import NEAR_DUPLICATE_BITS as NEAR_DUPLICATE_BITS
from deepcat.inference.listen import Spotting as Spotting
from deepcat.inference.runtimes import DEVICES as DEVICES
from deepcat.run_folder import model_source as model_source
from deepcat.serving.limits import Limits as Limits
from deepcat.serving.model_file import PRECISIONS as PRECISIONS

VERBS: dict[str, Callable[..., Any]] = {  # `deepcat NAME ...` calls the function, in this order in --help
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
    "export": export,
    "serve": serve,
    "check": check,
    "shard": shard,
    "explain": explain,
    "listen": listen,
    "report": report,
    "lr-find": lr_find,
    "tune": tune,
    "label": label,
}
PYTHON_ONLY = {"load": load}  # a classifier object has no command-line form
__all__ = [  # the verbs and `load` by their function names (deepcat.api.lr_find), then what they take and give
    *(function.__name__ for function in (*VERBS.values(), *PYTHON_ONLY.values())),
    "CheckResult",
    "DEVICES",
    "Limits",
    "NEAR_DUPLICATE_BITS",
    "PRECISIONS",
    "PYTHON_ONLY",
    "Spotting",
    "VERBS",
    "export_formats",
    "model_source",
]
