"""Load shedding: past capacity, a request that would wait longer than the budget is refused at once with 503 and
`Retry-After`, instead of joining a queue that grows without end.

The wait is estimated by Little's law: the inputs already in the server divided by the rate at which it has
recently finished them. An idle server, or one whose rate is not known yet (a cold start), admits every
input.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator

from deepcat.serving.errors import RequestError

RATE_WINDOW_S = 2.0  # the finishing rate is measured over the last 2 seconds
RATE_MIN_FINISHED = 8  # fewer finished inputs in that window: the rate is not known yet
RETRY_AFTER_S = 1


class Admission:
    def __init__(self, *, budget_s: float):
        self.budget_s = budget_s
        self.inside = 0
        self.finished: collections.deque[float] = collections.deque(maxlen=4096)

    def rate(self, now: float) -> float | None:
        """Inputs finished per second over the last RATE_WINDOW_S, or None while too few have finished."""
        while self.finished and self.finished[0] < now - RATE_WINDOW_S:
            self.finished.popleft()
        if len(self.finished) < RATE_MIN_FINISHED:
            return None
        return len(self.finished) / max(now - self.finished[0], 1e-3)

    def expected_wait(self, count: int, now: float) -> float:
        """Seconds the server needs to finish what it holds and `count` more inputs (0 when it cannot tell)."""
        rate = self.rate(now)
        return 0.0 if rate is None else (self.inside + count) / rate

    @contextlib.contextmanager
    def admit(self, count: int) -> Iterator[None]:
        """Hold `count` inputs inside the server, or refuse them with 503 when their wait would exceed the budget."""
        now = time.monotonic()
        if self.budget_s > 0 and self.inside > 0:
            wait = self.expected_wait(count, now)
            if wait > self.budget_s:
                raise RequestError(503, "overloaded", f"the server is at capacity: the wait would be about "
                                   f"{wait * 1000:.0f} ms, over its {self.budget_s * 1000:.0f} ms budget; retry "
                                   f"after {RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)})
        self.inside += count
        try:
            yield
        finally:
            self.inside -= count
            done = time.monotonic()
            self.finished.extend([done] * count)
