"""Turn a DATA argument into class names and train/val/test samples.

DATA is a folder of class subfolders, a folder with train/ and val/ (and test/),
a CSV of `path,label`, or a built-in name (see `builtin.py`). Samples are either
file paths or an in-memory uint8 array; both flow through the same Dataset.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.inputs import DEFAULT_KIND, InputKind, input_kind, kind_of_files

__all__ = [
    "NONE_OF_THESE",
    "SPEECH_COMMANDS_NOISE",
    "SPEECH_COMMANDS_TEST_LIST",
    "SPLIT_NAMES",
    "DataSplits",
    "Samples",
    "StoredInputs",
    "combined",
    "from_csv",
    "from_folder",
    "from_speech_commands",
    "only_classes",
    "stratified_split",
    "with_native_size",
]

SPLIT_NAMES = ("train", "val", "test")
# a CSV row labelled this was looked at and is none of the classes (`deepcat label`'s "none of these"): it is kept
# so the page does not ask again, and left out of training, as `_background_noise_` is left out of the classes
NONE_OF_THESE = "_none_"


class StoredInputs(Protocol):
    """Inputs kept in files read by position (`deepcat.data.shards.ShardMembers`): an int index gives an input's
    name, an array of them a subset."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any) -> Any: ...

    def __iter__(self) -> Iterator[str]: ...

    def decode(self, i: int, kind: InputKind, min_side: int | None = None) -> Any: ...

    def joined(self, parts: list[Any]) -> StoredInputs: ...


