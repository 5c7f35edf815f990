"""Keyword spotting over a long recording (`deepcat listen MODEL FILE`).

The sound model reads a window of its own clip length every `hop_ms`. Each class's probability is averaged over
the last `smooth` windows (a window the model answers `unknown` counts as no keyword at all), and a keyword is
reported when its average reaches `threshold`; then nothing is reported for `refractory_ms`, because one spoken
word fills several overlapping windows. This is the posterior smoothing of small-footprint keyword spotters
(Chen, Parada and Heigold, 2014), with the model's own `unknown` score as the garbage model. Classes named as
Speech Commands names its non-words (`_silence_`, `_unknown_`) are never reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepcat.errors import DeepcatError

if TYPE_CHECKING:
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inference.torch_model import Classifier

__all__ = [
    "NOT_KEYWORDS",
    "Detection",
    "Spotted",
    "Spotting",
    "listen",
    "scored",
    "smoothed",
    "spot",
    "window_starts",
]

NOT_KEYWORDS = frozenset({"_silence_", "_unknown_", "_background_noise_"})


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Spotting:
    """How detections are made from the windows' answers (`deepcat listen`'s flags are generated from it)."""

    hop_ms: float = _opt(100.0, "a window every this many ms (a 1 s word is seen in about ten)")
    smooth: int = _opt(3, "windows whose probabilities are averaged")
    threshold: float = _opt(0.7, "average probability a keyword must reach to be reported")
    refractory_ms: float = _opt(1000.0, "after a detection, nothing is reported for this many ms")


@dataclass(frozen=True)
class Detection:
    """One keyword heard: `seconds` is when it was reported, the end of the window whose average crossed the
    threshold (so the latency from the end of the word is at most about one window)."""

    label: str
    seconds: float
    score: float  # the smoothed probability


def window_starts(samples: int, window: int, hop: int) -> np.ndarray:
    """The first sample of every `window`-sample window, `hop` apart, over a recording of `samples` (a recording
    shorter than a window is one window, padded)."""
    if samples <= window:
        return np.zeros(1, np.int64)
    return np.arange(0, samples - window + 1, hop, dtype=np.int64)


def smoothed(probabilities: np.ndarray, smooth: int) -> np.ndarray:
    """(T, C) -> (T, C): each row the mean of itself and the `smooth` - 1 rows before it (fewer at the start)."""
    total = np.cumsum(probabilities, axis=0)
    total[smooth:] = total[smooth:] - total[:-smooth].copy()
    counts = np.minimum(np.arange(1, len(probabilities) + 1), smooth)
    return total / counts[:, None]


def spot(probabilities: np.ndarray, ends_s: np.ndarray, classes: Sequence[str], spotting: Spotting) -> list[Detection]:
    """Detections from each window's class probabilities (T, C) and the time each window ends."""
    keyword = np.array([name not in NOT_KEYWORDS for name in classes])
    average = smoothed(probabilities, spotting.smooth) * keyword
    found: list[Detection] = []
    quiet_until = -np.inf
    for end, row in zip(ends_s, average):
        best = int(row.argmax())
        if row[best] >= spotting.threshold and end >= quiet_until:
            found.append(Detection(classes[best], round(float(end), 3), float(row[best])))
            quiet_until = end + spotting.refractory_ms / 1000
    return found


def listen(
    classifier: Classifier | ExportedClassifier,
    recording: np.ndarray | str | Path,
    spotting: Spotting,
    *,
    reject: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> list[Detection]:
    """Detections in `recording` (a sound file, or mono float32 samples at 16 kHz) by a sound classifier (a
    run's, or an export's)."""
    from tqdm import tqdm

    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inputs import kind_of_meta
    from deepcat.inputs.audio import SAMPLE_RATE, AudioPreprocess, read_clip

    pre: object
    if isinstance(classifier, ExportedClassifier):
        kind, pre = kind_of_meta(classifier.meta).name, AudioPreprocess.from_dict(classifier.meta)
    else:
        kind, pre = classifier.kind.name, classifier.preprocess
    if kind != "audio" or not isinstance(pre, AudioPreprocess):
        raise DeepcatError(
            f"listen needs a sound model; {classifier.name} classifies {kind}s (train one on a folder of clips: "
            "deepcat train spoken-digits)"
        )
    if not isinstance(recording, np.ndarray):
        recording = read_clip(recording)
    hop = max(1, int(round(spotting.hop_ms / 1000 * SAMPLE_RATE)))
    starts = window_starts(len(recording), pre.samples, hop)
    classes = list(classifier.classes)
    probabilities = np.zeros((len(starts), len(classes)), np.float32)
    column = {name: i for i, name in enumerate(classes)}
    chunks = range(0, len(starts), batch_size * 16)  # windows in chunks: bounded memory over an hour of audio
    for first in tqdm(chunks, desc="listen", unit="chunk", disable=not progress or len(chunks) < 2):
        chunk = starts[first : first + batch_size * 16]
        windows = [recording[s : s + pre.samples] for s in chunk]
        answers = classifier.predict(windows, top_k=len(classes), reject=reject, batch_size=batch_size)
        assert isinstance(answers, list)  # noqa: S101 - a list of inputs gets a list of answers
        for row, answer in enumerate(answers, start=first):
            if answer.label in column:  # `unknown` (rejected) or unreadable: no keyword in this window
                for name, p in answer.top:
                    probabilities[row, column[name]] = p
    ends = (starts + min(pre.samples, len(recording))) / SAMPLE_RATE
    return spot(probabilities, ends, classes, spotting)


@dataclass(frozen=True)
class Spotted:
    """How detections in a recording compare with the words spoken in it."""

    words: int  # keywords spoken
    detected: int  # ... reported with their label in time
    false_activations: int  # reports that match no spoken keyword
    hours: float  # the recording's length
    latencies_s: list[float]  # each detected word: from the end of the word to its report

    @property
    def detection_rate(self) -> float:
        return self.detected / self.words if self.words else 0.0

    @property
    def false_per_hour(self) -> float:
        return self.false_activations / self.hours

    @property
    def median_latency_s(self) -> float | None:
        return float(np.median(self.latencies_s)) if self.latencies_s else None


def scored(
    detections: list[Detection], words: list[tuple[str, float, float]], seconds: float, *, late_s: float = 1.0
) -> Spotted:
    """A spoken keyword (label, start, end in seconds) is detected when a report of its label comes between its
    start and `late_s` after its end; each report counts once; the others are false activations."""
    unused = list(detections)
    latencies = []
    for label, start, end in words:
        match = next((d for d in unused if d.label == label and start <= d.seconds <= end + late_s), None)
        if match is not None:
            unused.remove(match)
            latencies.append(round(match.seconds - end, 3))
    return Spotted(len(words), len(latencies), len(unused), seconds / 3600, latencies)
