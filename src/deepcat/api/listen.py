"""`deepcat listen`: keyword spotting in a recording or live from the microphone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from deepcat.api.load import load
from deepcat.errors import DeepcatError
from deepcat.inference.listen import Spotting

__all__ = ["listen"]

if TYPE_CHECKING:
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inference.listen import Detection
    from deepcat.inference.torch_model import Classifier


@overload
def listen(
    model: str | Path | Classifier | ExportedClassifier,
    recording: str | Path,
    *,
    mic: Literal[False] = ...,
    mic_device: str | None = ...,
    spotting: Spotting | None = ...,
    reject: bool = ...,
    progress: bool = ...,
) -> list[Detection]: ...


@overload
def listen(
    model: str | Path | Classifier | ExportedClassifier,
    recording: None = ...,
    *,
    mic: Literal[True],
    mic_device: str | None = ...,
    spotting: Spotting | None = ...,
    reject: bool = ...,
    progress: bool = ...,
) -> Iterator[Detection]: ...


def listen(
    model: str | Path | Classifier | ExportedClassifier,
    recording: str | Path | None = None,
    *,
    mic: bool = False,
    mic_device: str | None = None,
    spotting: Spotting | None = None,
    reject: bool = True,
    progress: bool = False,
) -> list[Detection] | Iterator[Detection]:
    """Keywords heard in a recording (or live, from the microphone) by a sound model: a window of the model's
    clip length every `hop_ms`, each class's probability averaged over the last `smooth` windows, a keyword
    reported when that reaches `threshold`, then nothing for `refractory_ms`.

    Args:
        model: a sound run folder or its exported file (in Python also a loaded classifier).
        recording: a wav, flac, ogg or mp3 file.
        mic: listen to the microphone instead, until interrupted (`pip install 'deepcat[mic]'`).
        mic_device: the input device's name or number (python -m sounddevice).
        spotting: the window, smoothing, threshold and refractory settings (default: `Spotting()`).
        reject: windows the model answers `unknown` (no word it knows, or other speech) hold no keyword (off:
            every window counts).
        progress: show a bar (a recording).

    Returns:
        For a recording, one `Detection` (label, seconds from the start when it was reported, smoothed
        probability) per keyword; with `mic`, the detections as they are heard (an endless iterator).

    Examples:
        >>> [(d.label, d.seconds) for d in deepcat.listen("runs/spoken-digits", "call.wav")]
        >>> for heard in deepcat.listen("runs/spoken-digits", mic=True): print(heard.label)
    """
    from deepcat.inference.listen import listen as listen_to
    from deepcat.inference.listen import listen_stream, microphone

    spotting = spotting or Spotting()
    if (recording is None) != mic:
        raise DeepcatError("listen to a RECORDING or to the microphone (--mic), one of the two")
    if mic:
        device = int(mic_device) if mic_device is not None and mic_device.isdigit() else mic_device
        blocks = microphone(spotting.hop_ms, device=device)  # opened first: a missing microphone is said at once
        classifier = load(model) if isinstance(model, (str, Path)) else model
        return listen_stream(classifier, blocks, spotting, reject=reject)
    assert recording is not None  # noqa: S101 - checked above
    classifier = load(model) if isinstance(model, (str, Path)) else model
    return listen_to(classifier, recording, spotting, reject=reject, progress=progress)
