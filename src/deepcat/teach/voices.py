"""Who is speaking: each clip's voice as 256 numbers from a speaker encoder that ships offline, so that a few
clips per person are enough for the labelling page's quick head to tell the people apart.

The encoder is Resemblyzer's (Apache-2.0): a GE2E d-vector network (3 LSTM layers over 40-band mel frames, a
linear layer, ReLU, L2 norm) trained on thousands of real speakers, whose 17 MB weights ship inside its PyPI wheel.
Only the weights file is read (`pip install --no-deps resemblyzer==0.1.4`): the package's own audio code needs
librosa, numba and a webrtcvad build that no longer imports on current setuptools, so its front end is written
here as it computes it (librosa's power mel spectrogram, 25 ms windows every 10 ms, Slaney's mel scale) and its
utterance embedding as it averages partial utterances of 1.6 s. Its voice-activity trimming is left out: a
labelling page's clips are short, one utterance each.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from deepcat.errors import DeepcatError
from deepcat.inputs.audio import SAMPLE_RATE, read_clip
from deepcat.teach.features import Embedding, read_each

__all__ = ["SpeakerEncoder", "SpeakerFeatures", "embed_voices", "mel_frames", "partial_slices", "weights_file"]

MELS, WINDOW, HOP = 40, 400, 160  # 40 bands, 25 ms windows every 10 ms at 16 kHz: the encoder's front end
PARTIAL_FRAMES = 160  # frames a partial utterance holds (1.6 s)
PARTIALS_PER_SECOND, MIN_COVERAGE = 1.3, 0.75  # Resemblyzer's `embed_utterance` defaults
MAX_SECONDS = 60  # of a clip, embedded
PARTS_PER_BATCH = 256  # partial utterances per forward pass
TARGET_DBFS = -30.0  # quiet clips are raised to this loudness first (never lowered), as Resemblyzer does
INSTALL = "pip install --no-deps resemblyzer==0.1.4 (its wheel carries the model; deepcat reads only that file)"


class SpeakerEncoder(nn.Module):
    """Resemblyzer's `VoiceEncoder` network: (batch, frames, 40) mel frames in, (batch, 256) unit vectors out."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw: torch.Tensor = self.relu(self.linear(hidden[-1]))
        return torch.nn.functional.normalize(raw, dim=1)


def weights_file() -> Path:
    """Resemblyzer's `pretrained.pt`, found without importing the package (whose imports need librosa)."""
    spec = importlib.util.find_spec("resemblyzer")
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(folder) / "pretrained.pt" for folder in folders if (Path(folder) / "pretrained.pt").is_file()]
    if not found:
        raise DeepcatError(f"telling speakers apart needs Resemblyzer's speaker encoder: {INSTALL}")
    return found[0]


@cache
def load_encoder() -> SpeakerEncoder:
    encoder = SpeakerEncoder()
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)["model_state"]
    encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})  # GE2E's loss
    return encoder.eval()


@cache
def _mel_filters() -> np.ndarray:
    """(40, 201) librosa's `filters.mel(sr=16000, n_fft=400, n_mels=40)`: Slaney's mel scale and area norm."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        linear = hz / (200 / 3)
        return np.where(hz >= 1000, 15 + np.log(np.maximum(hz, 1e-10) / 1000) / (np.log(6.4) / 27), linear)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= 15, 1000 * np.exp((np.log(6.4) / 27) * (mel - 15)), mel * (200 / 3))

    bins = np.linspace(0, SAMPLE_RATE / 2, 1 + WINDOW // 2)
    edges = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(SAMPLE_RATE / 2)), MELS + 2))
    ramps = edges[:, None] - bins[None, :]
    widths = np.diff(edges)
    rising, falling = -ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return np.asarray(weights, np.float32)


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram of 16 kHz `samples`, as librosa's `feature.melspectrogram` computes it
    with the encoder's settings (centred frames, a periodic Hann window) and, as librosa did before 0.10 when the
    encoder was trained, the ends padded by reflection (librosa 0.10 pads with zeros: only the edge frames differ)."""
    padded = np.pad(samples.astype(np.float32), WINDOW // 2, mode="reflect")
    count = 1 + (len(padded) - WINDOW) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::HOP][:count]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return np.asarray(power @ _mel_filters().T, np.float32)


def partial_slices(samples: int) -> list[slice]:
    """The frame ranges of the partial utterances Resemblyzer averages: 1.6 s each, 1.3 a second, the last kept
    when it covers at least 75% (always at least one). They may run past the clip: pad it with zeros."""
    frames = int(np.ceil((samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / PARTIALS_PER_SECOND) / HOP))
    starts = range(0, max(1, frames - PARTIAL_FRAMES + step + 1), step)
    slices = [slice(start, start + PARTIAL_FRAMES) for start in starts]
    last = slices[-1]
    if len(slices) > 1 and (samples - last.start * HOP) / (PARTIAL_FRAMES * HOP) < MIN_COVERAGE:
        slices = slices[:-1]
    return slices


def _louder(samples: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    if rms == 0:
        return samples
    gain = 10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20)
    return samples * gain if gain > 1 else samples


def embed_voices(clips: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 256) float32: each 16 kHz clip's voice, the unit-length mean of its partial utterances' embeddings.

    Args:
        clips: mono float samples at 16 kHz, one array per clip.

    Returns:
        One unit vector per clip; clips of one speaker lie close together (cosine similarity).
    """
    encoder = load_encoder()
    parts, owners = [], []
    for n, whole in enumerate(clips):
        clip = whole[: MAX_SECONDS * SAMPLE_RATE]  # a voice is known long before a minute is over
        slices = partial_slices(len(clip))
        padded = np.pad(_louder(clip), (0, max(0, slices[-1].stop * HOP - len(clip))))
        mel = mel_frames(padded)
        parts += [mel[s] for s in slices]
        owners += [n] * len(slices)
    if not parts:
        return np.zeros((0, 256), np.float32)
    with torch.no_grad():  # PARTS_PER_BATCH partial utterances at a time: memory stays bounded on long clips
        partial = np.concatenate(
            [
                encoder(torch.from_numpy(np.stack(parts[i : i + PARTS_PER_BATCH]))).numpy()
                for i in range(0, len(parts), PARTS_PER_BATCH)
            ]
        )
    sums = np.zeros((len(clips), partial.shape[1]), np.float64)
    np.add.at(sums, np.array(owners), partial)
    return np.asarray(sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12), np.float32)


class SpeakerFeatures:
    """The labelling page's features for "who is speaking" (`deepcat label DATA --model speaker`): each clip's
    voice embedding, computed when asked (a clip takes milliseconds; nothing is cached on disk)."""

    def features(self, paths: Sequence[str | Path], *, progress: bool = False) -> Embedding:
        """One row per path (`Embedding`); an unreadable clip is listed in `bad` with its reason."""
        files = [Path(p) for p in paths]
        clips, ok, bad = read_each(files, read_clip)
        features = np.zeros((len(files), 256), np.float32)
        features[ok] = embed_voices(clips)
        return Embedding(files, features, ok, bad)
