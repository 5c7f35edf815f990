"""A labelling session over one DATA: its inputs, classes, labels and suggester, as the page sees them. The
HTTP routes (`serving/label_app.py`) only translate requests into these calls and errors into answers.

Example:
    >>> session = open_session("photos", classes=["cat", "dog"])
    >>> [item.path for item in session.next(3)]
    ['IMG_0001.jpg', 'IMG_0002.jpg', 'IMG_0003.jpg']
    >>> session.label("IMG_0001.jpg", "cat")
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepcat.errors import DeepcatError
from deepcat.inputs import InputKind
from deepcat.teach.background import Progress
from deepcat.teach.folder import check_class_name, confined, folder_labels, list_inputs, new_file_name
from deepcat.teach.labels import NONE_OF_THESE, Change, LabelStore, write_atomically
from deepcat.teach.suggest import FolderOrder, Suggester

__all__ = ["MODELS", "Item", "LabelSession", "UnknownInput", "make_suggester", "open_session"]

LABELS_CSV = "labels.csv"
MODELS = ("auto", "speaker", "none")  # `deepcat label --model`: a pretrained network's help, or folder order


def make_suggester(paths: Sequence[str], kind: InputKind, root: Path, model: str = "auto") -> Suggester:
    """The suggester `deepcat label` starts with, over `paths` (absolute) of `kind` under DATA (`root`): with
    `model` auto, images get a pretrained backbone's features and a quick head (`model_suggest.ModelSuggester`);
    `speaker`, sound clips get a speaker encoder's (`voices.SpeakerFeatures`: classes are people); a run folder,
    its network's (`run_features.RunFeatures`: for clips of words, a run trained on words); `none`, and sound
    clips under auto (no pretrained model of words ships), are shown in folder order."""
    if model not in MODELS and (Path(model) / "model.json").is_file():  # a run folder: its network's features
        from deepcat.teach.model_suggest import ModelSuggester
        from deepcat.teach.run_features import RunFeatures

        return ModelSuggester(paths, RunFeatures(model, kind.name))
    if model not in MODELS:
        raise DeepcatError(f"model must be one of {', '.join(MODELS)} or a run folder; received {model!r}")
    if model == "speaker":
        from deepcat.teach.model_suggest import ModelSuggester
        from deepcat.teach.voices import SpeakerFeatures, weights_file

        if kind.name != "audio":
            raise DeepcatError(f"--model speaker tells voices apart; {root} holds {kind.name} inputs. Use auto")
        weights_file()  # refused at start, with how to install it, rather than on the page
        return ModelSuggester(paths, SpeakerFeatures())
    if model == "auto" and kind.name == "image":
        from deepcat.teach.model_suggest import model_suggester

        return model_suggester(paths, root)
    return FolderOrder(paths, kind)


class UnknownInput(DeepcatError):
    """A path that is not one of the session's inputs (outside DATA, not a file of its kind): answered 404."""


@dataclass(frozen=True)
class Item:
    """One input to label: its path relative to DATA, and the model's pre-label and probability (or None)."""

    path: str
    prelabel: str | None
    probability: float | None


