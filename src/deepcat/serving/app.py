"""The REST API: `create_app(model.onnx)` -> FastAPI application (run it with uvicorn).

    POST /v1/predict         one input, as multipart field `file` or as the raw body
    POST /v1/predict/batch   several inputs, multipart fields `files`
    GET  /v1/model           classes, input size, metadata, limits
    GET  /v1/monitor         the last answers against validation: class mix, confidence, unknown share, drift test,
                             estimated (and measured) accuracy, alarm with its reasons (`inference/monitor.py`)
    POST /v1/feedback        an answer's true label, {"id", "label"}: the measured accuracy (`feedback.py`)
    GET  /health, /ready     liveness, readiness
    GET  /metrics            Prometheus: requests, latency, batch sizes, errors by kind (503 "overloaded": shed),
                             the monitor's statistics and alarm
    GET  /                   a page that classifies in the browser (onnxruntime-web) or via this server

Request parsing and the API key are in `requests.py`; decoding is the model's input kind's (`errors.decode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from deepcat.inference.answers import as_json
from deepcat.inference.exported import ExportedClassifier, load_exported
from deepcat.inference.listen import Spotting
from deepcat.inference.monitor import WINDOW, Monitor, monitor_for
from deepcat.inference.runtimes import device_for
from deepcat.run_meta import Decision, ExportMeta
from deepcat.serving import requests
from deepcat.serving.admission import Admission
from deepcat.serving.batcher import MicroBatcher
from deepcat.serving.errors import RequestError, decode
from deepcat.serving.feedback import Answers, monitor_routes
from deepcat.serving.keep import Keeper
from deepcat.serving.layout import Layout, choose_layout, usable_cores
from deepcat.serving.limits import Limits
from deepcat.serving.metrics import Metrics
from deepcat.serving.params import COVERAGE, DEADLINE, TOP_K, openapi_parameters
from deepcat.serving.web_page import default_web_assets, page_routes

__all__ = ["Observe", "PlainRoute", "Served", "create_app"]


@dataclass
class Served:
    """One served model and what its routes share."""

    path: Path
    classifier: ExportedClassifier
    limits: Limits
    api_key: str | None
    threshold: float | None
    web_assets: Path
    layout: Layout
    metrics: Metrics = field(default_factory=Metrics)
    batcher: MicroBatcher | None = None
    keeper: Keeper | None = None  # `--keep DIR`: inputs worth a label are saved there
    monitor_window: int = WINDOW
    admission: Admission = field(init=False)
    monitor: Monitor = field(init=False)
    answers: Answers = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(budget_s=self.limits.max_queue_ms / 1000, depth=self.limits.queue_depth)
        self.monitor = monitor_for(
            self.meta.classes, self.meta.calibration_or_default, self.monitor_window, reject=self.threshold is not None
        )
        self.answers = Answers(self.meta.classes)

    @property
    def meta(self) -> ExportMeta:
        return self.classifier.meta

    async def classify(
        self, inputs: list[tuple[str, bytes]], top_k: int, coverage: float | None = None, within_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Batch with other requests (each input is decoded in its batch's worker thread), and answer each input;
        `within_s`: the client's deadline."""
        limit = self.set_limit(coverage)
        batcher = self.batcher
        if batcher is None:
            raise RuntimeError("the model server has not started (its lifespan starts the batcher)")
        prepares = [partial(decode, data, self.meta, limits=self.limits, name=name) for name, data in inputs]
        with self.admission.admit(len(inputs), within_s):
            if len(prepares) == 1:  # no gather: its task would cost a lone request another turn of the loop
                rows = [await batcher.submit(prepares[0], within_s)]
            else:
                rows = await asyncio.gather(*(batcher.submit(prepare, within_s) for prepare in prepares))
        answers = [
            as_json(
                name,
                row,
                score,
                classes=self.meta.classes,
                top_k=top_k,
                threshold=self.threshold,
                set_limit=limit,
                decision=self.meta.decision,
            )
            for (name, _), (row, score) in zip(inputs, rows)
        ]
        scores = None if rows[0][1] is None else np.array([score for _, score in rows], np.float32)
        self.monitor.observe(np.stack([row for row, _ in rows]), scores)
        for answer in answers:
            self.answers.remember(answer)
        if self.keeper is not None:
            suffix = min(self.meta.kind.suffixes)  # when the bytes do not say (keep.MAGIC)
            for (_, data), (row, _), answer in zip(inputs, rows, answers):
                self.keeper.consider(data, answer, row, suffix)
        return answers

    def set_limit(self, coverage: float | None) -> float | None:
        from deepcat.errors import DeepcatError

        try:
            return self.classifier.set_limit(coverage)
        except DeepcatError as e:
            raise RequestError(422, "invalid_parameter", f"coverage: {e}") from None

    def answer(self, results: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.meta.name, "version": self.meta.version, **results}


