"""The page `deepcat serve` answers at `/`: its HTML, the model file it runs in the browser (behind the API key
when one is set) and onnxruntime-web's files, served by deepcat itself (no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse

from deepcat.serving import requests
from deepcat.serving.errors import RequestError

if TYPE_CHECKING:
    from deepcat.serving.app import Served

__all__ = ["PAGE", "default_web_assets", "page_routes"]

PAGE = Path(__file__).parent / "page"


def default_web_assets() -> Path:
    """onnxruntime-web's files: inside the installed package (a wheel ships them), else from
    `npm ci --prefix web` in a checkout of deepcat."""
    packaged = PAGE / "ort"
    if (packaged / "ort.min.js").is_file():
        return packaged
    return Path(__file__).resolve().parents[3] / "web" / "node_modules" / "onnxruntime-web" / "dist"


def page_routes(app: FastAPI, served: Served) -> None:
    """The page, the model file it runs in the browser (behind the API key when one is set), and onnxruntime-web."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/model.onnx", include_in_schema=False)
    async def model_file(request: Request) -> FileResponse:
        requests.authorise(request, served.api_key)
        return FileResponse(served.path, media_type="application/octet-stream")

    @app.get("/ort/{name}", include_in_schema=False)
    async def ort_web(name: str) -> FileResponse:
        assets = served.web_assets
        path = (assets / name).resolve()
        if path.parent != assets.resolve() or not path.is_file():
            raise RequestError(404, "not_found", f"{name}: onnxruntime-web file not found (npm ci --prefix web)")
        media = "application/wasm" if name.endswith(".wasm") else "text/javascript"
        return FileResponse(path, media_type=media)
