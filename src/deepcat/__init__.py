"""deepcat: a folder of labelled images or sound clips in, a trained, evaluated classifier out.

    import deepcat
    run = deepcat.train("pets", epochs=5)           # folder with pets/cat, pets/dog
    deepcat.evaluate(run).accuracy
    deepcat.load(run).predict("photo.jpg").label
    deepcat.export(run, format="onnx")

One function per `deepcat` command, with the same options (`deepcat.api`). The heavy modules
(torch, timm) load on first use, so `import deepcat` is instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepcat.version import __version__ as __version__

VERBS = (
    "train",
    "evaluate",
    "predict",
    "export",
    "serve",
    "check",
    "shard",
    "explain",
    "listen",
    "report",
    "lr_find",
    "tune",
    "label",
)
__all__ = [
    "train",
    "evaluate",
    "predict",
    "export",
    "serve",
    "check",
    "shard",
    "explain",
    "listen",
    "report",
    "lr_find",
    "tune",
    "label",
    "load",
    "TrainConfig",
    "DeepcatError",
]

_LAZY = {
    **{verb: "deepcat.api" for verb in (*VERBS, "load")},
    "TrainConfig": "deepcat.config",
    "DeepcatError": "deepcat.errors",
}

if TYPE_CHECKING:
    from deepcat.api import (
        check,
        evaluate,
        explain,
        export,
        label,
        listen,
        load,
        lr_find,
        predict,
        report,
        serve,
        shard,
        train,
        tune,
    )
    from deepcat.config import TrainConfig
    from deepcat.errors import DeepcatError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepcat' has no attribute {name!r}")
