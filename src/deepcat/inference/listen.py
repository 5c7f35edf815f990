"""Keyword spotting over a long recording or the microphone (`deepcat listen MODEL FILE`, `... --mic`).

The sound model reads a window of its own clip length every `hop_ms`. Each class's probability is averaged over
the last `smooth` windows (a window the model answers `unknown` counts as no keyword at all), and a keyword is
reported when its average reaches its threshold (`threshold`, or the class's own in `thresholds`); then nothing
is reported for `refractory_ms`, because one spoken word fills several overlapping windows. This is the
posterior smoothing of small-footprint keyword spotters (Chen, Parada and Heigold, 2014), with the model's own
`unknown` score as the garbage model. Classes named as Speech Commands names its non-words (`_silence_`,
`_unknown_`) are never reported.

A file and the microphone go through the same windows (`listen_windows`: each log-mel frame computed once, the
network in ONNX Runtime) and the same `Spotter`: a file's windows in large batches, the microphone's as its
samples arrive (`listen_stream`), so a recording played block by block gives the detections the file gives.
The recording's first and last windows report nothing (its edges: padding, a word cut in half).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.inputs.audio import NOT_KEYWORDS

if TYPE_CHECKING:
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inference.torch_model import Classifier

__all__ = [
    "NOT_KEYWORDS",
    "Detection",
    "Spotted",
    "Spotter",
    "Spotting",
    "listen",
    "listen_stream",
    "microphone",
    "resolved",
    "scored",
    "spot",
    "window_probabilities",
    "window_probabilities_one_by_one",
    "window_starts",
]


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Spotting:
    """How detections are made from the windows' answers (`deepcat listen`'s flags are generated from it)."""

    hop_ms: float = _opt(100.0, "a window every this many ms (a 1 s word is seen in about ten)")
    smooth: int = _opt(3, "windows whose probabilities are averaged")
    threshold: float = _opt(0.7, "average probability a keyword must reach to be reported")
    refractory_ms: float = _opt(1000.0, "after a detection, nothing is reported for this many ms")
    # a word that is heard too often (or too rarely) gets its own: {"six": 0.9}
    thresholds: dict[str, float] = field(
        default_factory=dict, metadata={"help": "a class's own threshold, in place of --threshold"}
    )
    false_alarms_per_hour: float | None = _opt(
        None,
        "each keyword's threshold for at most this many false activations an hour on the run's held-out stream of "
        "other speech (saved when it trained with _unknown_/_silence_ clips); a --class-threshold still wins",
    )

    def limits(self, classes: Sequence[str]) -> np.ndarray:
        """Each class's threshold; an error names a class the model does not have."""
        missing = sorted(set(self.thresholds) - set(classes))
        if missing:
            raise DeepcatError(f"thresholds for {missing}, which the model does not hear; its classes: {list(classes)}")
        bad = {name: t for name, t in {**self.thresholds, "(default)": self.threshold}.items() if not 0 < t <= 1}
        if bad:
            raise DeepcatError(f"a threshold is an average probability, above 0 and at most 1: {bad}")
        return np.array([self.thresholds.get(name, self.threshold) for name in classes])


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


class Spotter:
    """The detector's state over a stream of windows: the last `smooth` windows' probabilities and when the
    refractory period ends. `push` one window's class probabilities at a time; it returns the detection, if any."""

    def __init__(self, classes: Sequence[str], spotting: Spotting):
        self.classes, self.spotting = list(classes), spotting
        self.keyword = np.array([name not in NOT_KEYWORDS for name in classes])
        self.limits = spotting.limits(classes)
        self.recent: deque[np.ndarray] = deque(maxlen=spotting.smooth)
        self.quiet_until = -np.inf

    def push(self, probabilities: np.ndarray, end_s: float, *, edge: bool = False) -> Detection | None:
        """`edge`: the recording's first or last window, which is smoothed with the others but reports nothing
        (and so starts no refractory period that would hide the word in the windows next to it)."""
        self.recent.append(np.asarray(probabilities, np.float64))
        if edge:
            return None
        average = np.mean(self.recent, axis=0) * self.keyword
        heard = average >= self.limits  # of the words over their thresholds, the likeliest
        if not heard.any() or end_s < self.quiet_until:
            return None
        best = int(np.where(heard, average, -1.0).argmax())
        self.quiet_until = end_s + self.spotting.refractory_ms / 1000
        return Detection(self.classes[best], round(float(end_s), 3), float(average[best]))


