"""labels.csv, written as labelling goes: the `path,label` CSV `deepcat train` reads (`data.sources.from_csv`),
paths relative to the CSV.

Each label rewrites the whole file: a temporary file beside it, flushed to the disk, then `os.replace`, which
swaps the name in one step; a server killed at any moment leaves the old file or the new one, never half of one.
The rewrite happens under a lock, a thread lock within the process and an `fcntl` lock on `.labels.csv.lock`
between processes, and it reads the file afresh inside the lock: two tabs, or two servers, labelling the same
folder each add their label to the other's.

What the file holds: every labelled input, the ones a class folder labels included (so `deepcat train
DATA/labels.csv` trains on all of them); "none of these" as `NONE_OF_THESE`, which training leaves out; the
columns a CSV given as DATA had besides path and label (`split`), kept as they were.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deepcat.data.sources import NONE_OF_THESE
from deepcat.errors import DeepcatError

__all__ = ["NONE_OF_THESE", "Change", "InputGone", "LabelStore", "UndoConflict", "write_atomically"]


class InputGone(DeepcatError):
    """A label for a file that is no longer there: reported, not written."""


class UndoConflict(DeepcatError):
    """Nothing to undo, or the label was changed since (another tab): the undo is refused, nothing is written."""


@dataclass(frozen=True)
class Change:
    """One label written: the input, its label now and before (None: no label)."""

    path: str
    label: str | None
    previous: str | None


def write_atomically(path: Path, data: str | bytes) -> None:
    """Replace `path` by `data` (text as UTF-8) in one step: write a temporary file in the same folder
    (`os.replace` is atomic only within a file system), fsync it, rename it over `path`, fsync the folder so the
    rename is on disk too."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class LabelStore:
    """The labels of the inputs under `root`, kept in `csv_path` (DATA/labels.csv). `folder_labels`: what class
    folders say, overridden by the CSV's rows.

    Example:
        >>> store = LabelStore(Path("photos/labels.csv"), Path("photos"))
        >>> store.set("IMG_0001.jpg", "cat")
        Change(path='IMG_0001.jpg', label='cat', previous=None)
    """

    def __init__(self, csv_path: Path, root: Path, folder_labels: Mapping[str, str] | None = None):
        self.csv, self.root = csv_path, root
        self.folder_labels = dict(folder_labels or {})
        self._lock = threading.Lock()
        self._history: list[Change] = []
        self._columns: list[str] = ["path", "label"]
        self._rows: dict[str, dict[str, str]] = {}
        self._seen: tuple[int, int, int] | None = None  # the file read last: inode, size, mtime
        with self._locked():
            for stale in self.csv.parent.glob(f".{self.csv.name}.*.tmp"):  # a write killed before its rename;
                stale.unlink(missing_ok=True)  # every write holds the lock, so none is under way now

    def labels(self) -> dict[str, str]:
        """Path -> label (`NONE_OF_THESE` included), read again when another process wrote the file."""
        with self._lock:
            if self._stamp() != self._seen:
                with self._file_lock():
                    self._read()
            return self._labels()

    def set(self, path: str, label: str | None) -> Change:
        """Label `path` (None: remove its label) and write the file; an `InputGone` when the file was deleted."""
        if label is not None and not (self.root / path).is_file():
            raise InputGone(f"{self.root / path} is no longer there; its label {label!r} was not written")
        with self._locked():
            change = self._write(path, label)
            self._history.append(change)
        return change

    def set_many(self, labels: Mapping[str, str]) -> list[Change]:
        """Label many inputs in one write (pre-labels accepted in bulk); files deleted since are left out."""
        present = {path: label for path, label in labels.items() if (self.root / path).is_file()}
        with self._locked():
            changes = self._write_all(present)
            self._history.extend(changes)
        return changes

    def undo(self, path: str | None = None) -> Change:
        """Put back the label before this process's last change (to `path`, when given: a tab undoes its own);
        refused with an `UndoConflict` when there is none or its label was changed since by someone else."""
        with self._locked():
            matches = [i for i, c in enumerate(self._history) if path is None or c.path == path]
            if not matches:
                raise UndoConflict(f"nothing to undo{f' for {path}' if path else ''}")
            change = self._history[matches[-1]]
            now = self._labels().get(change.path)
            if now != change.label:
                raise UndoConflict(
                    f"{change.path} is labelled {now!r} since (another tab?); label it again instead of undoing"
                )
            del self._history[matches[-1]]
            self._write(change.path, change.previous)
        return Change(change.path, change.previous, change.label)

    # ---- inside the locks

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, self._file_lock():
            self._read()
            yield

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        import fcntl

        lock = self.csv.with_name(f".{self.csv.name}.lock")
        try:
            f = open(lock, "a")
        except OSError as e:
            raise DeepcatError(
                f"cannot write in {self.csv.parent} ({e.strerror}); labels are saved beside the inputs: make the "
                f"folder writable, or copy it somewhere that is"
            ) from None
        with f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.csv.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _read(self) -> None:
        stamp = self._stamp()
        if stamp == self._seen:
            return
        self._rows = {}
        if stamp is not None:
            with self.csv.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                if not {"path", "label"} <= set(columns):
                    raise DeepcatError(
                        f"{self.csv} has the header {','.join(columns) or '(none)'}; deepcat label writes a CSV "
                        f"whose first line is path,label. Fix its header, or move it away and start afresh"
                    )
                self._columns = columns
                self._rows = {row["path"]: row for row in reader}
        self._seen = stamp

    def _labels(self) -> dict[str, str]:
        return {**self.folder_labels, **{p: row["label"] for p, row in self._rows.items()}}

    def _write(self, path: str, label: str | None) -> Change:
        [change] = self._write_all({path: label})
        return change

    def _write_all(self, labels: Mapping[str, str | None]) -> list[Change]:
        before = self._labels()
        rows = {p: {"path": p, "label": lab} for p, lab in self.folder_labels.items()} | self._rows
        for path, label in labels.items():
            if label is None:
                rows.pop(path, None)
            else:
                rows[path] = {**rows.get(path, {}), "path": path, "label": label}
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self._columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[p] for p in sorted(rows))
        write_atomically(self.csv, text.getvalue())
        self._rows, self._seen = rows, self._stamp()
        return [Change(path, label, before.get(path)) for path, label in labels.items()]
