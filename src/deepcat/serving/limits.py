"""What one server accepts and how it batches: one dataclass, the `deepcat serve` flags are generated from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deepcat.inputs.audio import MAX_SECONDS
from deepcat.inputs.image import MAX_PIXELS

__all__ = ["Limits"]


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class Limits:
    max_bytes: int = _opt(10_000_000, "largest upload, in bytes")
    max_pixels: int = _opt(MAX_PIXELS, "largest image, in pixels, refused before decoding")
    max_seconds: int = _opt(MAX_SECONDS, "longest sound clip, in seconds, refused before decoding")
    max_files: int = _opt(64, "most images in one batch request")
    max_batch: int = _opt(4, "largest micro-batch (on a CPU a bigger batch does not make an input cheaper)")
    workers: int = _opt(
        3,
        "micro-batches run at once, each with CPU cores / workers ONNX Runtime threads "
        "(1: the lowest latency for a lone request; 3: the most requests/s under load on 2 cores)",
    )
    max_wait_ms: float = _opt(5.0, "longest a request waits for its micro-batch to fill, in ms")
    max_queue_ms: float = _opt(
        250.0,
        "past capacity, refuse a request with 503 and Retry-After when its expected "
        "wait is over this, in ms (0: never refuse)",
    )
