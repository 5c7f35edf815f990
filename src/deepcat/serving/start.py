"""`deepcat serve`'s start: which file to serve (a run's checked export, an exported file, or the pretrained
model), refused early when the server cannot run it, then uvicorn until interrupted.

An idle keep-alive connection stays open KEEP_ALIVE_S, longer than a client keeps it: a server that closes it
first can close it as the client sends the next request on it, and that request fails with no answer (a POST is
not retried). uvicorn's own 5 s equals httpx's, and under the soak test's load some of its 32 pooled connections
idle that long: CI runs failed on a ReadError now and then (with both sides at 0.3 s, 2-4 requests in 20 s of
that load; none with the server at 5 s). Clients and load balancers (httpx 5 s, nginx's upstream 60 s, AWS ALB
60 s) close first, and stop using the connection when they do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from deepcat.errors import DeepcatError
from deepcat.run_folder import DECISION_FILE, model_source
from deepcat.serving.limits import Limits

__all__ = ["KEEP_ALIVE_S", "UVICORN_OPTIONS", "run_server"]

KEEP_ALIVE_S = 75  # nginx's keepalive_timeout default: past the 60 s idle timeout of common load balancers
UVICORN_OPTIONS: dict[str, Any] = {"log_level": "warning", "timeout_keep_alive": KEEP_ALIVE_S}  # the tests' too


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
    keep: Path | None = None,
    keep_mb: float = 500,
    monitor_window: int = 500,
    decision: Path | None = None,
) -> None:
    """Serve `model` (see `deepcat.serve`) on `host`:`port` until interrupted."""
    import uvicorn

    from deepcat.inference.runtimes import resolve_device, runtime_for
    from deepcat.serving.app import create_app
    from deepcat.serving.memory import return_large_buffers
    from deepcat.serving.model_file import serving_model

    if model is None or model_source(model) == "run":
        device = resolve_device(device)
        own = None if model is None else Path(model) / DECISION_FILE
        decision = decision or (own if own is not None and own.is_file() else None)  # newer than its export, maybe
        model = serving_model(model, precision, device)
    elif not (model_source(model) == "exported" and Path(model).is_file()):
        raise DeepcatError(f"{model} is neither a run folder nor an exported file that exists (.onnx, .ort, .xml)")
    elif not runtime_for(Path(model)).serves:
        raise DeepcatError(
            f"{model}: {runtime_for(Path(model)).name} files are for apps; serve the run or its .onnx or .xml export"
        )
    api_key = api_key or os.environ.get("DEEPCAT_API_KEY")
    return_large_buffers()
    app = create_app(
        Path(model),
        limits=limits,
        api_key=api_key,
        reject=reject,
        device=device,
        keep=keep,
        keep_mb=keep_mb,
        monitor_window=monitor_window,
        decision=decision,
    )
    kept = f"; inputs worth a label kept in {keep} (then: deepcat label {keep})" if keep else ""
    print(
        f"serving {model} on http://{host}:{port} (docs at /docs){' with an API key' if api_key else ''}{kept}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=host, port=port, **UVICORN_OPTIONS)
