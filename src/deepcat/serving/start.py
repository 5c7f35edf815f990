"""`deepcat serve`'s start: which file to serve (a run's checked export, an exported file, or the pretrained
model), refused early when the server cannot run it, then uvicorn until interrupted."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deepcat.errors import DeepcatError
from deepcat.run_folder import model_source
from deepcat.serving.limits import Limits

__all__ = ["run_server"]


def run_server(
    model: str | Path | None,
    *,
    host: str,
    port: int,
    api_key: str | None,
    reject: bool,
    precision: str,
    device: str,
    limits: Limits,
) -> None:
    """Serve `model` (see `deepcat.serve`) on `host`:`port` until interrupted."""
    import uvicorn

    from deepcat.inference.runtimes import resolve_device, runtime_for
    from deepcat.serving.app import create_app
    from deepcat.serving.memory import return_large_buffers
    from deepcat.serving.model_file import serving_model

    if model is None or model_source(model) == "run":
        device = resolve_device(device)
        model = serving_model(model, precision, device)
    elif not (model_source(model) == "exported" and Path(model).is_file()):
        raise DeepcatError(f"{model} is neither a run folder nor an exported file that exists (.onnx, .ort, .xml)")
    elif not runtime_for(Path(model)).serves:
        raise DeepcatError(
            f"{model}: {runtime_for(Path(model)).name} files are for apps; serve the run or its .onnx or .xml export"
        )
    api_key = api_key or os.environ.get("DEEPCAT_API_KEY")
    return_large_buffers()
    app = create_app(Path(model), limits=limits, api_key=api_key, reject=reject, device=device)
    print(
        f"serving {model} on http://{host}:{port} (docs at /docs){' with an API key' if api_key else ''}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
