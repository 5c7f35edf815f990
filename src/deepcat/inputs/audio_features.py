"""The log-mel front end's arithmetic in numpy, one frame at a time: the mel filterbank `LogMel` (the model's
first layer, `audio_tensors.py`) is built from, and `LogMelFrames`, which computes the same log mel power for
any frames of a signal. `deepcat listen` computes each frame of a long recording once with it and slices its
overlapping windows' spectrograms from those frames, instead of running the graph's front end on every window
(ten windows a second share 90% of their frames). No torch here: an ONNX Runtime consumer listens without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from deepcat.inputs.audio import AudioPreprocess

__all__ = ["FrameGeometry", "LogMelFrames", "frame_geometry", "hz_to_mel", "mel_filterbank", "mel_to_hz"]


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)  # the HTK scale


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, evenly spaced on the mel scale, peak 1."""
    f_max = f_max or sample_rate / 2
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return cast("np.ndarray", np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32))


@dataclass(frozen=True)
class FrameGeometry:
    """Where a clip's frames lie: `window` samples each, `hop` apart, the DFT over `n_fft` points. The clip is
    padded with `window // 2` zeros on each side, so frame k covers samples [k * hop - window // 2, ... + window)."""

    window: int
    hop: int
    n_fft: int

    def frames(self, samples: int) -> int:
        """How many frames a clip of `samples` has."""
        return (samples + 2 * (self.window // 2) - self.window) // self.hop + 1


def frame_geometry(pre: AudioPreprocess) -> FrameGeometry:
    window = int(round(pre.sample_rate * pre.window_ms / 1000))
    return FrameGeometry(window, int(round(pre.sample_rate * pre.hop_ms / 1000)), 2 ** math.ceil(math.log2(window)))


class LogMelFrames:
    """Frames of samples (..., window) -> their log mel power (..., n_mels), as `LogMel` computes each frame
    (Hann window, the DFT at n_fft points, power, mel filters, the log floor); before the per-clip mean."""

    def __init__(self, pre: AudioPreprocess):
        self.geometry = frame_geometry(pre)
        n = np.arange(self.geometry.window)
        self.hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.geometry.window)
        self.filters = mel_filterbank(pre.n_mels, self.geometry.n_fft, pre.sample_rate).T.astype(np.float64)
        self.log_floor = pre.log_floor

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(frames * self.hann, n=self.geometry.n_fft)
        power = spectrum.real**2 + spectrum.imag**2
        return cast("np.ndarray", np.log(np.maximum(power @ self.filters, self.log_floor)).astype(np.float32))