@dataclass
class Samples:
    """Inputs and their integer labels. `items` is a list of paths, an (N, H, W[, 3]) uint8 array (or other
    in-memory items), or the inputs of WebDataset shards (`deepcat.data.shards.ShardMembers`)."""

    items: list[str] | np.ndarray | StoredInputs
    labels: np.ndarray
    ids: np.ndarray = None  # type: ignore[assignment]  # the index in the built-in set's file; default 0..N-1

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = np.arange(len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Samples:
        items = [self.items[i] for i in index] if isinstance(self.items, list) else self.items[index]
        return Samples(items, self.labels[index], self.ids[index])

    @property
    def in_memory(self) -> bool:
        return isinstance(self.items, np.ndarray)

    def decode(self, i: int, kind: InputKind, min_side: int | None = None) -> Any:
        """Item `i` decoded by `kind` (an in-memory array, or a file read); a `BadInput` names what failed.
        `min_side` (images): a large JPEG may be decoded at reduced scale, its shorter side kept >= it."""
        if isinstance(self.items, np.ndarray):
            return kind.from_memory(self.items[i])
        if not isinstance(self.items, list):  # `ShardMembers`: bytes read from a shard
            return self.items.decode(i, kind, min_side)
        return kind.read(self.items[i], min_side) if min_side else kind.read(self.items[i])


@dataclass
class DataSplits:
    """What training needs to know about a data set."""

    name: str
    classes: list[str]
    train: Samples
    val: Samples | None
    test: Samples | None = None
    small_images: bool = False  # native size <= 64 px: train a small CNN at native size
    native_size: int | None = None
    mirror_safe: bool = True  # False where a flip changes the label (digits)
    notes: list[str] = field(default_factory=list)
    input_kind: str = DEFAULT_KIND  # which `deepcat.inputs` kind the items are
    noise: list[str] = field(default_factory=list)  # sound files mixed into training clips (Speech Commands')

    def split(self, name: str) -> Samples | None:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def train_per_class(self) -> int:
        """A typical class's number of training inputs: the median, so one large class does not hide many small
        ones (what `--model auto` weighs with the inputs' size)."""
        return int(np.median(np.bincount(self.train.labels, minlength=len(self.classes))))


def combined(splits: DataSplits) -> tuple[Samples, list[str], list[str]]:
    """Every split's samples in one Samples (train, then val, then test), with display names and split names."""
    parts = [(name, s) for name in SPLIT_NAMES if (s := splits.split(name)) is not None]
    if parts[0][1].in_memory:
        items: list[str] | np.ndarray | StoredInputs = np.concatenate([s.items for _, s in parts])
        names = [f"{splits.name}[{i}]" for _, s in parts for i in s.ids]
    elif not isinstance(first := parts[0][1].items, list):
        items = first.joined([s.items for _, s in parts])  # type: ignore[union-attr]
        names = list(items)
    else:
        items = [p for _, s in parts for p in s.items]
        names = list(items)
    where = [name for name, s in parts for _ in range(len(s))]
    return (
        Samples(items, np.concatenate([s.labels for _, s in parts]), np.concatenate([s.ids for _, s in parts])),
        names,
        where,
    )


def stratified_split(samples: Samples, fraction: float, seed: int) -> tuple[Samples, Samples | None]:
    """Split off `fraction` of `samples`, keeping class proportions; seeded. Fraction 0: no split."""
    from sklearn.model_selection import train_test_split

    if fraction <= 0:
        return samples, None
    index = np.arange(len(samples))
    counts = np.bincount(samples.labels)
    stratify = samples.labels if counts[counts > 0].min() >= 2 else None
    keep, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    return samples.subset(np.sort(keep)), samples.subset(np.sort(held))


def _class_folders(root: Path, kind: InputKind | None = None) -> tuple[dict[str, list[str]], InputKind]:
    """Class name -> its files of the data's kind (chosen from the files themselves unless given)."""
    listing = {
        sub.name: [p for p in sub.rglob("*") if p.is_file() and not p.name.startswith(".")]
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    }
    kind = kind or kind_of_files([p for files in listing.values() for p in files])
    return {name: sorted(str(p) for p in files if kind.is_file(p)) for name, files in listing.items()}, kind


def _check_classes(found: dict[str, list[str]], where: Path, kind: InputKind) -> None:
    if not found:
        raise DeepcatError(
            f"{where} has no class subfolders. Put images in one folder per class, "
            f"e.g. {where}/cat/*.jpg and {where}/dog/*.jpg"
        )
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise DeepcatError(
            f"class folder {where / empty[0]} has no {kind.name}s ({', '.join(sorted(kind.suffixes))}). "
            f"Add some or remove the folder"
        )
    if len(found) < 2:
        only = next(iter(found))
        raise DeepcatError(
            f"{where} has a single class ({only!r}); a classifier needs at least two "
            f"class subfolders, e.g. {where}/cat and {where}/dog"
        )


def _samples_from(found: dict[str, list[str]], classes: list[str], where: Path) -> Samples:
    items, labels = [], []
    for name, files in found.items():
        if name not in classes:
            raise DeepcatError(f"{where / name} is a class not in the training classes {classes}. Rename or remove it")
        items += files
        labels += [classes.index(name)] * len(files)
    return Samples(items, np.asarray(labels, dtype=np.int64))


def from_folder(root: Path, *, val_fraction: float, seed: int, kind: InputKind | None = None) -> DataSplits:
    if (root / SPEECH_COMMANDS_TEST_LIST).is_file():
        return from_speech_commands(root, kind=kind)
    splits = {s: root / s for s in SPLIT_NAMES if (root / s).is_dir()}
    if "train" in splits:
        train_found, kind = _class_folders(splits["train"], kind)
        _check_classes(train_found, splits["train"], kind)
        classes = list(train_found)
        train = _samples_from(train_found, classes, splits["train"])
        parts = {s: _samples_from(_class_folders(p, kind)[0], classes, p) for s, p in splits.items() if s != "train"}
        val = parts.get("val")
        if val is None:
            train, val = stratified_split(train, val_fraction, seed)
        return DataSplits(root.name, classes, train, val, parts.get("test"), input_kind=kind.name)
    found, kind = _class_folders(root, kind)
    _check_classes(found, root, kind)
    classes = list(found)
    train, val = stratified_split(_samples_from(found, classes, root), val_fraction, seed)
    return DataSplits(root.name, classes, train, val, input_kind=kind.name)


SPEECH_COMMANDS_TEST_LIST = "testing_list.txt"
SPEECH_COMMANDS_NOISE = "_background_noise_"


def from_speech_commands(root: Path, *, kind: InputKind | None = None) -> DataSplits:
    """Google Speech Commands' layout: one folder per word, `validation_list.txt` and `testing_list.txt` naming
    the clips of those splits (by speaker, so no voice is in two splits), and `_background_noise_/`, whose clips
    are mixed into training clips rather than learnt as a class."""
    kind = kind or input_kind("audio")
    found, _ = _class_folders(root, kind)
    found.pop(SPEECH_COMMANDS_NOISE, None)
    _check_classes(found, root, kind)
    classes = list(found)
    listed = {}
    for split, name in (("val", "validation_list.txt"), ("test", SPEECH_COMMANDS_TEST_LIST)):
        path = root / name
        lines = path.read_text().split() if path.is_file() else []
        missing = [line for line in lines if not (root / line).is_file()]
        if missing:
            raise DeepcatError(
                f"{path} names {len(missing)} clip(s) that are not there, e.g. {root / missing[0]}; "
                f"restore them or remove their lines"
            )
        listed[split] = {str(root / line) for line in lines}
    everything = _samples_from(found, classes, root)
    where = np.array(
        ["test" if p in listed["test"] else "val" if p in listed["val"] else "train" for p in everything.items]
    )
    parts = {s: everything.subset(np.flatnonzero(where == s)) for s in SPLIT_NAMES}
    noise = sorted(str(p) for p in (root / SPEECH_COMMANDS_NOISE).glob("*") if kind.is_file(p))
    return DataSplits(
        root.name,
        classes,
        parts["train"],
        parts["val"] if len(parts["val"]) else None,
        parts["test"] if len(parts["test"]) else None,
        input_kind=kind.name,
        noise=noise,
    )


def from_csv(path: Path, *, val_fraction: float, seed: int, kind: InputKind | None = None) -> DataSplits:
    """CSV with columns path,label (and optionally split); relative paths are relative to the CSV. Rows labelled
    `NONE_OF_THESE` are left out."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise DeepcatError(
                f"{path} is missing the column(s) {', '.join(missing)}; its header is "
                f"{','.join(columns) or '(empty)'}. The first line must be: path,label"
            )
        rows = [r for r in reader if r["label"] != NONE_OF_THESE]
    if not rows:
        raise DeepcatError(f"{path} has a header but no rows")
    classes = sorted({r["label"] for r in rows})
    if len(classes) < 2:
        raise DeepcatError(f"{path} has a single label ({classes[0]!r}); a classifier needs at least two")
    by_split: dict[str, tuple[list[str], list[int]]] = {}
    for r in rows:
        p = Path(r["path"])
        p = p if p.is_absolute() else path.parent / p
        items, labels = by_split.setdefault((r.get("split") or "train").strip(), ([], []))
        items.append(str(p))
        labels.append(classes.index(r["label"]))
    unknown = set(by_split) - set(SPLIT_NAMES)
    if unknown:
        raise DeepcatError(f"{path}: split must be train, val or test; received {sorted(unknown)}")
    parts = {s: Samples(i, np.asarray(lab, dtype=np.int64)) for s, (i, lab) in by_split.items()}
    if "train" not in parts:
        raise DeepcatError(f"{path} has no training rows (split column empty or 'train')")
    train, val = parts["train"], parts.get("val")
    if val is None:
        train, val = stratified_split(train, val_fraction, seed)
    kind = kind or kind_of_files([Path(p) for p in train.items])
    return DataSplits(path.stem, classes, train, val, parts.get("test"), input_kind=kind.name)


def with_native_size(splits: DataSplits) -> DataSplits:
    """Peek at a few files: small images (<= 64 px) get the small-image recipe."""
    if splits.train.in_memory:
        return splits
    side = input_kind(splits.input_kind).native_size(list(splits.train.items))
    if side is not None and side <= 64:
        splits.small_images, splits.native_size = True, side
    return splits


def only_classes(splits: DataSplits, names: list[str]) -> DataSplits:
    """Keep the classes `names` (in that order) and drop the images of every other class."""
    from deepcat.errors import did_you_mean

    for name in names:
        if name not in splits.classes:
            raise DeepcatError(
                f"class {name!r} is not in {splits.name}{did_you_mean(name, splits.classes)}; "
                f"its classes are {', '.join(splits.classes)}"
            )
    if len(names) < 2:
        raise DeepcatError(f"--classes needs at least two classes; received {names}")
    remap = np.full(len(splits.classes), -1)
    remap[[splits.classes.index(n) for n in names]] = np.arange(len(names))

    def keep(samples: Samples) -> Samples:
        kept = samples.subset(np.nonzero(remap[samples.labels] >= 0)[0])
        kept.labels = remap[kept.labels]
        return kept

    return dataclasses.replace(
        splits,
        classes=list(names),
        train=keep(splits.train),
        val=None if splits.val is None else keep(splits.val),
        test=None if splits.test is None else keep(splits.test),
    )
