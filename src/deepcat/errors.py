"""The one exception type users see: what was wrong and how to fix it, in a line.

The CLI prints a `DeepcatError` as one line and exits with status 2; any other
exception is a bug in deepcat and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["DeepcatError", "did_you_mean"]


class DeepcatError(Exception):
    """Bad input from the user (a path, a name, a value); the message says the fix."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean: a, b?' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""
