"""The Python API: one function per `deepcat` command, typed and keyword-only, one module per verb.

Each function's signature and docstring are the single declaration of its command's options: the signature gives
each option's name, type and default, its `Args:` section the help, and `deepcat.cli` generates the flags from
them (a test compares the two). Options that are a dataclass's fields (`TrainConfig` for train, lr-find and tune;
the server's `Limits`; listening's `Spotting`) are declared there. Each function is the front of one layer: data/
(check, shard), training/ (train, lr_find), tuning/ (tune), evaluation/ (evaluate, explain, report), inference/
(predict, load, listen), exporting/ (export), serving/ (serve, label). Heavy libraries load inside each function, so
`import deepcat` stays instant.

A new verb is one module here (its function) and its line below; `deepcat.cli` adds its flags and printing.
"""

from __future__ import annotations

from deepcat.api.check import CheckResult, check
from deepcat.api.evaluate import evaluate
from deepcat.api.explain import explain
from deepcat.api.export import export, export_formats
from deepcat.api.label import label
from deepcat.api.listen import listen
from deepcat.api.load import load
from deepcat.api.lr_find import lr_find
from deepcat.api.predict import predict
from deepcat.api.report import report
from deepcat.api.serve import serve
from deepcat.api.shard import shard
from deepcat.api.train import train
from deepcat.api.tune import tune
from deepcat.data.audit.findings import NEAR_DUPLICATE_BITS
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
    "label",
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