def create_app(
    model_path: str | Path,
    *,
    limits: Limits | None = None,
    api_key: str | None = None,
    web_assets: Path | None = None,
    reject: bool = True,
    device: str = "cpu",
    keep: Path | None = None,
    keep_mb: float = 500,
    monitor_window: int = WINDOW,
    decision: Path | None = None,
) -> FastAPI:
    """A FastAPI app serving one exported model on `device` (cpu, cuda or auto); preprocessing comes from the
    model's own metadata. With `reject`, inputs below the model's calibrated threshold are answered `unknown`;
    with `keep`, inputs worth a label are saved there (`keep.Keeper`, at most `keep_mb` MB); the monitor's
    statistics are over the last `monitor_window` answers; `decision` (a file) replaces the model's own
    thresholds and costs, in its answers and in /v1/model, which the page reads."""
    limits = limits or Limits()
    cores = usable_cores()
    device = device_for(Path(model_path), device)
    # on a CPU the model is timed on a one-thread session at batches up to 16, then dropped with the memory they
    # took; on a GPU one session serves every batch
    timed = load_exported(model_path, threads=1 if device == "cpu" else cores, device=device)
    layout = choose_layout(
        timed.infer, timed.input_shape, cores=cores, workers=limits.workers, max_batch=limits.max_batch, device=device
    )
    if device == "cuda":
        classifier = one_thread = timed
    else:
        del timed
        classifier, one_thread = load_exported(model_path, threads=cores), load_exported(model_path, threads=1)
    if decision is not None:
        given = Decision.read(decision, classes=classifier.classes)
        classifier.meta = dataclasses.replace(classifier.meta, decision=given)
    served = Served(
        Path(model_path),
        classifier,
        limits,
        api_key,
        classifier.threshold if reject else None,
        web_assets or default_web_assets(),
        layout,
        monitor_window=monitor_window,
    )
    if keep is not None:
        conformal = classifier.meta.calibration_or_default.conformal
        limit = classifier.set_limit(0.9) if conformal else None
        served.keeper = Keeper(Path(keep), int(keep_mb * 1e6), set_limit=limit)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served.batcher = MicroBatcher(
            one_thread.infer,
            infer_alone=classifier.infer,
            few=layout.cores,
            max_batch=layout.max_batch,
            max_wait=served.limits.max_wait_ms / 1000,
            workers=layout.workers,
            on_batch=served.metrics.batch_size.observe,
            admitted=lambda: served.admission.inside,
        )
        served.batcher.start()
        yield
        await served.batcher.stop()

    meta = served.meta
    app = FastAPI(
        title="deepcat",
        version=meta.deepcat_version,
        lifespan=lifespan,
        description=f"{meta.kind.name.capitalize()} classifier {meta.name}: {', '.join(meta.classes[:20])}",
    )
    served.metrics.watch(served.monitor)
    _observe(app, served.metrics)
    _prediction_routes(app, served)
    _info_routes(app, served)
    monitor_routes(app, served)
    page_routes(app, served)
    return app


DRAIN_BYTES = 1 << 20  # a refused body this small is read to its end before the answer
LINGER_BYTES = 128 << 20  # an oversize body up to this is read and discarded before its 413 (nginx's lingering close)
LINGER_S = 10.0  # for at most this long


