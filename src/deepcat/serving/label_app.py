"""`deepcat label`'s server: `create_label_app(session)` -> FastAPI application over a `teach.LabelSession`.

    GET  /                  the labelling page (page/label.html)
    GET  /v1/state          the folder, its kind, the classes, how many inputs are labelled
    GET  /v1/next?count=N   the inputs to label next, with the model's pre-label and probability when it has one
    GET  /v1/input?path=P   an input's bytes; a path that is not one of DATA's inputs is a 404 (`..`, symlinks out)
    POST /v1/label          {"path", "label"}: label an input (a class, or `none_label`); 410 if it was deleted
    POST /v1/undo           {"path"}: undo this server's last label of that input (no path: its last label)
    POST /v1/classes        {"name"}: add a class
    POST /v1/bulk           {"alpha"}: accept every pre-label the model is sure enough of, at that error rate
    POST /v1/capture?label= a webcam frame (image/jpeg, image/png) or a clip (audio/wav), saved in DATA/<label>/
    GET  /v1/progress       the background pass: stage, done, total
    GET  /v1/corrupt        the unreadable inputs found so far, each with why

Every refusal is a JSON `{"error", "detail"}`, as the model server's (`errors.RequestError`); with an API key,
every route but the page itself needs it (`requests.authorise`). Without a key, only requests addressed to this
machine by a local name are answered (a web page elsewhere cannot reach DATA through DNS rebinding). The routes
that touch the disk are plain `def`s: FastAPI runs them in its thread pool, so a label's write never holds up the
event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from deepcat.errors import DeepcatError
from deepcat.serving import requests
from deepcat.serving.errors import RequestError
from deepcat.teach.labels import Change, InputGone, UndoConflict
from deepcat.teach.session import LabelSession, UnknownInput

__all__ = ["CAPTURE_SUFFIXES", "MAX_CAPTURE_BYTES", "create_label_app"]

PAGE = Path(__file__).parent / "page" / "label.html"
CAPTURE_SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png", "audio/wav": ".wav", "audio/x-wav": ".wav"}
MAX_CAPTURE_BYTES = 20_000_000  # a webcam frame is ~100 kB, a 2 s clip at 48 kHz ~200 kB


class LabelBody(BaseModel):
    path: str
    label: str


class UndoBody(BaseModel):
    path: str | None = None


class ClassBody(BaseModel):
    name: str


class BulkBody(BaseModel):
    alpha: float = 0.02


def create_label_app(session: LabelSession, *, api_key: str | None = None) -> FastAPI:
    """The labelling page and its API over `session`; `api_key`: required in X-API-Key by every /v1 route."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        session.close()

    app = FastAPI(title="deepcat label", lifespan=lifespan, description=f"Labelling {session.root}")
    if api_key is None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"])
    _errors(app)
    _routes(app, session, api_key)
    return app


def _errors(app: FastAPI) -> None:
    """The session's errors as HTTP answers: not an input 404, deleted 410, undo refused 409, the rest 422."""
    statuses = {UnknownInput: (404, "not_found"), InputGone: (410, "gone"), UndoConflict: (409, "conflict")}

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.kind, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return await request_error(request, RequestError(422, "invalid_parameter", detail))

    @app.exception_handler(DeepcatError)
    async def refused(request: Request, exc: DeepcatError) -> JSONResponse:
        status, kind = statuses.get(type(exc), (422, "refused"))
        return JSONResponse({"error": kind, "detail": str(exc)}, status_code=status)


def _change(change: Change) -> dict[str, Any]:
    return {"path": change.path, "label": change.label, "previous": change.previous}


def _routes(app: FastAPI, session: LabelSession, api_key: str | None) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE, headers={"cache-control": "no-store"})

    @app.get("/v1/state", summary="The folder, its classes and how many inputs are labelled")
    def state(request: Request) -> dict[str, Any]:
        requests.authorise(request, api_key)
        return session.summary()

    @app.get("/v1/next", summary="The inputs to label next")
    def next_inputs(request: Request, count: int = Query(10, ge=1, le=200)) -> dict[str, Any]:
        requests.authorise(request, api_key)
        items = session.next(count)
        return {"items": [{"path": i.path, "prelabel": i.prelabel, "probability": i.probability} for i in items]}

    @app.get("/v1/input", summary="One input's bytes", response_class=FileResponse)
    def input_file(request: Request, path: str) -> FileResponse:
        requests.authorise(request, api_key)
        return FileResponse(session.file(path), headers={"cache-control": "no-store"})

    @app.post("/v1/label", summary="Label an input")
    def label(request: Request, body: LabelBody) -> dict[str, Any]:
        requests.authorise(request, api_key)
        return _change(session.label(body.path, body.label))

    @app.post("/v1/undo", summary="Undo the last label (of one input)")
    def undo(request: Request, body: UndoBody) -> dict[str, Any]:
        requests.authorise(request, api_key)
        return _change(session.undo(body.path))

    @app.post("/v1/bulk", summary="Accept the pre-labels the model is sure enough of, at an error rate")
    def bulk(request: Request, body: BulkBody) -> dict[str, Any]:
        requests.authorise(request, api_key)
        changes, message = session.accept_in_bulk(body.alpha)
        return {"accepted": len(changes), "message": message}

    @app.post("/v1/classes", summary="Add a class")
    def add_class(request: Request, body: ClassBody) -> dict[str, Any]:
        requests.authorise(request, api_key)
        return {"classes": session.add_class(body.name)}

    @app.post("/v1/capture", summary="Save a webcam frame or a recorded clip as a new input of a class")
    async def capture(request: Request, label: str) -> dict[str, Any]:
        requests.authorise(request, api_key)
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media not in CAPTURE_SUFFIXES:
            raise RequestError(415, "unsupported_media_type", f"send {', '.join(CAPTURE_SUFFIXES)}; received {media!r}")
        data = await requests.read_body(request, MAX_CAPTURE_BYTES)
        if not data:
            raise RequestError(400, "empty", "the capture is empty")
        from starlette.concurrency import run_in_threadpool

        change = await run_in_threadpool(session.capture, label, bytes(data), CAPTURE_SUFFIXES[media])
        return _change(change)

    @app.get("/v1/progress", summary="How far the background pass over every input has gone")
    def progress(request: Request) -> dict[str, Any]:
        requests.authorise(request, api_key)
        p = session.progress()
        return {"stage": p.stage, "done": p.done, "total": p.total, "failed": p.failed, "finished": p.finished}

    @app.get("/v1/review", summary="Labels the model doubts, and near-duplicate inputs (null while searched)")
    def review(request: Request) -> dict[str, Any]:
        requests.authorise(request, api_key)
        return session.review()

    @app.get("/v1/corrupt", summary="The unreadable inputs found so far")
    def corrupt(request: Request) -> dict[str, Any]:
        requests.authorise(request, api_key)
        return {"corrupt": [{"path": path, "reason": why} for path, why in session.corrupt()]}
