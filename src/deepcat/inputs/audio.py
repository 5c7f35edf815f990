"""Sound clips as inputs: any file libsndfile reads (wav, flac, ogg, mp3), any sample rate and channel count,
becomes mono float32 at 16 kHz; a clip is padded or cropped to a fixed length. Numpy, soundfile and soxr only:
ONNX Runtime consumers and the server use this without torch. The log-mel spectrogram is not here: it is the
model's first layer (`audio_tensors.LogMel`), so the exported graph takes raw samples.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deepcat.inputs import BadInput

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})
SAMPLE_RATE = 16_000


@dataclass
class AudioPreprocess:
    """How a clip becomes the model's input (samples) and what the model's log-mel front end computes. Saved in
    model.json and the export metadata, so no consumer restates the features."""

    kind: ClassVar[str] = "audio"

    sample_rate: int = SAMPLE_RATE
    clip_seconds: float = 1.0
    n_mels: int = 40
    window_ms: float = 25.0
    hop_ms: float = 10.0
    log_floor: float = 1e-6

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioPreprocess:
        return cls(**d)


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """(frames,) or (frames, channels) at `rate` -> (frames',) float32 mono at 16 kHz (soxr, high quality)."""
    import soxr

    mono = samples.astype(np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return mono


def read_clip(path: str | Path) -> np.ndarray:
    """A sound file -> mono float32 samples at 16 kHz; an unreadable, empty or truncated file is a `BadInput`
    that names it."""
    import soundfile as sf

    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadInput(f"{path}: not a readable sound file ({e}); re-export it as wav or flac, or remove it") from None
    if len(samples) == 0:
        raise BadInput(f"{path}: the sound file holds no samples; remove it or record it again")
    return to_mono_16k(samples, rate)


def from_memory(item: Any) -> np.ndarray:
    """An in-memory clip: a 1-D float array of samples at 16 kHz (ints are scaled from their full range)."""
    array = np.asarray(item)
    if array.ndim != 1:
        raise BadInput(f"an in-memory clip must be 1-D samples at {SAMPLE_RATE} Hz; received shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        return (array / float(np.iinfo(array.dtype).max)).astype(np.float32)
    return array.astype(np.float32)


def decode_bytes(data: bytes, name: str, max_seconds: int) -> np.ndarray:
    """A request body -> samples; refuses what is not sound (415) and clips far longer than any model needs."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.frames > max_seconds * f.samplerate:
                raise BadInput(f"{name}: {f.frames / f.samplerate:.0f} s of audio is over the {max_seconds} s limit",
                               status=413, reason="too_long")
            samples, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadInput(f"{name}: not a readable sound file ({e})", status=415, reason="unsupported_media") from None
    if len(samples) == 0:
        raise BadInput(f"{name}: the sound file holds no samples")
    return to_mono_16k(samples, rate)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Pad with silence on both sides, or crop the centre, to exactly `length` samples."""
    if len(samples) >= length:
        start = (len(samples) - length) // 2
        return samples[start:start + length]
    before = (length - len(samples)) // 2
    return np.pad(samples, (before, length - len(samples) - before))


def model_input(samples: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Decoded samples + metadata -> the exported graph's input: (samples,) float32 at 16 kHz, clip length."""
    pre = AudioPreprocess.from_dict(meta["preprocess"])
    return fit_length(samples, pre.samples).astype(np.float32)
