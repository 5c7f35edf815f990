"""Built-in data sets, by name: digits (embedded), fashion-mnist, oxford-pets; for sound, spoken-digits and
spoken-commands (generated offline) and speech-commands.

`digits` ships inside scikit-learn, so it needs no download; `spoken-digits` is generated once with
espeak-ng into the data cache. The others look in `data_root` (or a folder given as `name:PATH`), then in
Debian's package for Fashion-MNIST, and only then download (torchvision's downloader).
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deepcat.data.sources import DataSplits, Samples, from_folder, from_speech_commands, stratified_split
from deepcat.errors import DeepcatError

__all__ = [
    "BUILTINS",
    "DEBIAN_FASHION_MNIST",
    "FASHION_CLASSES",
    "SPEECH_COMMANDS_URL",
    "default_root",
    "digits",
    "fashion_mnist",
    "oxford_pets",
    "read_idx",
    "speech_commands",
    "spoken_commands",
    "spoken_digits",
    "without_classes",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def default_root(data_root: str | None) -> Path:
    return Path(data_root).expanduser() if data_root else Path.home() / ".cache" / "deepcat"


def digits(arg: str | None, *, val_fraction: float, seed: int, data_root: str | None) -> DataSplits:
    """scikit-learn's 1,797 8x8 handwritten digits; a fixed 20% stratified test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8)  # (N, 8, 8), values 0..16 -> 0..255
    everything = Samples(images, bunch.target.astype(np.int64))
    rest, test = stratified_split(everything, 0.2, seed=1234)  # test split fixed whatever the seed
    train, val = stratified_split(rest, val_fraction, seed)
    return DataSplits(
        "digits", [str(d) for d in range(10)], train, val, test, small_images=True, native_size=8, mirror_safe=False
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / "FashionMNIST" / "raw" / stem):
        if candidate.is_file():
            return candidate
    return None


def fashion_mnist(arg: str | None, *, val_fraction: float, seed: int, data_root: str | None) -> DataSplits:
    """Zalando's 70,000 28x28 clothing images: official 60k train / 10k test."""
    folders = [Path(arg).expanduser()] if arg else [default_root(data_root) / "fashion-mnist", DEBIAN_FASHION_MNIST]
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for folder in folders:
        paths = [_find_idx(folder, s) for s in stems]
        if all(paths):
            break
    else:
        if arg:
            raise DeepcatError(f"no Fashion-MNIST IDX files ({stems[0]}[.gz], ...) in {arg}")
        folder = folders[0]
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(folder), train=True, download=True)
            FashionMNIST(str(folder), train=False, download=True)
        except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
            raise DeepcatError(
                f"Fashion-MNIST is not on this machine and could not be downloaded ({e}). "
                f"Install Debian's dataset-fashion-mnist or pass fashion-mnist:FOLDER"
            ) from None
        paths = [_find_idx(folder, s) for s in stems]
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)  # type: ignore[arg-type]
    train, val = stratified_split(Samples(x_train, y_train.astype(np.int64)), val_fraction, seed)
    return DataSplits(
        "fashion-mnist",
        FASHION_CLASSES,
        train,
        val,
        Samples(x_test, y_test.astype(np.int64)),
        small_images=True,
        native_size=28,
    )


def oxford_pets(arg: str | None, *, val_fraction: float, seed: int, data_root: str | None) -> DataSplits:
    """Cats vs dogs from the Oxford-IIIT Pet breeds (torchvision's layout: oxford-iiit-pet/images, annotations)."""
    from torchvision.datasets import OxfordIIITPet

    root = Path(arg).expanduser() if arg else default_root(data_root)
    parts = {}
    for split in ("trainval", "test"):
        try:
            ds = OxfordIIITPet(
                str(root),
                split=split,
                target_types="binary-category",
                download=not (root / "oxford-iiit-pet" / "images").is_dir(),
            )
        except Exception as e:  # noqa: BLE001
            raise DeepcatError(
                f"Oxford-IIIT Pet not found under {root}/oxford-iiit-pet and could not be "
                f"downloaded ({e}). Pass oxford-pets:FOLDER holding oxford-iiit-pet/"
            ) from None
        parts[split] = Samples([str(p) for p in ds._images], np.asarray(ds._bin_labels, dtype=np.int64))
    train, val = stratified_split(parts["trainval"], val_fraction, seed)
    return DataSplits("oxford-pets", ["cat", "dog"], train, val, parts["test"])


