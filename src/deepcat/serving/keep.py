"""What to label next, kept from the field (`deepcat serve --keep DIR`, opt-in): an input the model answered
`unknown`, answered with a low probability, or whose 90% prediction set holds more than one class is saved in DIR
with its answer, so that `deepcat label DIR` opens the inputs the model was least sure of, and `deepcat train
--from RUN` learns them: serve, keep, label, train, serve.

Nothing is kept without the flag. The folder is bounded (`--keep-mb`): past it, the oldest kept inputs are
deleted first. Each input is written under a temporary name and renamed, beside a line in DIR/kept.csv (file,
answer, probability, why, time); the writing runs in a thread of its own after the answer is sent, so a kept
request is answered as fast as any other.
"""

from __future__ import annotations

import collections
import csv
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepcat.inference.answers import UNKNOWN

__all__ = ["KEEP_BELOW", "KEPT_CSV", "Keeper"]

KEEP_BELOW = 0.6  # an answer whose probability is under this is kept
KEPT_CSV = "kept.csv"
MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"GIF8", ".gif"))


@dataclass
class Keeper:
    """Keeps inputs in `folder`, at most `max_bytes` of them (oldest deleted first); `set_limit`: the model's 90%
    prediction-set limit (None: it has none, sets are not looked at)."""

    folder: Path
    max_bytes: int
    set_limit: float | None = None
    below: float = KEEP_BELOW
    kept: collections.deque[tuple[Path, int]] = field(default_factory=collections.deque)
    size: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    writer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="keep"))

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        earlier = sorted(
            (p for p in self.folder.iterdir() if p.is_file() and p.name != KEPT_CSV and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for path in earlier:  # a restarted server goes on bounding what it kept before
            self.kept.append((path, path.stat().st_size))
            self.size += path.stat().st_size

    def why(self, answer: dict[str, Any], probabilities: Any) -> str | None:
        """Why this answer's input is worth a label (None: it is not)."""
        if answer["label"] == UNKNOWN:
            return "unknown"
        if answer["probability"] < self.below:
            return f"probability under {self.below}"
        if self.set_limit is not None:
            import numpy as np

            with np.errstate(divide="ignore"):
                in_set = int((-np.log(np.asarray(probabilities, np.float64)) <= self.set_limit).sum())
            if in_set > 1:
                return f"90% set of {in_set} classes"
        return None

    def consider(self, data: bytes, answer: dict[str, Any], probabilities: Any, suffix: str) -> None:
        """Keep the input in the writer's thread when its answer is worth a label; returns at once."""
        why = self.why(answer, probabilities)
        if why is not None:
            self.writer.submit(self.keep, data, answer, why, suffix)

    def keep(self, data: bytes, answer: dict[str, Any], why: str, suffix: str) -> Path:
        """Save one input and its answer; then delete the oldest until the folder is within its bound."""
        suffix = next((s for magic, s in MAGIC if data.startswith(magic)), suffix)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}{suffix}"
        path = self.folder / name
        temporary = self.folder / f".{name}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, path)
        with self.lock:
            new_csv = not (self.folder / KEPT_CSV).exists()
            with (self.folder / KEPT_CSV).open("a", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                if new_csv:
                    writer.writerow(["file", "answer", "probability", "why", "time"])
                writer.writerow([name, answer["label"], f"{answer['probability']:.4f}", why, time.time()])
            self.kept.append((path, len(data)))
            self.size += len(data)
            while self.size > self.max_bytes and len(self.kept) > 1:
                oldest, size = self.kept.popleft()
                oldest.unlink(missing_ok=True)
                self.size -= size
        return path
