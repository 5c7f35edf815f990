"""deepcat: a folder of labelled images or sound clips in, a trained, evaluated classifier out.

    import deepcat
    run = deepcat.train("pets", epochs=5)           # folder with pets/cat, pets/dog
    deepcat.evaluate(run).accuracy
    deepcat.load(run).predict("photo.jpg").label
    deepcat.export(run, format="onnx")

One function per `deepcat` command, with the same options (`deepcat.api`, whose `VERBS` registry is where
these names come from). The heavy modules
(torch, timm) load on first use, so `import deepcat` is instant.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepcat.version import __version__ as __version__

_ELSEWHERE = {"TrainConfig": "deepcat.config", "DeepcatError": "deepcat.errors"}

if TYPE_CHECKING:  # for type checkers, the names `deepcat.api.VERBS` holds (a test keeps the two the same)
    from deepcat.api import check as check
    from deepcat.api import evaluate as evaluate
    from deepcat.api import explain as explain
    from deepcat.api import export as export
    from deepcat.api import label as label
    from deepcat.api import listen as listen
    from deepcat.api import load as load
    from deepcat.api import lr_find as lr_find
    from deepcat.api import predict as predict
    from deepcat.api import report as report
    from deepcat.api import serve as serve
    from deepcat.api import shard as shard
    from deepcat.api import train as train
    from deepcat.api import tune as tune
    from deepcat.config import TrainConfig as TrainConfig
    from deepcat.errors import DeepcatError as DeepcatError


def _functions() -> dict[str, Any]:
    """Each verb's function and `load`, by name, from `deepcat.api`'s registry."""
    api = importlib.import_module("deepcat.api")
    return {f.__name__: f for f in (*api.VERBS.values(), *api.PYTHON_ONLY.values())}


def _public() -> list[str]:
    return [*_functions(), *_ELSEWHERE]


def __getattr__(name: str) -> Any:
    """The heavy modules load on first use: `deepcat.train` imports `deepcat.api` when it is first read."""
    if name == "__all__":
        return _public()
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    here = Path(__file__).parent
    is_module = (here / name).is_dir() or (here / f"{name}.py").is_file()  # `from deepcat import config`: import it
    if not name.startswith("_") and not is_module and name in (functions := _functions()):
        return functions[name]
    raise AttributeError(f"module 'deepcat' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_public()})