def without_classes(splits: DataSplits, dropped: tuple[str, ...]) -> DataSplits:
    """`splits` without the samples of the `dropped` classes, the others' labels renumbered."""
    kept = [name for name in splits.classes if name not in dropped]
    new_label = np.array([kept.index(n) if n in kept else -1 for n in splits.classes], dtype=np.int64)

    def keep(samples: Samples | None) -> Samples | None:
        if samples is None:
            return None
        subset = samples.subset(np.flatnonzero(new_label[samples.labels] >= 0))
        subset.labels = new_label[subset.labels]
        return subset

    train = keep(splits.train)
    assert train is not None  # noqa: S101 - a training split stays a training split
    return dataclasses.replace(splits, classes=kept, train=train, val=keep(splits.val), test=keep(splits.test))


def spoken_digits(
    arg: str | None, *, val_fraction: float, seed: int, data_root: str | None, not_words: bool = False
) -> DataSplits:
    """The words zero to nine in espeak-ng's voices (see `spoken_digits.py`); the validation and test splits'
    voices are never heard in training. Generated into `data_root`/spoken-digits on first use (about 75 s on 2 cores).
    With `not_words`, also Speech Commands' `_silence_` and `_unknown_` classes (`spoken-commands`)."""
    from deepcat.data import spoken_digits as generator

    root = generator.generate(Path(arg).expanduser() if arg else default_root(data_root) / "spoken-digits")
    splits = from_folder(root, val_fraction=0.0, seed=seed)
    splits.name, splits.mirror_safe = "spoken-commands" if not_words else "spoken-digits", False
    if not not_words:
        splits = without_classes(splits, generator.NOT_WORDS)
    if val_fraction > 0:  # validation voices, like the test's, are never heard in training: an honest val split
        voices = np.array([Path(p).stem.split("+", 1)[1].rsplit("-", 1)[0] for p in splits.train.items])
        names = sorted(set(voices))
        rng = np.random.default_rng(seed)
        held = set(rng.choice(names, size=max(1, round(val_fraction * len(names))), replace=False).tolist())
        in_val = np.isin(voices, list(held))
        everything = splits.train
        splits.train, splits.val = everything.subset(np.flatnonzero(~in_val)), everything.subset(np.flatnonzero(in_val))
    return splits


def spoken_commands(arg: str | None, *, val_fraction: float, seed: int, data_root: str | None) -> DataSplits:
    """spoken-digits with Speech Commands' 12-class convention: the ten digits, `_silence_` (background alone) and
    `_unknown_` (other words). `deepcat listen` never reports those two, so other speech is not a keyword."""
    return spoken_digits(arg, val_fraction=val_fraction, seed=seed, data_root=data_root, not_words=True)


SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"


def speech_commands(arg: str | None, *, val_fraction: float, seed: int, data_root: str | None) -> DataSplits:
    """Google Speech Commands v0.02 (105,829 one-second clips of 35 words): its own validation and testing lists,
    its background noise mixed into training. Looked for in `data_root`/speech-commands, else downloaded."""
    root = Path(arg).expanduser() if arg else default_root(data_root) / "speech-commands"
    if not (root / "testing_list.txt").is_file():
        if arg:
            raise DeepcatError(f"{root} is not a Speech Commands folder (no testing_list.txt)")
        try:
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(SPEECH_COMMANDS_URL, str(root))
        except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
            raise DeepcatError(
                f"Speech Commands is not under {root} and could not be downloaded ({e}). "
                f"Extract speech_commands_v0.02.tar.gz there, or pass speech-commands:FOLDER"
            ) from None
    splits = from_speech_commands(root)
    splits.name, splits.mirror_safe = "speech-commands", False
    return splits


BUILTINS: dict[str, Callable[..., DataSplits]] = {
    "digits": digits,
    "fashion-mnist": fashion_mnist,
    "oxford-pets": oxford_pets,
    "spoken-digits": spoken_digits,
    "spoken-commands": spoken_commands,
    "speech-commands": speech_commands,
}
