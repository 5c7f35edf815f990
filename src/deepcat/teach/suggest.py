"""The one seam between the labelling page and a model: which inputs to show next, and each one's pre-label.

The page calls a `Suggester` and knows nothing else of models. `FolderOrder` is the suggester without a model:
the unlabelled inputs in folder order, no pre-labels, while a background pass reads every file once to find the
corrupt ones. A suggester with a model (`model_suggest.ModelSuggester`) keeps the same methods:

- a `BackgroundPass` whose work is a file's features (a feature cache's lookup) instead of a plain read, so its
  progress is the features' and its failures the unreadable files;
- `refit`: fit a quick head on the features of the labelled inputs (the classes with labels; `NONE_OF_THESE`
  left out);
- `suggest`: the head's probabilities for the inputs with features, an active-learning choice of which to show
  (`labelled` excluded), and each one's top class and probability as pre-label; before any fit, no pre-labels;
- `doubted`: the labelled inputs whose label the head, fitted without them, contradicts (for review).

`session.make_suggester` is where the page gets its suggester.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from deepcat.errors import DeepcatError
from deepcat.inputs import InputKind
from deepcat.teach.background import BackgroundPass, Progress

__all__ = ["FolderOrder", "Suggester", "Suggestions"]

SYNC_CHECKS = 200  # at most this many files read while answering one request; the rest wait for the background


@dataclass(frozen=True)
class Suggestions:
    """The inputs to label next, best first, as indices into the paths given; each one's pre-label (a class) and
    its probability, or None where there is no model yet."""

    order: list[int]
    prelabels: list[str | None]
    probs: list[float | None]


class Suggester(Protocol):
    """What the labelling page asks of a model. `paths`: every input, absolute, in a fixed order (new captures
    appended); `labels`: each one's label, None when unlabelled (`NONE_OF_THESE`: looked at, none of the
    classes); `classes`: the page's classes, in their keys' order. Called from request threads: a suggester
    keeps its own lock."""

    def suggest(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str], count: int
    ) -> Suggestions:
        """Up to `count` unlabelled inputs to show next, none of them a file known to be unreadable."""
        ...

    def refit(self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str]) -> None:
        """The labels changed: learn from them (a suggester with a model may do so in the background)."""
        ...

    def accept_in_bulk(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str], alpha: float
    ) -> tuple[dict[int, str], str]:
        """The unlabelled inputs whose pre-label can be accepted at error rate `alpha` (index -> class), and a
        sentence for the page; a DeepcatError when it cannot (no model, too few labels: it says how many)."""
        ...

    def doubted(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str]
    ) -> list[tuple[int, str, float]]:
        """Labelled inputs whose label the model doubts, most doubtful first: (index, the class the model gives
        it, that class's probability), from probabilities of a head fitted without the input; [] without a model
        or while too few are labelled."""
        ...

    def progress(self) -> Progress:
        """How far the background work has gone, for the page's progress bar."""
        ...

    def failures(self) -> dict[str, str]:
        """Unreadable inputs found so far: path -> why."""
        ...

    def close(self) -> None:
        """Stop the background work (the server is stopping)."""
        ...


class FolderOrder:
    """No model: the unlabelled inputs in folder order, without pre-labels. A background pass reads each file
    once with `kind.read`, and the inputs about to be shown are read first, so a corrupt file is listed and
    never shown."""

    def __init__(self, paths: Sequence[str], kind: InputKind):
        self.known = set(paths)
        self.checked = BackgroundPass(paths, kind.read, stage="checking files", keep=False)

    def suggest(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str], count: int
    ) -> Suggestions:
        order: list[int] = []
        checks = 0
        for i, (path, label) in enumerate(zip(paths, labels)):
            if len(order) >= count or checks >= SYNC_CHECKS:
                break
            if label is not None or path in self.checked.failures:
                continue
            if path not in self.checked.results:
                checks += 1
                if not self.checked.ensure(path):
                    continue
            order.append(i)
        return Suggestions(order, [None] * len(order), [None] * len(order))

    def refit(self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str]) -> None:
        for path in paths[len(self.known) :]:  # paths only grow, by captures appended
            if path not in self.known:  # new to the pass: read it now
                self.known.add(path)
                self.checked.add(path)

    def accept_in_bulk(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str], alpha: float
    ) -> tuple[dict[int, str], str]:
        raise DeepcatError(
            "accepting pre-labels in bulk needs the page's model: start `deepcat label` without --model none, on "
            "a folder of images"
        )

    def doubted(
        self, paths: Sequence[str], labels: Sequence[str | None], classes: Sequence[str]
    ) -> list[tuple[int, str, float]]:
        return []  # no model to doubt a label with

    def progress(self) -> Progress:
        return self.checked.progress()

    def failures(self) -> dict[str, str]:
        return dict(self.checked.failures)

    def close(self) -> None:
        self.checked.stop()
