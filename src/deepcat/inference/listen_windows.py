"""The windows `deepcat listen` reads, made fast: each log-mel frame of the stream is computed once and sliced
into the overlapping windows that share it, and the windows go through the network in batches, in ONNX Runtime.

A window's spectrogram is the graph front end's (`audio_tensors.LogMel`): the frames wholly inside the window are
the stream's own frames, which the next nine windows (at 100 ms hops) reuse; the two frames at each edge, which
reach into the zeros LogMel pads the clip with, are computed for each window; then each band less its mean over the
window. So each window's probabilities equal those of the window classified alone (`window_probabilities`'
reference path, which `tests/test_listen_fast.py` holds them to).

The network after the front end runs in ONNX Runtime, several times faster than PyTorch on the CPU for the
DS-CNN's small convolutions (the trial: docs/design-notes.md). An export's own graph is cut where its front end
ends; a run's network is exported to ONNX in memory first (a few seconds), which pays for itself after about
EXPORT_PAYS_AFTER windows; a shorter recording stays in PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from deepcat.inputs.audio import AudioPreprocess
from deepcat.inputs.audio_features import LogMelFrames, frame_geometry

if TYPE_CHECKING:
    from deepcat.inference.exported import ExportedClassifier
    from deepcat.inference.torch_model import Classifier

__all__ = ["EXPORT_PAYS_AFTER", "StreamWindows", "WindowScorer", "window_scorer"]

EXPORT_PAYS_AFTER = 1_500  # windows (2.5 minutes at 100 ms hops): the in-memory export's seconds, at PyTorch's pace


class StreamWindows:
    """A stream's windows, `hop` samples apart, as the network's input: (N, 1, n_mels, frames) spectrograms, or
    with `spectrograms=False` the raw (N, samples) windows (for a runtime whose graph cannot be cut).

    Samples wait in a buffer of fixed size (`pre.samples + batch * hop`): what no window needs any more is
    dropped as blocks arrive, and a block larger than the room left is taken in pieces, so memory does not grow
    with the stream, however it arrives. The frames of the last batch are kept for the next one."""

    def __init__(self, pre: AudioPreprocess, hop: int, *, batch: int = 64, spectrograms: bool = True):
        self.pre, self.hop, self.batch, self.spectrograms = pre, hop, batch, spectrograms
        self.length = pre.samples
        self.mel = LogMelFrames(pre)
        geometry = self.mel.geometry
        self.first = np.arange(geometry.frames(self.length)) * geometry.hop - geometry.window // 2  # from the start
        self.inner = (self.first >= 0) & (self.first + geometry.window <= self.length)  # no padding in them
        edge = self.first[~self.inner, None] + np.arange(geometry.window)  # (edge frames, window) from the start
        self.edge, self.edge_valid = edge, (edge >= 0) & (edge < self.length)
        self.buffer = np.zeros(self.length + batch * hop, np.float32)
        self.held = 0  # samples in the buffer
        self.base = 0  # the stream's index of buffer[0]
        self.next_start = 0  # the stream's index of the next window's first sample
        self.cached_at = np.zeros(0, np.int64)  # the stream's index of each kept frame's first sample
        self.cached = np.zeros((0, pre.n_mels), np.float32)

    def add(self, block: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The windows `block` completes, in batches: each window's first sample in the stream, and its input."""
        block = np.asarray(block, np.float32).reshape(-1)
        while len(block):
            room = len(self.buffer) - self.held
            piece, block = block[:room], block[room:]
            self.buffer[self.held : self.held + len(piece)] = piece
            self.held += len(piece)
            end = self.base + self.held
            while end >= self.next_start + self.length:
                count = min(self.batch, (end - self.length - self.next_start) // self.hop + 1)
                starts = self.next_start + self.hop * np.arange(count, dtype=np.int64)
                yield starts, self._features(starts) if self.spectrograms else self._samples(starts)
                self.next_start += count * self.hop
            drop = min(self.next_start - self.base, self.held)  # before the next window: no longer needed
            self.buffer[: self.held - drop] = self.buffer[drop : self.held]
            self.held, self.base = self.held - drop, self.base + drop

    def _samples(self, starts: np.ndarray) -> np.ndarray:
        return self.buffer[(starts - self.base)[:, None] + np.arange(self.length)]  # (N, samples)

    def _features(self, starts: np.ndarray) -> np.ndarray:
        window = self.mel.geometry.window
        at = starts[:, None] + self.first[None, self.inner]  # (N, inner frames): each one's first sample
        needed = np.unique(at)
        known = np.isin(needed, self.cached_at)
        rows = np.empty((len(needed), self.pre.n_mels), np.float32)
        rows[known] = self.cached[np.searchsorted(self.cached_at, needed[known])]
        fresh = needed[~known]
        rows[~known] = self.mel(self.buffer[(fresh - self.base)[:, None] + np.arange(window)])
        self.cached_at, self.cached = needed, rows
        mel = np.empty((len(starts), len(self.first), self.pre.n_mels), np.float32)  # (N, frames, n_mels)
        mel[:, self.inner] = rows[np.searchsorted(needed, at)]
        edge = self.buffer[np.clip((starts - self.base)[:, None, None] + self.edge, 0, self.held - 1)]
        mel[:, ~self.inner] = self.mel(np.where(self.edge_valid, edge, 0.0))  # LogMel's zero padding
        spectrogram = mel.transpose(0, 2, 1)  # (N, n_mels, frames)
        if self.pre.mean_normalise:
            spectrogram = spectrogram - spectrogram.mean(axis=2, keepdims=True)
        return np.ascontiguousarray(spectrogram[:, None], np.float32)  # (N, 1, n_mels, frames)


@dataclass
class WindowScorer:
    """The network's input for a batch of windows -> each window's class probabilities (N, classes), all zero
    where the model answers `unknown` (its score under `threshold`): no keyword there."""

    run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # input -> probabilities, `unknown` scores
    threshold: float | None
    spectrograms: bool  # takes spectrograms (the graph after its front end), else raw windows
    runtime: str  # what runs the network, for the benchmark's table

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        probabilities, scores = self.run(inputs)
        probabilities = np.array(probabilities, np.float32)
        if self.threshold is not None and scores is not None:
            probabilities[np.asarray(scores) < self.threshold] = 0.0
        return probabilities


def window_scorer(
    classifier: Classifier | ExportedClassifier, *, reject: bool, windows: int | None = None
) -> WindowScorer:
    """The fastest way this classifier scores windows: ONNX Runtime after the front end where it can (an ONNX
    export cut after its front end; a run's network exported in memory once `windows`, None for an endless
    stream, is past EXPORT_PAYS_AFTER), else PyTorch after the front end, else the runtime on raw windows."""
    from deepcat.inference.exported import ExportedClassifier

    if isinstance(classifier, ExportedClassifier):
        threshold = classifier.threshold if reject else None
        body = _cut_after_front_end(classifier)
        if body is None:
            return WindowScorer(classifier.infer, threshold, False, "the export's runtime, whole windows")
        return WindowScorer(body, threshold, True, "onnxruntime")
    threshold = classifier.calibration.threshold if reject else None
    if windows is None or windows > EXPORT_PAYS_AFTER:
        return WindowScorer(_run_in_onnxruntime(classifier), threshold, True, "onnxruntime")
    return WindowScorer(_run_in_torch(classifier), threshold, True, "torch")


def _run_in_torch(classifier: Classifier) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]:
    import torch

    def run(spectrograms: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probabilities, scores = classifier.infer(torch.from_numpy(spectrograms))
        return probabilities.numpy(), scores.numpy()

    return run


def _session(model: Any, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run_in_onnxruntime(classifier: Classifier) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]:
    """The run's network, temperature, softmax and `unknown` score (Classifier.infer) exported to ONNX in memory."""
    import onnx
    import torch

    class Infer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.with_features, self.unknown = classifier.with_features, classifier.unknown

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return classifier.infer(x)

    pre = cast(AudioPreprocess, classifier.preprocess)  # a sound model: listen checked it
    example = torch.zeros(2, 1, pre.n_mels, frame_geometry(pre).frames(pre.samples))
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.onnx.export(
            Infer().eval(), (example,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False
        )
    if program is None:
        return _run_in_torch(classifier)
    session = _session(onnx.load_from_string(program.model_proto.SerializeToString()), torch.get_num_threads())
    name = session.get_inputs()[0].name

    def run(spectrograms: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probabilities, scores = session.run(None, {name: spectrograms})
        return probabilities, scores

    return run


def _cut_after_front_end(
    classifier: ExportedClassifier,
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]] | None:
    """The export's graph from its front end's output (the spectrogram) to its probabilities and score, in ONNX
    Runtime; None for a file that is not ONNX or whose front end cannot be found (then whole windows go in)."""
    path = classifier.path
    if path is None or path.suffix != ".onnx":
        return None
    import onnx
    import onnx.utils

    model = onnx.load(str(path))
    front = {n.name for n in model.graph.node if any("/front_end:" in p.value for p in n.metadata_props)}
    if not front:
        return None
    made = {out: n.name for n in model.graph.node if n.name in front for out in n.output}
    used_after = [i for n in model.graph.node if n.name not in front for i in n.input if i in made]
    if len(set(used_after)) != 1:
        return None
    outputs = [classifier.meta.output["name"], classifier.meta.score_output]
    body = onnx.utils.Extractor(model).extract_model([used_after[0]], [o for o in outputs if o])
    threads = classifier.session.get_session_options().intra_op_num_threads
    session = _session(body, threads)

    def run(spectrograms: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        answers = session.run(None, {used_after[0]: spectrograms})
        return answers[0], (answers[1] if len(answers) > 1 else None)

    return run