async def _drain(request: Request, status: int) -> None:
    """Read and discard the rest of a refused body: closing a socket with unread bytes resets it, and the reset
    can destroy the answer on its way. A client that sends its whole body before it reads (Python's urllib) saw
    "connection reset by peer" instead of its 413; the soak test's clients saw ReadError on refusals decided from
    the headers. Bounded: DRAIN_BYTES for any refusal (a shedding server reads little), LINGER_BYTES within LINGER_S
    for a 413, and nothing for a client that asked `Expect: 100-continue` (it has sent nothing yet)."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return
    bound = LINGER_BYTES if status == 413 else DRAIN_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bound:
        return

    async def discard() -> None:
        read = 0
        async for chunk in request.stream():
            read += len(chunk)
            if read > bound:
                return

    try:
        await asyncio.wait_for(discard(), LINGER_S)
    except Exception:  # already read, the client went away, or past LINGER_S: nothing more to drain
        pass


def _observe(app: FastAPI, metrics: Metrics) -> None:
    """Every refusal as a JSON error, and every request counted and timed in /metrics."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        metrics.errors.labels(kind=exc.kind).inc()
        await _drain(request, exc.status)
        return JSONResponse({"error": exc.kind, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return await request_error(request, RequestError(422, "invalid_parameter", detail))

    app.add_middleware(Observe, metrics=metrics)


class Observe:
    """Counts and times every HTTP request for /metrics. Plain ASGI, not `@app.middleware("http")`: Starlette's
    BaseHTTPMiddleware wraps each request and response in extra tasks and streams, work a server shedding
    load past its capacity pays on every request and every refusal."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")  # set by the router once a route matched
            endpoint = route.path if route is not None else "unmatched"
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - started)


class PlainRoute(APIRoute):
    """A route whose endpoint takes the request and returns the response itself: documented in the OpenAPI page as
    any route, but run without FastAPI's request handler (parameter resolution, body validation, response
    serialisation), which the prediction routes do not use: they read their parameters (`params.py`) and body
    (`requests.py`) and build their JSON answer themselves. Skipping that handler made a lone client's requests
    faster (docs/design-notes.md, "Prediction routes without FastAPI's request handler")."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # an `async def (Request) -> Response`, as the prediction routes are


def _prediction_routes(app: FastAPI, served: Served) -> None:
    media_types = served.meta.kind.media_types
    refusals = requests.error_responses(400, 401, 413, 415, 422, 503)

    async def predict(request: Request) -> JSONResponse:
        requests.authorise(request, served.api_key)
        requests.check_headers(request, many=False, limits=served.limits, media_types=media_types)
        top_k, coverage, deadline_ms = TOP_K.read(request), COVERAGE.read(request), DEADLINE.read(request)
        within_s = None if deadline_ms is None else deadline_ms / 1000
        served.admission.check(1, within_s)  # past capacity, refuse before reading the body
        inputs = await requests.read_inputs(
            request, field="file", many=False, limits=served.limits, media_types=media_types
        )
        [result] = await served.classify(inputs, top_k, coverage, within_s)
        return JSONResponse(served.answer(result))

    async def predict_batch(request: Request) -> JSONResponse:
        requests.authorise(request, served.api_key)
        requests.check_headers(request, many=True, limits=served.limits, media_types=media_types)
        top_k, coverage = TOP_K.read(request), COVERAGE.read(request)
        inputs = await requests.read_inputs(
            request, field="files", many=True, limits=served.limits, media_types=media_types
        )
        return JSONResponse(served.answer({"predictions": await served.classify(inputs, top_k, coverage)}))

    app.router.add_api_route(
        "/v1/predict",
        predict,
        methods=["POST"],
        route_class_override=PlainRoute,
        openapi_extra={**requests.single_body(media_types), **openapi_parameters(TOP_K, COVERAGE, DEADLINE)},
        responses=refusals,
        summary="Classify one input",
    )
    app.router.add_api_route(
        "/v1/predict/batch",
        predict_batch,
        methods=["POST"],
        route_class_override=PlainRoute,
        openapi_extra={**requests.BATCH_BODY, **openapi_parameters(TOP_K, COVERAGE)},
        responses=refusals,
        summary="Classify several inputs",
    )


def _info_routes(app: FastAPI, served: Served) -> None:
    meta_kind = served.meta.kind.name

    @app.get("/v1/model", summary="Classes, preprocessing and limits", responses=requests.error_responses(401))
    async def model_info(request: Request) -> dict[str, Any]:
        requests.authorise(request, served.api_key)
        return {
            **served.meta.to_dict(),
            "threshold": served.threshold,
            "limits": served.limits.__dict__,
            "layout": {
                "cores": served.layout.cores,
                "workers": served.layout.workers,
                "max_batch": served.layout.max_batch,
                "device": served.layout.device,
            },
            "file": served.path.name,
            "bytes": served.path.stat().st_size,
            **({"spotting": dataclasses.asdict(Spotting())} if meta_kind == "audio" else {}),  # the page's microphone
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = served.batcher is not None
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        return Response(served.metrics.render(), media_type=served.metrics.content_type)
