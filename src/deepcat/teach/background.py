"""One pass of work over every input in a background thread (reading each file, or computing its features), so
the page opens at once on a folder of any size and shows how far the pass has gone.

A file the work fails on is recorded with the reason and the pass goes on: a corrupt file is listed, it never
stops the page. `ensure` does one file's work now, for the few inputs the page is about to show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BackgroundPass", "Progress"]

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """How far the background work has gone: `done` of `total` inputs, in words `stage`."""

    stage: str
    done: int
    total: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


class BackgroundPass(Generic[T]):
    """`work(path)` for every path, in order, in a daemon thread; results and failures by path.

    Example:
        >>> check = BackgroundPass(paths, kind.read, stage="checking files", keep=False)
        >>> check.progress().done, check.failures
    """

    def __init__(self, paths: Sequence[str], work: Callable[[str], T], *, stage: str, keep: bool = True):
        self.work, self.stage, self.keep = work, stage, keep
        self.results: dict[str, T | None] = {}  # path -> its result (None when `keep` is off)
        self.failures: dict[str, str] = {}  # path -> why the work failed on it
        self._paths = list(paths)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"deepcat {stage}", daemon=True)
        self._thread.start()

    def add(self, path: str) -> None:
        """A new input (a capture): done now, and counted."""
        with self._lock:
            self._paths.append(path)
        self.ensure(path)

    def ensure(self, path: str) -> bool:
        """Do `path`'s work now unless done; whether it succeeded."""
        with self._lock:
            if path in self.results or path in self.failures:
                return path in self.results
        try:
            result = self.work(path)
        except Exception as e:  # any failure is the file's, reported by name; the pass and the page go on
            with self._lock:
                self.failures[path] = str(e) or type(e).__name__
            return False
        with self._lock:
            self.results[path] = result if self.keep else None
        return True

    def progress(self) -> Progress:
        with self._lock:
            done = len(self.results) + len(self.failures)
            return Progress(self.stage, done, len(self._paths), len(self.failures))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            with self._lock:
                if i >= len(self._paths):
                    return
                path = self._paths[i]
            self.ensure(path)
            i += 1
