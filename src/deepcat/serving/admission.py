"""Load shedding: past capacity, a request that would wait longer than the budget is refused at once with 503 and
`Retry-After`, instead of joining a queue that grows without end.

The wait is estimated by Little's law: the inputs already in the server divided by the rate at which it has
recently finished them, over the time it was busy (a server idle between bursts has not got slower). After a
quiet spell the last rate measured stands: a burst of 128 requests on a server idle for a few seconds was
otherwise all admitted, and its p99 reached 1.4 s against a 250 ms budget. An idle server, or one that has never
measured its rate (a cold start), admits every input.
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
        self.idle: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)  # (from, to), past
        self.idle_since: float | None = None
        self.last_rate: float | None = None

    def rate(self, now: float) -> float | None:
        """Inputs finished per busy second over the last RATE_WINDOW_S; when too few finished in it, the last rate
        measured (None before the first)."""
        while self.finished and self.finished[0] < now - RATE_WINDOW_S:
            self.finished.popleft()
        while self.idle and self.idle[0][1] < now - RATE_WINDOW_S:
            self.idle.popleft()
        if len(self.finished) < RATE_MIN_FINISHED:
            return self.last_rate
        start = self.finished[0]
        idle = sum(max(0.0, min(to, now) - max(since, start)) for since, to in self.idle)
        self.last_rate = len(self.finished) / max(now - start - idle, 1e-3)
        return self.last_rate

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
        if self.inside == 0 and self.idle_since is not None:
            self.idle.append((self.idle_since, now))
        self.inside += count
        try:
            yield
        finally:
            self.inside -= count
            done = time.monotonic()
            self.finished.extend([done] * count)
            if self.inside == 0:
                self.idle_since = done
