"""Kinds of input: all that deepcat assumes about what it classifies, behind one small interface per kind.

Splits, training, evaluation, calibration, export, serving and the report are shared; an `InputKind` says
how a file of that kind is recognised, decoded, checked by the audit, turned into the model's input (with
numpy alone, for ONNX Runtime and the server, and with torch for training), and what the exported graph
takes. Images are the first kind (`image.py`); a new kind is one module that adds itself to `INPUT_KINDS`.

The kind is chosen by the data (the files' suffixes, or a built-in data set) and saved in model.json and
in the exported model's metadata (`input_kind`, read back by deepcat.run_meta), so every consumer decodes as
training did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from deepcat.registry import Registry

__all__ = [
    "DEFAULT_KIND",
    "INPUT_KINDS",
    "BadInput",
    "Facts",
    "Hints",
    "InputKind",
    "ModelChoice",
    "Preprocessing",
    "Words",
    "all_suffixes",
    "input_kind",
    "kind_of_files",
]


class BadInput(Exception):
    """An input that cannot be read; str() names the file (or request part) and the reason. `status` and `reason`
    say how the server answers it (a 4xx and a short machine-readable kind)."""

    def __init__(self, detail: str, *, status: int = 400, reason: str = "corrupt_input"):
        super().__init__(detail)
        self.status, self.reason = status, reason


def full_size(pre: Any) -> None:
    """No reduced-size decoding. The kinds' callables are named functions, not lambdas: a data loader's workers
    receive the kind pickled where processes start by spawning (macOS, Windows, a spawned child), and a lambda
    does not pickle."""
    return None


@dataclass
class Facts:
    """What the audit's one pass learns about one input; `error` is set when it could not be read."""

    content: str = ""  # hash of the bytes (or array): exact duplicates
    fingerprint: int = 0  # 64-bit perceptual hash: near-duplicate candidates
    thumb: bytes = b""  # a small rendering that confirms a near-duplicate pair
    traits: dict[str, Any] = field(default_factory=dict)  # kind-specific: size, colour, duration, ...
    error: str | None = None


class Preprocessing(Protocol):
    """A kind's preprocessing dataclass (images: `image.Preprocess`; sound: `audio.AudioPreprocess`): saved in
    model.json and the export's metadata, read back by `InputKind.preprocess`."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Hints:
    """What a kind's default preprocessing may draw on (`InputKind.default_preprocess`)."""

    model_config: dict[str, Any] | None  # the model's own pretrained data config (timm's); None for deepcat's own
    input_size: int | None  # --image-size, if given
    native_size: int | None  # the data's size, when the splits measured it (small images)
    clip_seconds: float = 1.0  # --clip-seconds


@dataclass(frozen=True)
class ModelChoice:
    """What `--model auto` trains on some data (`InputKind.auto_model`), and why: the run prints the reason, so a
    user who would choose otherwise knows what the choice rests on."""

    model: str  # a registered or timm model name
    reason: str  # a phrase, e.g. "photos: ImageNet-pretrained EfficientNet-Lite0, fine-tuned"


@dataclass(frozen=True)
class Words:
    """How messages, tables and the report name a kind's inputs."""

    noun: str  # one input, as a table column: "image", "clip"
    plural: str  # "images", "sound clips"
    sizes: str  # what the audit's size summary measures: "sizes", "durations"
    picture: str  # what a Grad-CAM panel shows: "image", "log-mel spectrogram"
    source: str  # what "like the training data" means in the model card


@dataclass(frozen=True)
class InputKind:
    """One kind of input. Numpy-only members serve ONNX Runtime and the server; the tensor members (transforms,
    front end, example) import torch when called."""

    name: str
    suffixes: frozenset[str]  # files of this kind
    media_types: tuple[str, ...]  # raw request bodies accepted (prefixes)
    read: Callable[..., Any]  # (file[, min_side]) -> item; BadInput names it
    from_memory: Callable[[Any], Any]  # array / object -> decoded item
    decode_bytes: Callable[[bytes, str, int, Any], Any]  # (body, name, size limit, the model's preprocessing) ->
    #                                                       decoded item, possibly reduced for the model
    preprocess: Callable[[dict[str, Any]], Any]  # model.json "preprocess" (or the export metadata) -> its dataclass
    to_model_input: Callable[[Any, Any], np.ndarray]  # (decoded, preprocessing) -> float32 input
    eval_transform: Callable[[Any], Callable[[Any], Any]]  # preprocess -> (decoded -> tensor)
    train_transform: Callable[..., Callable[[Any], Any]]  # (preprocess, splits, augment, hflip) -> same
    front_end: Callable[[Any], Any]  # preprocess -> nn.Module inside the graph
    picture: Callable[[Any, Any], np.ndarray]  # (network input, preprocess) -> (H, W, 3) uint8
    show: Callable[[Any], Any]  # decoded item -> what a plot draws for it
    example: Callable[[Any, int], Any]  # (preprocess, batch) -> a model input tensor
    input_spec: Callable[[Any], dict[str, Any]]  # the export metadata's "input"
    inspect_file: Callable[[str], Facts]  # the audit's pass over one file
    inspect_array: Callable[[np.ndarray], Facts]  # ... over one in-memory item
    flags: Callable[[list[Facts], list[str]], tuple[dict[str, Any], dict[str, list[str]]]]
    # ^ the audit's kind-specific findings: (summary of sizes, {flag: [names]}); FLAG_LABELS names each flag
    flag_labels: dict[str, str]
    native_size: Callable[[Sequence[str]], int | None]  # a few files' largest side (None: n/a)
    default_limit: int  # decode_bytes' size limit unless a server sets it
    words: Words
    default_preprocess: Callable[[Hints], Any]  # -> the preprocessing a new run of this kind starts with
    auto_model: Callable[[Any], ModelChoice]  # splits -> the model `--model auto` trains, and why
    sized: bool = True  # --image-size and progressive resizing apply to the network's input
    mirrorable: bool = True  # a horizontal flip is a valid augmentation (when the data set allows it)
    default_augment: str = "light"  # the preset `--augment auto` trains with
    default_epochs: int = 10  # what `--epochs auto` trains for
    min_side: Callable[[Any], int | None] = full_size  # reduced-size decoding of training reads
    size_limit: str = "max_pixels"  # the server limit decode_bytes is given
    channels: int = 3  # channels of what the network sees

    def is_file(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes and not path.name.startswith(".")


INPUT_KINDS: Registry[InputKind] = Registry("input kind")
DEFAULT_KIND = "image"  # runs and exports saved before kinds existed are images


def input_kind(name: str | None = None) -> InputKind:
    """The kind called `name` (default: images). Importing the kinds here keeps the registry complete."""
    from deepcat.inputs import audio_kind, image_kind  # noqa: F401 - register the kinds

    return INPUT_KINDS.get(name or DEFAULT_KIND)


def kind_of_files(paths: Sequence[Path]) -> InputKind:
    """The kind most of `paths` belong to (a folder of photos with a stray .txt is still photos)."""
    input_kind()
    counts = {
        name: sum(kind.suffixes.__contains__(p.suffix.lower()) for p in paths) for name, kind in INPUT_KINDS.items()
    }
    best = max(counts, key=counts.__getitem__)
    return INPUT_KINDS.get(best if counts[best] else DEFAULT_KIND)


def all_suffixes() -> list[str]:
    input_kind()
    return sorted({s for _, kind in INPUT_KINDS.items() for s in kind.suffixes})
