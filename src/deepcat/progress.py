"""Progress bars that suit where stderr goes: a live bar on a terminal, plain lines in a log.

tqdm redraws its bar with a carriage return on every update; written to a file (`deepcat train ... 2> train.log`)
each redraw stays, and a log holds thousands of frames. When stderr is not a terminal, `progress_bar` writes a
plain line instead: one when the bar finishes (an epoch, a prediction pass) and, for a long one, one every
LINE_EVERY_S in between, so a log says how far it got without growing by a frame an update. Short passes a
terminal clears once done (`leave=False`: validation, features) leave no line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import IO, Any, TypeVar

__all__ = ["LINE_EVERY_S", "LineProgress", "is_terminal", "progress_bar"]

T = TypeVar("T")

LINE_EVERY_S = 30.0  # in a log, a line at most this often while a bar runs (and one when it ends)


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether `stream` (default: stderr) is a terminal, where a redrawn bar reads as one line."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LineProgress:
    """A progress bar for a log: tqdm's text of the bar (count, rate, postfix) written as whole lines, at most one
    every `every` seconds and one when it closes; never a carriage return. A bar a terminal would not `leave` (an
    evaluation pass inside an epoch) writes its last line only when it ran long enough to write one before."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        leave: bool = True,
        stream: IO[str] | None = None,
        every: float = LINE_EVERY_S,
    ):
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream = sys.stderr if stream is None else stream
        self.leave, self.every, self.n, self.postfix, self.lines = leave, every, 0, "", 0
        self.shown: int | None = None  # the count the last line showed
        self.started = self.last_line = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in () if self.iterable is None else self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last_line >= self.every:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if (self.leave or self.lines) and self.shown != self.n:  # no line that repeats the last one
                self._line()

    def _line(self) -> None:
        from tqdm import tqdm

        self.last_line = time.monotonic()
        text = tqdm.format_meter(
            self.n,
            self.total,
            self.last_line - self.started,
            prefix=self.desc,
            unit=self.unit,
            postfix=self.postfix or None,
            bar_format="{desc}: {percentage:3.0f}% ({n_fmt}/{total_fmt}) [{elapsed}, {rate_fmt}{postfix}]"
            if self.total
            else "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )
        self.stream.write(text + "\n")
        self.lines, self.shown = self.lines + 1, self.n
        self.stream.flush()


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
) -> Any:
    """A progress bar on stderr: tqdm's live bar on a terminal, `LineProgress` lines when stderr is a file or a
    pipe, nothing when not `enabled`. Iterate it (given `iterable`) or call `update`, `set_postfix` and `close`.

    Args:
        iterable: what to iterate, counted as it goes; or None, and `update(n)` counts.
        total: how many steps make 100% (default: `len(iterable)` when it has one).
        desc: the bar's label, e.g. "epoch 3/10". unit: what a step is ("input", "file").
        enabled: False gives a bar that shows nothing. leave: keep a terminal bar once it ends.

    Returns:
        A bar with tqdm's `update`, `set_postfix` and `close` (and iteration when given `iterable`).

    >>> for batch in progress_bar(loader, desc="predict"): ...
    """
    from tqdm import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, leave=leave)
