"""Backbone features of image files, computed once and kept on disk, so a labelling session and `deepcat train --quick`
embed each input once however often they refit.

An input is keyed by its path (relative to DATA when inside it), size and modification time (ns): a changed file is
embedded again, an unchanged one never; a file that cannot be read is remembered with its reason under the same key,
so a large folder's broken files are not decoded again at every call either. Photos are decoded at reduced scale
(PIL's draft mode for JPEG, never below the backbone's resize, as the server decodes), on a thread per core while
the backbone runs the previous batch.

The cache folder (`default_folder`): DATA/.deepcat/features/BACKBONE, which data loading skips (a hidden folder),
or, where DATA is read-only, ~/.cache/deepcat/features/DIGEST/BACKBONE (DIGEST names DATA's resolved path):

    index.sqlite        one row per input: path, size, mtime_ns, and its chunk and row, or why it cannot be read
    chunks/NAME.npy     float16 features of the inputs embedded together, written once

A chunk is written under a temporary name and renamed before the index rows that point at it are committed in one
SQLite transaction, so a process killed at any moment leaves a readable cache: at worst the last chunk's inputs are
embedded again and an unreferenced chunk stays behind. Reading is an index query and one memory-mapped load per
chunk (`FLUSH_ROWS` inputs each), so a folder of 100,000 inputs reads back without decoding anything.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from deepcat.inference.imagenet import CAT_CLASSES, DOG_CLASSES
from deepcat.inputs.image import Preprocess, load_image, pixels
from deepcat.progress import progress_bar
from deepcat.teach.backbone import DEFAULT_BACKBONE, Backbone, Runtime, load_backbone

__all__ = ["BATCH_SIZE", "FLUSH_ROWS", "Embedding", "FeatureCache", "cats_and_dogs", "default_folder", "read_each"]

BATCH_SIZE = 32  # inputs per backbone call
FLUSH_ROWS = 128  # inputs per chunk file: each committed batch of work a killed process keeps
T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    chunk TEXT, row INTEGER, reason TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Embedding:
    """The features of the inputs asked for, one row per path in the order given.

    `features` is (n, D) float32; the rows of unreadable inputs are zeros and `ok` (n,) is False there: use
    `features[ok]`. `bad` lists each unreadable input with its reason, e.g. (Path("a/x.jpg"), "cannot decode
    (image file is truncated)")."""

    paths: list[Path]
    features: np.ndarray
    ok: np.ndarray
    bad: list[tuple[Path, str]]


def default_folder(data: Path, backbone: str = DEFAULT_BACKBONE) -> Path:
    """DATA/.deepcat/features/BACKBONE where DATA is writable, else ~/.cache/deepcat/features/DIGEST/BACKBONE."""
    inside = data / ".deepcat" / "features" / backbone
    try:
        inside.mkdir(parents=True, exist_ok=True)
        if os.access(inside, os.W_OK):
            return inside
    except OSError:
        pass
    digest = hashlib.blake2b(str(data.resolve()).encode(), digest_size=8).hexdigest()
    return Path.home() / ".cache" / "deepcat" / "features" / digest / backbone


class FeatureCache:
    """Backbone features of image files under `data`, computed when missing or changed, read back when not.

    Safe to share between threads (each call opens its own connection to the index) and between processes (SQLite
    serialises the writes): a labelling page may embed in the background while requests read what is done.

    Args:
        data: the folder the inputs live in (DATA); keys are paths relative to it.
        backbone: a pretrained model with a linear ImageNet classifier (`teach.backbone.load_backbone`).
        folder: where the cache lives (default: `default_folder(data, backbone)`).
        runtime: onnxruntime, torch or auto (ONNX Runtime on a CPU).

    >>> cache = FeatureCache(Path("photos"))
    >>> found = cache.features(sorted(Path("photos").rglob("*.jpg")))
    >>> found.features[found.ok].shape, found.bad  # ((n, 1280), [(path, reason), ...])
    """

    def __init__(
        self,
        data: str | Path,
        *,
        backbone: str = DEFAULT_BACKBONE,
        folder: str | Path | None = None,
        runtime: Runtime = "auto",
    ):
        self.data = Path(data)
        self.root = Path(os.path.abspath(self.data))
        self.name, self.runtime = backbone, runtime
        self.folder = Path(folder) if folder is not None else default_folder(self.data, backbone)
        (self.folder / "chunks").mkdir(parents=True, exist_ok=True)
        self._backbone: Backbone | None = None
        self._loading = threading.Lock()
        with self._index() as db:
            db.executescript(SCHEMA)

    @property
    def backbone(self) -> Backbone:
        """The backbone, loaded on first use (a cache whose inputs are all stored never loads it)."""
        with self._loading:
            if self._backbone is None:
                self._backbone = load_backbone(self.name, runtime=self.runtime)
            return self._backbone

    def features(
        self,
        paths: Sequence[str | Path],
        *,
        progress: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> Embedding:
        """The features of `paths`, embedding those not stored or changed since; unreadable files are listed, not
        raised.

        Args:
            paths: image files, under `data` or anywhere.
            progress: show a progress bar while embedding.
            on_batch: called as `on_batch(done, total)` after each embedded batch (a page's progress).

        Returns:
            One row per path, in order (`Embedding`).
        """
        files = [Path(p) for p in paths]
        keys = [self._key(p) for p in files]
        with self._index() as db:
            stored = _rows(db, [k[0] for k in keys])
        todo = [i for i, key in enumerate(keys) if key[1] >= 0 and stored.get(key[0], (None,))[:2] != key[1:]]
        if todo:
            self._embed([files[i] for i in todo], [keys[i] for i in todo], progress=progress, on_batch=on_batch)
            with self._index() as db:
                stored = _rows(db, [k[0] for k in keys])
        return self._gather(files, keys, stored)

    def cached(self, paths: Sequence[str | Path]) -> np.ndarray:
        """(n,) bool: whether each input's features (or its reason for being unreadable) are stored and current."""
        keys = [self._key(Path(p)) for p in paths]
        with self._index() as db:
            stored = _rows(db, [k[0] for k in keys])
        return np.array([stored.get(k[0], (None,))[:2] == k[1:] for k in keys], dtype=bool)

    def imagenet(self, features: np.ndarray) -> np.ndarray:
        """(n, 1000) ImageNet probabilities from stored features: the backbone's own classifier, applied to them."""
        b = self.backbone
        logits = features @ b.imagenet_weight.T + b.imagenet_bias  # (n, 1000)
        logits -= logits.max(1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(1, keepdims=True), np.float32)

    def _key(self, path: Path) -> tuple[str, int, int]:
        """(path relative to DATA, or absolute outside it; size; mtime_ns); size -1 for a file that is not there."""
        absolute = Path(os.path.abspath(path))  # not resolve(): a syscall per part, for 100,000 paths
        name = absolute.relative_to(self.root).as_posix() if absolute.is_relative_to(self.root) else str(absolute)
        try:
            stat = absolute.stat()
        except OSError:
            return name, -1, -1
        return name, stat.st_size, stat.st_mtime_ns

    @contextmanager
    def _index(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.folder / "index.sqlite", timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers go on while a batch commits
            yield db

    def _embed(
        self,
        paths: list[Path],
        keys: list[tuple[str, int, int]],
        *,
        progress: bool,
        on_batch: Callable[[int, int], None] | None,
    ) -> None:
        """Decode on a thread per core, a batch ahead of the backbone; commit every `FLUSH_ROWS` inputs."""
        backbone = self.backbone
        bar = progress_bar(total=len(paths), desc="backbone features", unit="input", enabled=progress)
        pending: list[tuple[tuple[str, int, int], np.ndarray | str]] = []
        done = 0
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:

            def submit(start: int) -> list[Future[np.ndarray | str]]:
                return [pool.submit(_read, p, backbone.pre) for p in paths[start : start + BATCH_SIZE]]

            ahead = submit(0)
            for start in range(0, len(paths), BATCH_SIZE):
                read = [f.result() for f in ahead]
                ahead = submit(start + BATCH_SIZE)
                good = [x for x in read if isinstance(x, np.ndarray)]
                embedded = iter(backbone.embed(np.stack(good)) if good else [])
                batch_keys = keys[start : start + BATCH_SIZE]
                pending += [(k, next(embedded) if isinstance(x, np.ndarray) else x) for k, x in zip(batch_keys, read)]
                if len(pending) >= FLUSH_ROWS:
                    self._commit(pending)
                    pending = []
                done += len(read)
                bar.update(len(read))
                if on_batch is not None:
                    on_batch(done, len(paths))
        if pending:
            self._commit(pending)
        bar.close()

    def _commit(self, rows: list[tuple[tuple[str, int, int], np.ndarray | str]]) -> None:
        """Write the chunk (temporary name, then renamed), then its index rows in one transaction."""
        good = [(key, x) for key, x in rows if isinstance(x, np.ndarray)]
        chunk = uuid.uuid4().hex if good else None
        if chunk is not None:
            path = self.folder / "chunks" / f"{chunk}.npy"
            tmp = path.with_name(f"{chunk}.tmp.npy")
            np.save(tmp, np.stack([x for _, x in good]).astype(np.float16))
            tmp.replace(path)
        records: list[tuple[str, int, int, str | None, int | None, str | None]] = []
        row = 0
        for key, x in rows:
            if isinstance(x, np.ndarray):
                records.append((*key, chunk, row, None))
                row += 1
            else:
                records.append((*key, None, None, x))
        with self._index() as db, db:
            db.executemany("INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?, ?, ?)", records)
            if chunk is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('width', ?)", (str(len(good[0][1])),))

    def _gather(
        self, paths: list[Path], keys: list[tuple[str, int, int]], stored: dict[str, tuple[int, int, str, int, str]]
    ) -> Embedding:
        """The stored rows of `keys`, read chunk by chunk (memory-mapped)."""
        width = self._width()
        features = np.zeros((len(paths), width), np.float32)
        ok = np.zeros(len(paths), bool)
        bad: list[tuple[Path, str]] = []
        wanted: dict[str, tuple[list[int], list[int]]] = {}
        for i, (path, key) in enumerate(zip(paths, keys)):
            if key[1] < 0:
                bad.append((path, "file not found"))
                continue
            _, _, chunk, row, reason = stored[key[0]]
            if chunk is None:
                bad.append((path, reason))
                continue
            at, rows = wanted.setdefault(chunk, ([], []))
            at.append(i)
            rows.append(row)
        for chunk, (at, rows) in wanted.items():
            features[at] = np.load(self.folder / "chunks" / f"{chunk}.npy", mmap_mode="r")[rows]
            ok[at] = True
        return Embedding(paths, features, ok, bad)

    def _width(self) -> int:
        with self._index() as db:
            found = db.execute("SELECT value FROM meta WHERE key = 'width'").fetchone()
        return int(found[0]) if found else self.backbone.width


def _rows(db: sqlite3.Connection, names: list[str]) -> dict[str, tuple[int, int, str, int, str]]:
    """Index rows by path: (size, mtime_ns, chunk, row, reason). All of them when asked for many (one scan)."""
    if len(names) > 500:
        query = db.execute("SELECT * FROM inputs")
        return {r[0]: r[1:] for r in query}
    found = {}
    for name in names:
        r = db.execute("SELECT * FROM inputs WHERE path = ?", (name,)).fetchone()
        if r is not None:
            found[r[0]] = r[1:]
    return found


def _read(path: Path, pre: Preprocess) -> np.ndarray | str:
    """(3, H, W) float32 pixels, decoded at reduced scale, or why the file cannot be read."""
    try:
        return pixels(load_image(path, min_side=pre.resize), pre)
    except Exception as e:  # noqa: BLE001 - any failure to read one file is that file's reason, never the batch's
        return str(e).removeprefix(f"{path}: ")


def cats_and_dogs(imagenet: np.ndarray) -> np.ndarray:
    """(n, 1000) ImageNet probabilities -> (n, 3) probabilities of cat, dog and neither (`inference.imagenet`): the
    pre-labels a cats-and-dogs folder gets before its first label."""
    cat = imagenet[:, CAT_CLASSES.start : CAT_CLASSES.stop].sum(1)
    dog = imagenet[:, DOG_CLASSES.start : DOG_CLASSES.stop].sum(1)
    return np.stack([cat, dog, np.clip(1 - cat - dog, 0, None)], axis=1)


def read_each(
    paths: Sequence[str | Path], read: Callable[[Path], T]
) -> tuple[list[T], np.ndarray, list[tuple[Path, str]]]:
    """`read` every path: what was read (in order), which paths were (a mask) and why the others were not, as a
    page lists them (never raised)."""
    items: list[T] = []
    ok = np.zeros(len(paths), bool)
    bad: list[tuple[Path, str]] = []
    for i, path in enumerate(Path(p) for p in paths):
        try:
            items.append(read(path))
            ok[i] = True
        except Exception as e:  # a corrupt input is listed by the page, never raised
            bad.append((path, str(e).removeprefix(f"{path}: ")))
    return items, ok, bad
