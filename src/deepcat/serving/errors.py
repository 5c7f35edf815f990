"""Bad input is a 4xx with a JSON body that says what was wrong; it never reaches inference."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepcat.inputs import BadInput
from deepcat.run_meta import ExportMeta

__all__ = ["RequestError", "decode"]


class RequestError(Exception):
    """A client error: HTTP status, a short machine-readable kind and a sentence for people."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers


def decode(data: bytes, meta: ExportMeta, *, limits: Any, name: str = "input") -> np.ndarray:
    """Request bytes -> the model's raw input, by the model's input kind; refuses empty, oversized (bytes, and the
    kind's own limit: pixels, seconds), bomb, unreadable and truncated input as a RequestError."""
    max_bytes = limits.max_bytes
    if len(data) > max_bytes:
        raise RequestError(413, "too_many_bytes", f"{name}: {len(data)} bytes is over the limit of {max_bytes}")
    kind, pre = meta.kind, meta.preprocess
    try:
        return kind.to_model_input(kind.decode_bytes(data, name, getattr(limits, kind.size_limit), pre), pre)
    except BadInput as e:
        raise RequestError(e.status, e.reason, str(e)) from None