def resolved(spotting: Spotting, classifier: Classifier | ExportedClassifier) -> Spotting:
    """`spotting` with the thresholds its `false_alarms_per_hour` picks from the model's saved false-alarm curve
    (a class given its own in `thresholds` keeps it); unchanged without a rate."""
    from deepcat.inference.false_alarms import thresholds_for

    if spotting.false_alarms_per_hour is None:
        return spotting
    calibration = classifier.calibration
    if not calibration.false_alarms:
        raise DeepcatError(
            f"{classifier.name} has no false-alarm curve to pick thresholds from: it was trained without clips of "
            "other speech and noise (folders _unknown_ and _silence_, as deepcat train spoken-commands has) or "
            "before deepcat saved one; give --threshold (or --class-threshold) instead"
        )
    picked = thresholds_for(calibration.false_alarms, spotting.false_alarms_per_hour)
    return dataclasses.replace(spotting, thresholds={**picked, **spotting.thresholds})


def spot(
    probabilities: np.ndarray,
    ends_s: np.ndarray,
    classes: Sequence[str],
    spotting: Spotting,
    *,
    edges: bool = False,
) -> list[Detection]:
    """Detections from each window's class probabilities (T, C) and the time each window ends; with `edges`, the
    first and last windows are a recording's edges and report nothing (see `listen`)."""
    spotter = Spotter(classes, spotting)
    last = len(probabilities) - 1
    found = (
        spotter.push(row, float(end), edge=edges and i in (0, last))
        for i, (row, end) in enumerate(zip(probabilities, ends_s))
    )
    return [d for d in found if d is not None]


def _sound_preprocess(classifier: Classifier | ExportedClassifier) -> Any:
    """The classifier's AudioPreprocess; a clear error for a model of another kind."""
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inputs.audio import AudioPreprocess

    pre: object
    if isinstance(classifier, ExportedClassifier):
        kind, pre = classifier.meta.kind.name, classifier.meta.preprocess
    else:
        kind, pre = classifier.kind.name, classifier.preprocess
    if kind != "audio" or not isinstance(pre, AudioPreprocess):
        raise DeepcatError(
            f"listen needs a sound model; {classifier.name} classifies {kind}s (train one on a folder of clips: "
            "deepcat train spoken-digits)"
        )
    return pre


def window_probabilities_one_by_one(
    classifier: Classifier | ExportedClassifier, windows: list[np.ndarray], *, reject: bool, batch_size: int
) -> np.ndarray:
    """(len(windows), classes): each window's class probabilities through `predict`, the graph's front end run on
    every window; all zero where the model answers `unknown` (rejected: no keyword) or cannot read the window.
    The slow reference `window_probabilities` is held to (in tests and benchmarks/listen_speed.py)."""
    classes = list(classifier.classes)
    column = {name: i for i, name in enumerate(classes)}
    probabilities = np.zeros((len(windows), len(classes)), np.float32)
    answers = classifier.predict(windows, top_k=len(classes), reject=reject, batch_size=batch_size)
    assert isinstance(answers, list)  # noqa: S101 - a list of inputs gets a list of answers
    for row, answer in enumerate(answers):
        if answer.label in column:
            for name, p in answer.top:
                probabilities[row, column[name]] = p
    return probabilities


