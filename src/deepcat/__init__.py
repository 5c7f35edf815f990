"""deepcat: a folder of labelled images in, a trained, evaluated classifier out.

    import deepcat
    run = deepcat.train(data="pets", epochs=5)      # folder with pets/cat, pets/dog
    deepcat.evaluate(run)
    deepcat.load(run).predict("photo.jpg")

The heavy modules (torch, timm) load on first use, so `import deepcat` is instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["train", "evaluate", "load", "lr_find", "explain", "check", "TrainConfig", "DeepcatError"]

_LAZY = {
    "train": "deepcat.training.loop",
    "evaluate": "deepcat.evaluation",
    "load": "deepcat.predict",
    "lr_find": "deepcat.training.lr_find",
    "explain": "deepcat.explain",
    "check": "deepcat.data.audit",
    "TrainConfig": "deepcat.config",
    "DeepcatError": "deepcat.errors",
}

if TYPE_CHECKING:
    from deepcat.config import TrainConfig
    from deepcat.data.audit import check
    from deepcat.errors import DeepcatError
    from deepcat.evaluation import evaluate
    from deepcat.explain import explain
    from deepcat.predict import load
    from deepcat.training.loop import train
    from deepcat.training.lr_find import lr_find


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepcat' has no attribute {name!r}")
