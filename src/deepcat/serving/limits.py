"""What one server accepts and how it batches: one dataclass, the `deepcat serve` flags are generated from it.

How much waiting the server admits follows the serving systems people use, which bound the queue, not the wait,
or not at all: TorchServe refuses past 100 queued jobs (`job_queue_size`), Ray Serve queues without limit
(`max_queued_requests=-1`) and Triton has no queue timeout unless one is configured. deepcat bounds the wait
(`max_queue_ms`, 1 s) and lets a burst through: a burst on a rested server is admitted up to 100 inputs
(`queue_depth`) whatever their wait, so a burst of 96 is answered in full on any CPU (a 250 ms budget alone
refused 66 of one that EfficientNet-Lite0 int8 answered in about 0.4 s on 2 cores), while a queue that stands
past the burst is held to the budget (`admission.py`; measured in `benchmarks/shedding.py`)."""

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
    max_batch: int = _opt(0, "largest micro-batch (0: measured at start, the largest size near the cheapest per input)")
    workers: int = _opt(
        0,
        "micro-batches run at once under load, one core each (0: one more than the cores); a batch running "
        "alone uses every core",
    )
    max_wait_ms: float = _opt(5.0, "longest a request waits for its micro-batch to fill, in ms")
    queue_depth: int = _opt(
        100,
        "inputs of a burst on a rested server admitted whatever their wait (a burst this large is answered in full)",
    )
    max_queue_ms: float = _opt(
        1000.0,
        "refuse a request with 503 and Retry-After when its expected wait is over this, in ms, but for a burst "
        "on a rested server up to queue_depth "
        "(0: never refuse; a client may ask for less with the X-Deadline-Ms header)",
    )
