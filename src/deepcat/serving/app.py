"""The REST API: `create_app(model.onnx)` -> FastAPI application (run it with uvicorn).

    POST /v1/predict         one image, as multipart field `file` or as the raw body
    POST /v1/predict/batch   several images, multipart fields `files`
    GET  /v1/model           classes, input size, metadata, limits
    GET  /health, /ready     liveness, readiness
    GET  /metrics            Prometheus: requests, latency, batch sizes, errors by kind
    GET  /                   a page that classifies in the browser (onnxruntime-web) or via this server
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from deepcat.inference.answers import decide
from deepcat.inference.onnx_model import load_onnx
from deepcat.serving.batcher import MicroBatcher
from deepcat.serving.errors import RequestError, decode
from deepcat.serving.limits import Limits
from deepcat.serving.metrics import Metrics

PAGE = Path(__file__).parent / "page"
IMAGE_BODY = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}
BATCH_BODY = {"requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


def default_web_assets() -> Path:
    """onnxruntime-web's files, installed by `npm ci --prefix web` in a checkout of deepcat."""
    return Path(__file__).resolve().parents[3] / "web" / "node_modules" / "onnxruntime-web" / "dist"


def create_app(model_path: str | Path, *, limits: Limits | None = None, api_key: str | None = None,
               web_assets: Path | None = None, reject: bool = True) -> FastAPI:
    """A FastAPI app serving one exported model; preprocessing comes from the model's own metadata.
    With `reject`, images below the model's calibrated threshold are answered `unknown`."""
    limits = limits or Limits()
    model_path = Path(model_path)
    classifier = load_onnx(model_path)
    meta = classifier.meta
    threshold = classifier.threshold if reject else None
    metrics = Metrics()
    web_assets = web_assets or default_web_assets()
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = MicroBatcher(classifier.infer, max_batch=limits.max_batch,
                               max_wait=limits.max_wait_ms / 1000, on_batch=metrics.batch_size.observe)
        batcher.start()
        state["batcher"] = batcher
        yield
        await batcher.stop()

    app = FastAPI(title="deepcat", version=str(meta.get("deepcat_version", "")), lifespan=lifespan,
                  description=f"Image classifier {meta['name']}: {', '.join(meta['classes'][:20])}")

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        metrics.errors.labels(kind=exc.kind).inc()
        return JSONResponse({"error": exc.kind, "detail": exc.detail}, status_code=exc.status)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        endpoint = request.scope.get("route").path if request.scope.get("route") else "unmatched"
        metrics.requests.labels(endpoint=endpoint, status=str(response.status_code)).inc()
        metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - started)
        return response

    def authorise(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise RequestError(401, "unauthorised", "missing or wrong API key: send it as the X-API-Key header")

    async def classify(images: list[tuple[str, bytes]], top_k: int) -> list[dict[str, Any]]:
        prepared = await asyncio.to_thread(  # decoding stays off the event loop
            lambda: [decode(data, meta, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels, name=name)
                     for name, data in images])
        rows = await asyncio.gather(*(state["batcher"].submit(p) for p in prepared))
        results = []
        for (name, _), (row, score) in zip(images, rows):
            answer = decide(row, meta["classes"], top_k=top_k, score=score, threshold=threshold)
            answer["top"] = [{"label": label, "probability": p} for label, p in answer["top"]]
            results.append({"source": name, **answer})
        return results

    async def read_images(request: Request, *, field: str, many: bool) -> list[tuple[str, bytes]]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_files=limits.max_files + 1)
            uploads = [u for u in form.getlist(field) if hasattr(u, "read")]
            if not uploads:
                raise RequestError(400, "empty_body", f"multipart body has no file field named {field!r}")
            if len(uploads) > (limits.max_files if many else 1):
                raise RequestError(413, "batch_too_large", f"{len(uploads)} files; the limit is "
                                   f"{limits.max_files if many else 1} (use /v1/predict/batch for several)")
            return [(u.filename or f"file{i}", await u.read(limits.max_bytes + 1)) for i, u in enumerate(uploads)]
        if many:
            raise RequestError(415, "unsupported_media_type", "send the images as multipart/form-data fields 'files'")
        if content_type and not content_type.startswith(("image/", "application/octet-stream")):
            raise RequestError(415, "unsupported_media_type", f"content type {content_type!r}: send an image "
                               f"(image/*, application/octet-stream) or multipart/form-data")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_bytes:
                raise RequestError(413, "too_many_bytes", f"body is over the limit of {limits.max_bytes} bytes")
        return [("body", bytes(body))]

    def answer(results: Any) -> dict[str, Any]:
        return {"model": meta["name"], "version": meta.get("version"), **results}

    @app.post("/v1/predict", openapi_extra=IMAGE_BODY, summary="Classify one image")
    async def predict(request: Request, top_k: int = 5) -> dict[str, Any]:
        authorise(request)
        [result] = await classify(await read_images(request, field="file", many=False), top_k)
        return answer(result)

    @app.post("/v1/predict/batch", openapi_extra=BATCH_BODY, summary="Classify several images")
    async def predict_batch(request: Request, top_k: int = 5) -> dict[str, Any]:
        authorise(request)
        return answer({"predictions": await classify(await read_images(request, field="files", many=True), top_k)})

    @app.get("/v1/model", summary="Classes, preprocessing and limits")
    async def model_info(request: Request) -> dict[str, Any]:
        authorise(request)
        return {**meta, "threshold": threshold, "limits": limits.__dict__, "file": model_path.name,
                "bytes": model_path.stat().st_size}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = "batcher" in state
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/model.onnx", include_in_schema=False)
    async def model_file() -> FileResponse:
        return FileResponse(model_path, media_type="application/octet-stream")

    @app.get("/ort/{name}", include_in_schema=False)
    async def ort_web(name: str) -> FileResponse:
        path = (web_assets / name).resolve()
        if path.parent != web_assets.resolve() or not path.is_file():
            raise RequestError(404, "not_found", f"{name}: onnxruntime-web file not found (npm ci --prefix web)")
        media = "application/wasm" if name.endswith(".wasm") else "text/javascript"
        return FileResponse(path, media_type=media)

    return app
