"""`deepcat serve`: the REST API and web page for a model, until interrupted."""

from __future__ import annotations

from pathlib import Path

from deepcat.serving.limits import Limits

__all__ = ["serve"]


def serve(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    reject: bool = True,
    precision: str = "auto",
    device: str = "auto",
    limits: Limits | None = None,
    keep: str | Path | None = None,
    keep_mb: float = 500,
    monitor_window: int = 500,
    decision: str | Path | None = None,
) -> None:
    """Serve a run (exported to ONNX on first use), an exported file (.onnx, .ort, .xml), or the pretrained
    cat / dog / neither model: the REST API and the web page, until interrupted.

    Args:
        model: a run folder or an exported file (neither: the pretrained cat / dog / neither model).
        host: the address to listen on (0.0.0.0: every interface).
        port: the port to listen on.
        api_key: require this key in X-API-Key (default: $DEEPCAT_API_KEY, else none).
        reject: answer `unknown` below the model's threshold (off: never).
        precision: auto, fp32 or int8. For a run, auto serves its int8 export when that passed its check (`deepcat
            export RUN --format onnx-int8`), else fp32; on a GPU, fp32.
        device: auto, cpu or cuda. Auto: a CUDA GPU where ONNX Runtime has its CUDA provider (pip install
            onnxruntime-gpu), else the CPU.
        limits: the server's `Limits` (upload sizes, micro-batching, admission).
        keep: a folder to keep the inputs worth a label in (answered unknown, with a probability under 0.6, or a
            90% set of several classes), each with its answer in kept.csv; then `deepcat label KEEP`. Off by default:
            nothing is kept without it.
        keep_mb: the most the keep folder holds, in MB; past it the oldest kept inputs are deleted first.
        monitor_window: the answers `/v1/monitor` and the page's monitor panel are about: the last this many,
            compared with the validation split's (drift test, accuracy estimate, alarm).
        decision: a decision file (JSON: per-class least probabilities, a cost matrix; docs/deploy/serve.md) the
            server and its page answer by, instead of the model's own (a run's decision.json, an export's metadata).

    Returns:
        Nothing; it serves until interrupted.

    Examples:
        >>> deepcat.serve("runs/pets", port=8080, limits=Limits(max_batch=16))
    """
    from deepcat.serving.start import run_server

    run_server(
        model,
        host=host,
        port=port,
        api_key=api_key,
        reject=reject,
        precision=precision,
        device=device,
        limits=limits or Limits(),
        keep=Path(keep) if keep else None,
        keep_mb=keep_mb,
        monitor_window=monitor_window,
        decision=Path(decision) if decision else None,
    )
