"""`deepcat report`: (re)write a run's report.html."""

from __future__ import annotations

from pathlib import Path

__all__ = ["report"]


def report(run: str | Path) -> Path:
    """(Re)write RUN/report.html from the run folder's files.

    Args:
        run: a run folder.

    Returns:
        The report's path.
    """
    from deepcat.evaluation.finish import write_report

    return write_report(run)
