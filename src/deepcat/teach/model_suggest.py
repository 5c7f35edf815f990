"""The labelling page's suggester with a model: features for every input in the background (from a `Features`
source: the feature cache of a pretrained backbone, a speaker encoder, or a run you trained), a quick head refit
after each label, and the next inputs chosen by `choose.next_to_label` (uncertain, and unlike what is labelled);
each shown input's pre-label is the head's top class and its probability.

Before the first label, the pretrained backbone's own ImageNet head gives pre-labels where the classes are cats and
dogs (cat, dog, and neither when that is a class), and the inputs are chosen to cover the data (k-center). The
features are kept in memory as float16 (1,280 numbers an input: 100,000 photos take 256 MB) and read from the cache
on disk at start, so a folder embedded once opens with its features.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.teach.background import Progress
from deepcat.teach.features import Embedding, FeatureCache, cats_and_dogs
from deepcat.teach.quick import QuickHead, fit_quick
from deepcat.teach.suggest import Suggestions

__all__ = ["CHUNK", "POOL", "Features", "ModelSuggester", "model_suggester"]

CHUNK = 32  # inputs embedded per step of the background pass: one backbone batch
POOL = 5000  # unlabelled inputs a request chooses among (a fixed random sample of a larger folder)
ZERO_SHOT = ("cat", "dog", "neither")  # the classes the ImageNet head can pre-label (cats_and_dogs's columns)


class Features(Protocol):
    """Where the features come from: a `FeatureCache` (a pretrained backbone's, for images), `voices.SpeakerFeatures`
    (who speaks) or `run_features.RunFeatures` (a run you trained). A source with an `imagenet(features)` method
    also pre-labels cats and dogs before the first label."""

    def features(self, paths: Sequence[str | Path], *, progress: bool = True) -> Embedding: ...


class ModelSuggester:
    """`Suggester` with a pretrained network's features and a quick head (see the module's docstring)."""

    def __init__(self, paths: Sequence[str], source: Features):
        self.source = source
        self.paths = list(paths)
        self.row = {p: i for i, p in enumerate(self.paths)}
        self.features: np.ndarray | None = None  # (n, D) float16, allocated with the first batch
        self.have = np.zeros(len(self.paths), bool)
        self.bad: dict[str, str] = {}
        self.head: QuickHead | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fit_wanted = threading.Event()
        self._labels: tuple[list[str], list[str | None], list[str]] = ([], [], [])
        self._embedder = threading.Thread(target=self._embed_all, name="deepcat features", daemon=True)
        self._fitter = threading.Thread(target=self._fit_loop, name="deepcat quick head", daemon=True)
        self._embedder.start()
        self._fitter.start()

    def suggest(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str], count: int
    ) -> Suggestions:
        from deepcat.teach.choose import next_to_label

        with self._lock:
            self._grow(paths)
            have = np.flatnonzero(self.have[: len(paths)])
            stored, head = self.features, self.head
        if stored is None or not len(have):
            return self._in_order(paths, labels, count)
        done = np.array([labels[int(i)] is not None for i in have], dtype=np.bool_)
        unlabelled = have[np.logical_not(done)]
        if len(unlabelled) > POOL:  # a large folder: choose among a fixed sample, so a request stays fast
            unlabelled = np.sort(np.random.default_rng(0).choice(unlabelled, POOL, replace=False))
        pool = np.concatenate([have[done], unlabelled])
        features = stored[pool].astype(np.float32)
        probs, names = self._probabilities(features, head, classes)
        labelled = np.arange(len(pool)) < done.sum()
        picked = next_to_label(probs=probs, features=features, labelled=labelled, count=count, rng=0)
        order = [int(pool[j]) for j in picked]
        if probs is None:
            return Suggestions(order, [None] * len(order), [None] * len(order))
        best = probs[picked].argmax(1)
        return Suggestions(order, [names[b] for b in best], [float(probs[j, b]) for j, b in zip(picked, best)])

    def refit(self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str]) -> None:
        """Ask the fitting thread for a new head (the latest labels win; a refit never holds up a request)."""
        with self._lock:
            self._grow(paths)
            self._labels = (list(paths), list(labels), list(classes))
        self._fit_wanted.set()

    def accept_in_bulk(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str], alpha: float
    ) -> tuple[dict[int, str], str]:
        """Pre-labels accepted at error rate `alpha` among those accepted (`bulk.bulk_accept`, Learn then Test),
        the threshold set on out-of-fold probabilities of the labelled inputs from the same quick head."""
        from deepcat.teach.bulk import bulk_accept

        with self._lock:
            self._grow(paths)
            have, stored = self.have[: len(paths)].copy(), self.features
        if stored is None:
            raise DeepcatError("the features are not computed yet: wait for the progress bar, then try again")
        rows = [i for i, label in enumerate(labels) if label in classes and have[i]]
        names = sorted({str(labels[i]) for i in rows}, key=list(classes).index)
        if len(names) < 2:
            raise DeepcatError("label inputs of at least two classes before accepting pre-labels in bulk")
        y = np.array([names.index(str(labels[i])) for i in rows])
        x = stored[rows].astype(np.float32)
        pool = np.array([i for i, label in enumerate(labels) if label is None and have[i]], np.int64)
        probs = fit_quick(x, y, names).predict_proba(stored[pool].astype(np.float32))
        found = bulk_accept(calibration_probs=_out_of_fold(x, y), calibration_labels=y, pool_probs=probs, alpha=alpha)
        return {int(pool[i]): names[int(probs[i].argmax())] for i in found.accepted}, found.message

    def doubted(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str]
    ) -> list[tuple[int, str, float]]:
        """cleanlab's confident learning on the quick head's out-of-fold probabilities of the labelled inputs with
        features (`review.likely_label_errors`), over the classes labelled at least twice; [] until two are."""
        from deepcat.teach.review import likely_label_errors

        with self._lock:
            self._grow(paths)
            have, stored = self.have[: len(paths)].copy(), self.features
        rows = [i for i, label in enumerate(labels) if label in classes and have[i]]
        counts = {name: sum(1 for i in rows if labels[i] == name) for name in classes}
        names = [name for name in classes if counts[name] >= 2]  # a class labelled once cannot be held out
        rows = [i for i in rows if labels[i] in names]
        if stored is None or len(names) < 2:
            return []
        y = np.array([names.index(str(labels[i])) for i in rows], np.int64)
        probs = _out_of_fold(stored[rows].astype(np.float32), y)
        found = likely_label_errors(labels=y, probs=probs)
        return [(rows[i], names[int(probs[i].argmax())], float(probs[i].max())) for i in found]

    def progress(self) -> Progress:
        with self._lock:
            done = int(self.have.sum()) + len(self.bad)
            return Progress("computing features", done, len(self.paths), len(self.bad))

    def failures(self) -> dict[str, str]:
        with self._lock:
            return dict(self.bad)

    def close(self) -> None:
        self._stop.set()
        self._fit_wanted.set()
        self._embedder.join(timeout=5)
        self._fitter.join(timeout=5)

    def _grow(self, paths: Sequence[str]) -> None:
        """Paths only grow (captures are appended): make room for the new ones (under the lock)."""
        for path in paths[len(self.paths) :]:
            self.row[path] = len(self.paths)
            self.paths.append(path)
        if len(self.have) < len(self.paths):
            self.have = np.concatenate([self.have, np.zeros(len(self.paths) - len(self.have), bool)])
            if self.features is not None:
                extra = np.zeros((len(self.paths) - len(self.features), self.features.shape[1]), np.float16)
                self.features = np.concatenate([self.features, extra])

    def _embed_all(self) -> None:
        """Embed every input not done yet, a chunk at a time, until there are none left or the page stops."""
        while not self._stop.is_set():
            with self._lock:
                todo = [p for p, done in zip(self.paths, self.have) if not done and p not in self.bad][:CHUNK]
            if not todo:
                if self._stop.wait(0.5):  # a capture may add one
                    return
                continue
            try:
                found = self.source.features(todo, progress=False)
            except Exception as e:  # the backbone itself failed: every input waits, the page says why
                with self._lock:
                    self.bad.update({p: f"features: {e}" for p in todo})
                continue
            with self._lock:
                if self.features is None and found.ok.any():  # the width of the first readable batch
                    self.features = np.zeros((len(self.paths), found.features.shape[1]), np.float16)
                self._grow(self.paths)
                for path, ok, row in zip(todo, found.ok, found.features):
                    if ok and self.features is not None:
                        self.features[self.row[path]] = row
                        self.have[self.row[path]] = True
                self.bad.update({str(path): reason for path, reason in found.bad})
            self._fit_wanted.set()  # more inputs have features: the head may learn from their labels

    def _fit_loop(self) -> None:
        while not self._stop.is_set():
            self._fit_wanted.wait()
            self._fit_wanted.clear()
            if self._stop.is_set():
                return
            with self._lock:
                paths, labels, classes = self._labels
                pairs = [(self.row[p], label) for p, label in zip(paths, labels) if label in classes]
                pairs = [(row, label) for row, label in pairs if self.have[row]]
                x = None if self.features is None or not pairs else self.features[[r for r, _ in pairs]]
            try:
                head = None if x is None else fit_quick(x.astype(np.float32), [label for _, label in pairs], classes)
            except Exception:  # a head that cannot be fitted yet (too few labels): the page goes on without one
                head = None
            with self._lock:
                self.head = head

    def _probabilities(
        self, features: np.ndarray, head: QuickHead | None, classes: Sequence[str]
    ) -> tuple[np.ndarray | None, list[str]]:
        """Each input's class probabilities and the classes they are of: the head's, or before it the ImageNet
        head's cats and dogs where those are the page's classes; None when there is neither."""
        if head is not None:
            return head.predict_proba(features), list(head.classes)
        zero_shot = [c for c in ZERO_SHOT if c in classes]
        imagenet = getattr(self.source, "imagenet", None)  # a source with an ImageNet head can pre-label pets
        if {"cat", "dog"} <= set(zero_shot) and imagenet is not None:
            columns = [ZERO_SHOT.index(c) for c in zero_shot]
            probs = cats_and_dogs(imagenet(features))[:, columns]
            return probs / probs.sum(1, keepdims=True), zero_shot
        return None, []

    def _in_order(self, paths: Sequence[str], labels: Sequence[str | None], count: int) -> Suggestions:
        """Before any features: the unlabelled inputs in folder order, none known to be unreadable."""
        with self._lock:
            bad = set(self.bad)
        order = [i for i, (p, label) in enumerate(zip(paths, labels)) if label is None and p not in bad][:count]
        return Suggestions(order, [None] * len(order), [None] * len(order))


def model_suggester(paths: Sequence[str], root: Path) -> ModelSuggester:
    """The suggester `deepcat label` uses for images: features cached under DATA (`FeatureCache`)."""
    return ModelSuggester(paths, FeatureCache(root))


def _out_of_fold(x: np.ndarray, y: np.ndarray, folds: int = 5) -> np.ndarray:
    """(n, k) each labelled input's probabilities from the quick head fitted without it (stratified folds, as
    many as the smallest class allows): what bulk acceptance sets its threshold on."""
    from sklearn.model_selection import StratifiedKFold

    k = int(y.max()) + 1
    splits = max(2, min(folds, int(np.bincount(y).min())))
    out = np.zeros((len(y), k))
    for fit, held in StratifiedKFold(splits, shuffle=True, random_state=0).split(x, y):
        out[held] = fit_quick(x[fit], y[fit], [str(i) for i in range(k)]).predict_proba(x[held])
    return out
