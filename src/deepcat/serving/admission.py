"""Load shedding: past capacity, a request that would wait longer than the budget is refused at once with 503 and
`Retry-After`, instead of joining a queue that grows without end.

A burst on a rested server is answered in full however fast the model is: what arrives within BURST_WINDOW_S (or
the budget, if longer) of the server leaving rest is admitted up to `depth` inputs whatever its wait (TorchServe's
default queue of 100). The allowance is for bursts, not for a queue that stands: once the window has passed, an
input whose wait would exceed the budget is refused at once, however few the server holds (else sustained load
keeps `depth` inputs waiting, whatever the budget). The server is rested when it is idle, or after a calm spell:
its wait under half the budget for a whole window, so a burst that lands on a server answering a few steady
clients is admitted too.

The wait is estimated by Little's law: the inputs already in the server divided by the rate at which it has
recently finished them. The rate is measured on a clock that runs only while the server holds inputs, so a
server idle between bursts has not got slower, and after an idle spell the last rate measured stands: a burst of
128 requests on a server idle for a few seconds was otherwise all admitted, and its p99 reached 1.4 s against a
250 ms budget. An idle server, or one that has never measured its rate (a cold start), admits every input.

Little's law gives the mean: an input admitted at the budget's edge waits longer about as often as shorter, and
the rate drifts while it waits. So the server adds to each estimate how much the estimates of its recent inputs
fell short (their ERROR_QUANTILE, over the last ERROR_WINDOW finished): what it admits at the edge is then
answered within the budget, however noisy the machine (without it, under sustained load the median answer took
about the budget and the p99 overshot it: docs/deploy/serve.md).

A client may shorten the budget for its own request with the header DEADLINE_HEADER (milliseconds): it is refused
at once when its wait would be longer, and dropped unanswered (503) if its deadline passes before its batch runs,
as Triton's per-request `timeout` does; it cannot lengthen the server's budget.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator

from deepcat.serving.errors import RequestError

__all__ = [
    "BURST_WINDOW_S",
    "DEADLINE_HEADER",
    "ERROR_QUANTILE",
    "ERROR_WINDOW",
    "RATE_MIN_FINISHED",
    "RATE_WINDOW_S",
    "RETRY_AFTER_S",
    "Admission",
]

RATE_WINDOW_S = 2.0  # the finishing rate is measured over the last 2 busy seconds...
RATE_MIN_FINISHED = 8  # ...and at least the last 8 finished inputs; before 8 have finished it is not known
RETRY_AFTER_S = 1
BURST_WINDOW_S = 1.0  # a burst is what arrives this soon after the server leaves rest
DEADLINE_HEADER = "X-Deadline-Ms"
ERROR_WINDOW = 512  # the estimate's error is measured over the last 512 finished inputs...
ERROR_QUANTILE = 0.95  # ...and this share of them waited at most the estimate plus the margin


class Admission:
    def __init__(self, *, budget_s: float, depth: int = 0, clock: Callable[[], float] = time.monotonic):
        self.budget_s, self.depth, self.clock = budget_s, depth, clock
        self.inside = 0
        self.busy_before = 0.0  # busy seconds before the current busy spell
        self.busy_since: float | None = None  # when the current busy spell began (None: idle)
        self.finished: collections.deque[float] = collections.deque(maxlen=4096)  # busy clock at each finish
        self.rested_at = clock()  # when the server last left rest: the burst allowance runs from here
        self.calm_since: float | None = None  # when the wait last fell under half the budget (None: not calm)
        self.shortfalls: collections.deque[float] = collections.deque(maxlen=ERROR_WINDOW)  # waited - estimated
        self.noted = 0  # shortfalls noted since the start
        self.margin = 0.0  # seconds added to each estimate: the shortfalls' ERROR_QUANTILE

    def window(self) -> float:
        """Seconds after leaving rest during which a burst is admitted past the budget."""
        return max(BURST_WINDOW_S, self.budget_s)

    def observe(self) -> None:
        """Note whether the server is rested: idle, or calm (its wait under half the budget) for a whole window."""
        now = self.clock()
        if self.inside == 0:
            self.rested_at, self.calm_since = now, None
        elif self.expected_wait(0) > self.budget_s / 2:
            self.calm_since = None
        elif self.calm_since is None:
            self.calm_since = now
        elif now - self.calm_since >= self.window():
            self.rested_at = now

    def bursting(self) -> bool:
        """Whether an input arriving now is part of a burst on a rested server (admitted up to `depth`)."""
        return self.clock() - self.rested_at <= self.window()

    def busy_seconds(self) -> float:
        """Seconds the server has held inputs since it started: the clock the finishing rate is measured on."""
        spell = self.clock() - self.busy_since if self.busy_since is not None else 0.0
        return self.busy_before + spell

    def rate(self) -> float | None:
        """Inputs finished per busy second lately (None before RATE_MIN_FINISHED have finished)."""
        now = self.busy_seconds()
        while len(self.finished) > RATE_MIN_FINISHED and self.finished[0] < now - RATE_WINDOW_S:
            self.finished.popleft()
        if len(self.finished) < RATE_MIN_FINISHED:
            return None
        return len(self.finished) / max(now - self.finished[0], 1e-3)

    def estimate(self, count: int) -> float | None:
        """Little's law: seconds to finish what the server holds and `count` more (None when it cannot tell)."""
        rate = self.rate()
        return None if rate is None else (self.inside + count) / rate

    def expected_wait(self, count: int) -> float:
        """The estimate plus its recent shortfall: a wait `count` more inputs rarely exceed (0 when unknown)."""
        estimate = self.estimate(count)
        return 0.0 if estimate is None else estimate + self.margin

    def note_shortfall(self, shortfall: float) -> None:
        """Note how much longer than estimated an input waited; the margin is recomputed every 32 (a sort)."""
        self.shortfalls.append(shortfall)
        self.noted += 1
        if self.noted % 32 == 0:
            ordered = sorted(self.shortfalls)
            self.margin = max(0.0, ordered[int(ERROR_QUANTILE * (len(ordered) - 1))])

    def check(self, count: int, deadline_s: float | None = None) -> None:
        """Refuse `count` more inputs with 503 when their wait would exceed the client's deadline, or the budget
        (but for a burst on a rested server, up to `depth` inputs). Called before a request's body is read too, so
        that past capacity a refusal costs little."""
        self.observe()
        if self.inside == 0:
            return
        wait = self.expected_wait(count)
        if deadline_s is not None and wait > deadline_s:
            self.refuse(wait, f"your {DEADLINE_HEADER} of {deadline_s * 1000:.0f} ms")
        burst = self.bursting() and self.inside + count <= self.depth
        if 0 < self.budget_s < wait and not burst:
            self.refuse(wait, f"its {self.budget_s * 1000:.0f} ms budget")

    @staticmethod
    def refuse(wait: float, over: str) -> None:
        raise RequestError(
            503,
            "overloaded",
            f"the server is at capacity: the wait would be about {wait * 1000:.0f} ms, over {over}; retry "
            f"after {RETRY_AFTER_S} s",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @contextlib.contextmanager
    def admit(self, count: int, deadline_s: float | None = None) -> Iterator[None]:
        """Hold `count` inputs inside the server, or refuse them with 503 when their wait would exceed the budget."""
        self.check(count, deadline_s)
        estimate, entered = self.estimate(count), self.clock()
        if self.inside == 0:
            self.busy_since = entered
        self.inside += count
        try:
            yield
        finally:
            if estimate is not None:
                self.note_shortfall(self.clock() - entered - estimate)
            self.inside -= count
            busy = self.busy_seconds()
            self.finished.extend([busy] * count)
            if self.inside == 0:
                self.busy_before, self.busy_since = busy, None
            self.observe()
