"""What a request carries, checked before any work: the API key, and the inputs in a multipart form or a raw body.

The OpenAPI document says the same: a multipart body must hold its file field, a raw body is an input of the
model's kind, and every refusal is a JSON error (`ErrorBody`).
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from deepcat.serving.errors import RequestError
from deepcat.serving.limits import Limits

__all__ = [
    "BATCH_BODY",
    "BINARY",
    "ERROR_SCHEMA",
    "MULTIPART_OVERHEAD",
    "authorise",
    "check_headers",
    "error_responses",
    "read_inputs",
    "read_body",
    "single_body",
]

BINARY = {"type": "string", "format": "binary"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals (4xx, 503) a route gives, each a JSON `{"error", "detail"}` body."""
    return {
        status: {"description": "refused", "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status in statuses
    }


def single_body(media_types: tuple[str, ...]) -> dict[str, Any]:
    """The request body of /v1/predict: multipart field `file`, or the raw bytes of one input."""
    raw = {f"{m}*" if m.endswith("/") else m: {"schema": BINARY} for m in media_types}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": {"file": BINARY}}
                },
                "application/octet-stream": {"schema": BINARY},
                **raw,
            },
        }
    }


BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "minItems": 1, "items": BINARY}},
                }
            }
        },
    }
}


def authorise(request: Request, api_key: str | None) -> None:
    """With a key set, every request but /health, /ready, /metrics and the page's own files must carry it."""
    if api_key is None:
        return
    given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if not secrets.compare_digest(given.encode(), api_key.encode()):
        raise RequestError(401, "unauthorised", "missing or wrong API key: send it as the X-API-Key header")


MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers a multipart body may add to its files' bytes


def check_headers(request: Request, *, many: bool, limits: Limits, media_types: tuple[str, ...]) -> None:
    """What the headers alone decide: the content type, and a declared length that is too large or (a raw body)
    empty. It runs before admission, so a malformed request gets its 4xx under any load, never a 503."""
    content_type = request.headers.get("content-type", "")
    multipart = content_type.startswith("multipart/form-data")
    if many and not multipart:
        raise RequestError(415, "unsupported_media_type", "send the inputs as multipart/form-data fields 'files'")
    if content_type and not multipart and not content_type.startswith((*media_types, "application/octet-stream")):
        raise RequestError(
            415,
            "unsupported_media_type",
            f"content type {content_type!r}: send "
            f"{', '.join(m + '*' for m in media_types)} or application/octet-stream, "
            f"or multipart/form-data",
        )
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return
    files = limits.max_files if many else 1
    allowed = files * limits.max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    if int(declared) > allowed:
        raise RequestError(413, "too_many_bytes", f"body of {declared} bytes is over the limit of {allowed} bytes")
    if int(declared) == 0:
        raise RequestError(400, "empty_body", "the request has no body: send the input's bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past `limit` bytes, declared or read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "too_many_bytes", f"body of {declared} bytes is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, "too_many_bytes", f"body is over the limit of {limit} bytes")
    return bytes(body)


async def read_inputs(
    request: Request, *, field: str, many: bool, limits: Limits, media_types: tuple[str, ...]
) -> list[tuple[str, bytes]]:
    """(name, bytes) of each input: multipart fields `field`, or (one input) the raw body. `check_headers` has
    passed."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _read_form(request, field=field, many=many, limits=limits)
    return [("body", await read_body(request, limits.max_bytes))]


async def _read_form(request: Request, *, field: str, many: bool, limits: Limits) -> list[tuple[str, bytes]]:
    try:
        form = await request.form(max_files=limits.max_files + 1)
    except (HTTPException, MultiPartException) as e:  # Starlette's own 400 has no "error" field: ours has
        reason = e.detail if isinstance(e, HTTPException) else e.message
        raise RequestError(
            400, "invalid_multipart", f"the multipart body cannot be read ({reason}): send fields named {field!r}"
        ) from None
    uploads = [u for u in form.getlist(field) if hasattr(u, "read")]
    if not uploads:
        raise RequestError(400, "empty_body", f"multipart body has no file field named {field!r}")
    if len(uploads) > (limits.max_files if many else 1):
        raise RequestError(
            413,
            "batch_too_large",
            f"{len(uploads)} files; the limit is {limits.max_files if many else 1} (use /v1/predict/batch for several)",
        )
    return [
        (getattr(u, "filename", None) or f"file{i}", await u.read(limits.max_bytes + 1)) for i, u in enumerate(uploads)
    ]