class LabelSession:
    """Inputs `paths` (relative to `root`) of `kind`, labelled into `store`; `classes` in their keys' order;
    `suggester` makes the session's suggester from the inputs' absolute paths, their kind and DATA."""

    def __init__(
        self,
        root: Path,
        kind: InputKind,
        paths: list[str],
        store: LabelStore,
        classes: Sequence[str],
        suggester: Callable[[list[str], InputKind, Path], Suggester] = make_suggester,
    ):
        self.root, self.kind, self.store = root.resolve(), kind, store
        self.paths = list(paths)
        self._absolute = [os.path.join(self.root, p) for p in self.paths]  # as the suggester knows them
        self._index = {p: i for i, p in enumerate(self.paths)}
        self._lock = threading.Lock()  # paths and classes grow from request threads
        self.classes = list(dict.fromkeys(classes))
        self.suggester = suggester(list(self._absolute), kind, self.root)
        self._duplicates: tuple[int, list[list[str]], str | None] | None = None  # (inputs searched, groups, error)
        self._searching: threading.Thread | None = None
        self._doubted: tuple[tuple[object, ...], list[dict[str, object]]] | None = None  # (its key, the answer)

    def summary(self) -> dict[str, object]:
        """What the page shows at its top: the folder, the CSV, the kind, the classes and how many are labelled."""
        labels = self.store.labels()
        done = sum(1 for p in self.paths if p in labels)
        return {
            "data": str(self.root),
            "csv": str(self.store.csv),
            "kind": self.kind.name,
            "classes": list(self.classes),
            "none_label": NONE_OF_THESE,
            "total": len(self.paths),
            "labelled": done,
        }

    def next(self, count: int) -> list[Item]:
        """Up to `count` unlabelled inputs to show, in the suggester's order, with its pre-labels."""
        paths, labels = self._view()
        found = self.suggester.suggest(paths, labels, list(self.classes), count)
        return [
            Item(self.paths[i], prelabel, prob) for i, prelabel, prob in zip(found.order, found.prelabels, found.probs)
        ]

    def file(self, path: str) -> Path:
        """The file of input `path`, or `UnknownInput` when it is no input of this session, or leads out of DATA."""
        full = confined(self.root, path)
        if full is None or path not in self._index or not full.is_file():
            raise UnknownInput(f"{path!r} is not an input under {self.root}")
        return full

    def label(self, path: str, label: str) -> Change:
        """Label input `path` with a class or `NONE_OF_THESE`, and save; `InputGone` when it was deleted."""
        if label != NONE_OF_THESE and label not in self.classes:
            raise DeepcatError(f"{label!r} is not a class here; the classes are {', '.join(self.classes) or '(none)'}")
        if confined(self.root, path) is None or path not in self._index:
            raise UnknownInput(f"{path!r} is not an input under {self.root}")
        change = self.store.set(path, label)
        self._refit()
        return change

    def undo(self, path: str | None = None) -> Change:
        """Undo this server's last label (of `path`, when given); see `LabelStore.undo`."""
        change = self.store.undo(path)
        self._refit()
        return change

    def accept_in_bulk(self, alpha: float) -> tuple[list[Change], str]:
        """Accept every pre-label the model is sure enough of, at error rate `alpha` among those accepted, in one
        write; the labels written, and what the model said (the threshold, or how many more labels it needs)."""
        if not 0 < alpha < 1:
            raise DeepcatError(f"alpha is an error rate between 0 and 1, e.g. 0.02; received {alpha}")
        paths, labels = self._view()
        chosen, message = self.suggester.accept_in_bulk(paths, labels, list(self.classes), alpha)
        changes = self.store.set_many({self.paths[i]: label for i, label in chosen.items()})
        self._refit()
        return changes, message

    def add_class(self, name: str) -> list[str]:
        """Add class `name` (kept in order; one already there is not added twice); the classes now."""
        name = check_class_name(name)
        with self._lock:
            if name not in self.classes:
                self.classes.append(name)
            return list(self.classes)

    def capture(self, label: str, data: bytes, suffix: str) -> Change:
        """A webcam frame or a recorded clip: saved as a new file in DATA/`label`/, checked readable, labelled."""
        label = check_class_name(label)
        if suffix not in self.kind.suffixes:
            raise DeepcatError(f"a {suffix} file is not an input of this {self.kind.name} folder")
        folder = self.root / label
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise DeepcatError(f"{folder} is not a folder inside {self.root}; rename it to capture into {label!r}")
        folder.mkdir(exist_ok=True)
        path = new_file_name(folder, suffix)
        write_atomically(path, data)
        try:
            self.kind.read(str(path))
        except Exception as e:  # unreadable capture: not kept, and said why
            path.unlink(missing_ok=True)
            raise DeepcatError(f"the captured {self.kind.name} could not be read back: {e}; nothing was saved") from e
        relative = path.relative_to(self.root).as_posix()
        with self._lock:
            self._index[relative] = len(self.paths)
            self.paths.append(relative)
            self._absolute.append(str(path))
        self.add_class(label)
        return self.label(relative, label)

    def review(self) -> dict[str, object]:
        """What to look at again: the labelled inputs whose label the model doubts (most doubtful first, with the
        class it gives them; recomputed only when the labels or the inputs with features change) and the groups of
        near-duplicate inputs. The near-duplicate search reads every file once, in the background:
        `near_duplicates` is None until it has finished (ask again), searched again when captures have added
        inputs; `near_duplicates_error` says why a search failed."""
        paths, labels = self._view()
        key = (self.suggester.progress().done, *labels)  # more inputs with features, or other labels: doubt anew
        with self._lock:
            cached = self._doubted if self._doubted is not None and self._doubted[0] == key else None
        if cached is None:
            found = self.suggester.doubted(paths, labels, list(self.classes))
            cached = (
                key,
                [
                    {"path": self.paths[i], "label": labels[i], "model_says": says, "probability": round(prob, 4)}
                    for i, says, prob in found
                ],
            )
            with self._lock:
                self._doubted = cached
        groups, error = self._near_duplicates()
        return {"doubted": cached[1], "near_duplicates": groups, "near_duplicates_error": error}

    def _near_duplicates(self) -> tuple[list[list[str]] | None, str | None]:
        """The last finished search's groups if it covered every input, else None (a search is started); and the
        reason the last search failed, if it did (it is not tried again until inputs are added)."""
        from deepcat.teach.review import near_duplicates

        with self._lock:
            count = len(self.paths)
            if self._duplicates is not None and self._duplicates[0] == count:
                return self._duplicates[1], self._duplicates[2]
            if self._searching is not None and self._searching.is_alive():
                return None, None
            relative, absolute = list(self.paths), list(self._absolute)

            def search() -> None:
                try:  # one reading process: a fork of this multi-threaded server is no place for a pool
                    found, error = near_duplicates(items=absolute, kind=self.kind.name, workers=1), None
                except Exception as e:  # said on the page, never a dead thread behind a spinner
                    found, error = [], f"the near-duplicate search failed: {e}"
                with self._lock:
                    self._duplicates = (len(relative), [[relative[i] for i in group] for group in found], error)

            self._searching = threading.Thread(target=search, name="deepcat near duplicates", daemon=True)
            self._searching.start()
        return None, None

    def progress(self) -> Progress:
        return self.suggester.progress()

    def corrupt(self) -> list[tuple[str, str]]:
        """Unreadable inputs found so far, (path, why), relative paths."""
        where = f"{self.root}/"
        return sorted(
            (Path(p).relative_to(self.root).as_posix(), why.replace(where, ""))
            for p, why in self.suggester.failures().items()
        )

    def close(self) -> None:
        self.suggester.close()

    def _view(self) -> tuple[list[str], list[str | None]]:
        labels = self.store.labels()
        with self._lock:
            paths, absolute = list(self.paths), list(self._absolute)
        return absolute, [labels.get(p) for p in paths]

    def _refit(self) -> None:
        paths, labels = self._view()
        self.suggester.refit(paths, labels, list(self.classes))


def open_session(
    data: str | Path,
    *,
    classes: Sequence[str] = (),
    modality: str = "auto",
    suggester: Callable[[list[str], InputKind, Path], Suggester] = make_suggester,
) -> LabelSession:
    """A session over DATA: a folder (flat, or partly sorted into class folders; labels go to its labels.csv) or
    a CSV of path,label (labels go to it; its folder's files are the inputs). `classes` come first, then the
    classes the folders and the CSV already name."""
    given = Path(data).expanduser()
    if given.is_dir():
        root, csv_path = given, given / LABELS_CSV
    elif given.suffix.lower() == ".csv" and (given.is_file() or given.parent.is_dir()):
        root, csv_path = given.parent, given
    else:
        raise DeepcatError(f"{data} is neither a folder nor a .csv in one; pass the folder of inputs to label")
    kind, paths = list_inputs(root, modality)
    store = LabelStore(csv_path, root, folder_labels(paths))
    classes = [check_class_name(name) for name in classes]
    named = {label for label in store.labels().values() if label != NONE_OF_THESE}
    ordered = [*classes, *sorted(named - set(classes))]
    return LabelSession(root, kind, paths, store, ordered, suggester)