def window_probabilities(
    classifier: Classifier | ExportedClassifier,
    recording: np.ndarray,
    *,
    hop_ms: float,
    reject: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Each window's first sample (T,) and class probabilities (T, classes) over 16 kHz `recording`, each log-mel
    frame computed once (`listen_windows`); a recording shorter than a window is one window, padded as `predict`
    pads a clip."""
    from deepcat.inference.listen_windows import StreamWindows, window_scorer
    from deepcat.inputs.audio import SAMPLE_RATE, fit_length
    from deepcat.progress import progress_bar

    pre = _sound_preprocess(classifier)
    if len(recording) < pre.samples:
        recording = fit_length(recording, pre.samples)
    hop = _hop(hop_ms)
    starts = window_starts(len(recording), pre.samples, hop)
    scorer = window_scorer(classifier, reject=reject, windows=len(starts))
    windows = StreamWindows(pre, hop, batch=batch_size, spectrograms=scorer.spectrograms)
    probabilities = np.zeros((len(starts), len(classifier.classes)), np.float32)
    done, block = 0, 60 * SAMPLE_RATE  # a minute at a time: a progress bar that moves
    blocks = range(0, len(recording), block)
    for first in progress_bar(blocks, desc="listen", unit="min", enabled=progress and len(blocks) > 1):
        for _, inputs in windows.add(recording[first : first + block]):
            probabilities[done : done + len(inputs)] = scorer(inputs)
            done += len(inputs)
    return starts, probabilities


def _hop(hop_ms: float) -> int:
    from deepcat.inputs.audio import SAMPLE_RATE

    return max(1, int(round(hop_ms / 1000 * SAMPLE_RATE)))


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
    run's, or an export's). Nothing is reported from the recording's first and last window: they hold its edges
    (an encoder's padding of silence, a word cut in half; a recording shorter than a window is all padding), and
    a word spoken whole near an edge is also in the windows next to them. A single clip is `predict`'s."""
    from deepcat.inputs.audio import SAMPLE_RATE, read_clip

    pre = _sound_preprocess(classifier)
    spotting = resolved(spotting, classifier)
    if not isinstance(recording, np.ndarray):
        recording = read_clip(recording)
    starts, probabilities = window_probabilities(
        classifier, recording, hop_ms=spotting.hop_ms, reject=reject, batch_size=batch_size, progress=progress
    )
    ends = (starts + min(pre.samples, len(recording))) / SAMPLE_RATE
    return spot(probabilities, ends, classifier.classes, spotting, edges=True)


def listen_stream(
    classifier: Classifier | ExportedClassifier,
    blocks: Iterable[np.ndarray],
    spotting: Spotting,
    *,
    reject: bool = True,
) -> Iterator[Detection]:
    """Detections as mono 16 kHz `blocks` of any size arrive (the microphone's, or a file's played block by
    block): each window, `hop_ms` after the last, is scored as soon as its last sample is in, and its detection
    said when the next window is in (the stream's first and last windows report nothing, as `listen`'s). Memory
    stays bounded however long the stream (a fixed buffer of samples, `listen_windows.StreamWindows`)."""
    from deepcat.inference.listen_windows import StreamWindows, window_scorer
    from deepcat.inputs.audio import SAMPLE_RATE

    pre = _sound_preprocess(classifier)
    spotting = resolved(spotting, classifier)
    scorer = window_scorer(classifier, reject=reject)
    windows = StreamWindows(pre, _hop(spotting.hop_ms), spectrograms=scorer.spectrograms)
    spotter = Spotter(classifier.classes, spotting)
    held: Detection | None = None  # the latest window's: said once another window shows it was not the last
    for block in blocks:
        for starts, inputs in windows.add(block):
            for start, row in zip(starts, scorer(inputs)):
                if held is not None:
                    yield held
                held = spotter.push(row, (int(start) + pre.samples) / SAMPLE_RATE, edge=start == 0)


def microphone(hop_ms: float, device: str | int | None = None) -> Iterator[np.ndarray]:
    """The default (or `device`) input's samples, mono at 16 kHz, in blocks of `hop_ms`, until interrupted.
    PortAudio through `sounddevice` (`pip install 'deepcat[mic]'`). The device is opened at once, so a missing
    library or microphone is said before a model loads."""
    import queue

    from deepcat.inputs.audio import SAMPLE_RATE

    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the package is there, the PortAudio library is not
        raise DeepcatError(
            f"listening to the microphone needs sounddevice and PortAudio ({e}): pip install 'deepcat[mic]' "
            "(and on Debian/Ubuntu: apt-get install libportaudio2)"
        ) from None
    arrived: queue.Queue[np.ndarray] = queue.Queue()

    def on_block(data: np.ndarray, frames: int, time: Any, status: Any) -> None:
        arrived.put(data[:, 0].copy())

    block = max(1, int(round(hop_ms / 1000 * SAMPLE_RATE)))
    try:
        stream = sounddevice.InputStream(
            samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=block, device=device, callback=on_block
        )
    except Exception as e:  # noqa: BLE001 - PortAudio's errors: no device, a rate it cannot take
        raise DeepcatError(f"could not open the microphone ({e}); list devices with: python -m sounddevice") from None

    def blocks() -> Iterator[np.ndarray]:
        with stream:
            while True:
                yield arrived.get()

    return blocks()


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
