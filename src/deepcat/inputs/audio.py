"""Sound clips as inputs: any file libsndfile reads (wav, flac, ogg, mp3), any sample rate and channel count,
becomes mono float32 at 16 kHz; a clip is padded or cropped to a fixed length. Numpy, soundfile and soxr only:
ONNX Runtime consumers and the server use this without torch. The log-mel spectrogram is not here: it is the
model's first layer (`audio_tensors.LogMel`), so the exported graph takes raw samples.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

import numpy as np

from deepcat.inputs import BadInput, Facts

__all__ = [
    "AUDIO_SUFFIXES",
    "CLIPPED_FRACTION",
    "FLAG_LABELS",
    "MAP_SIZE",
    "MAX_SECONDS",
    "NOT_KEYWORDS",
    "ODD_LENGTH",
    "SAMPLE_RATE",
    "SILENT_DBFS",
    "AudioPreprocess",
    "decode_bytes",
    "fit_length",
    "flags",
    "from_memory",
    "input_spec",
    "inspect_array",
    "inspect_file",
    "loudness_map",
    "model_input",
    "native_size",
    "read_clip",
    "to_mono_16k",
]

MAX_SECONDS = 60  # the longest clip decoded by default

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})
# classes named as Speech Commands names what is no word: `deepcat listen` never reports them
NOT_KEYWORDS = frozenset({"_silence_", "_unknown_", "_background_noise_"})
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
    mean_normalise: bool = True  # subtract each mel band's mean over the clip: loudness and channel drop out

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.clip_seconds:g} s clips at {self.sample_rate // 1000} kHz, {self.n_mels}-band log-mel input"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioPreprocess:
        """From model.json's "preprocess" or an export's metadata (which holds other keys beside these)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """(frames,) or (frames, channels) at `rate` -> (frames',) float32 mono at 16 kHz (soxr, high quality)."""
    import soxr

    mono = samples.astype(np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return mono


def read_clip(path: str | Path | BinaryIO) -> np.ndarray:
    """A sound file (or an open one, such as a shard's member) -> mono float32 samples at 16 kHz; an
    unreadable, empty or truncated file is a `BadInput` that names it."""
    import soundfile as sf

    try:
        source = str(path) if isinstance(path, (str, Path)) else path
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
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


def decode_bytes(data: bytes, name: str, max_seconds: int, pre: AudioPreprocess | None = None) -> np.ndarray:
    """A request body -> samples; refuses what is not sound (415) and clips far longer than any model needs.
    (`pre`, the model's preprocessing, is part of the kinds' contract; sound is decoded whole whatever the model.)"""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.frames > max_seconds * f.samplerate:
                raise BadInput(
                    f"{name}: {f.frames / f.samplerate:.0f} s of audio is over the {max_seconds} s limit",
                    status=413,
                    reason="too_long",
                )
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
        return samples[start : start + length]
    before = (length - len(samples)) // 2
    return np.pad(samples, (before, length - len(samples) - before))


def model_input(samples: np.ndarray, pre: AudioPreprocess) -> np.ndarray:
    """Decoded samples + the model's preprocessing -> the graph's input: (samples,) float32 at 16 kHz, clip length."""
    return fit_length(samples, pre.samples).astype(np.float32)


# The audit's pass. Duplicates are the same sound: a hash of the decoded samples (at 16-bit precision, with the
# sample rate), so a wav and its flac copy match. Near duplicates are not proposed for sound: a perceptual
# hash of a loudness map (tried at 16 x 16 and 32 x 32) chained most of spoken-digits' "eight"s, whose
# synthetic voices differ by less than two photos of one cat. The loudness map stays as the thumbnail.
# Duration, sample rate, channels, loudness and clipping feed the flags.
MAP_SIZE = 32


SILENT_DBFS = -50.0  # a clip whose loudness (RMS) is below this holds no sound worth learning
CLIPPED_FRACTION = 0.001  # ... more samples than this at full scale: the recording was clipped
ODD_LENGTH = 2.0  # ... longer than twice, or shorter than half, the median clip


def loudness_map(samples: np.ndarray, size: int = MAP_SIZE) -> bytes:
    """size x size uint8: log energy in `size` frequency bands (even in log frequency) over `size` equal slices
    of time, the top 80 dB of the clip scaled to 0..255."""
    edges = np.unique(np.geomspace(1, 513, size + 1).astype(int))
    rows = []
    for frame in np.array_split(samples.astype(np.float64), size):
        power = np.abs(np.fft.rfft(frame, n=1024)) ** 2 if len(frame) else np.zeros(513)
        bands = [power[a:b].sum() for a, b in zip(edges[:-1], edges[1:])]
        rows.append(bands + [0.0] * (size - len(bands)))
    db = 10 * np.log10(np.asarray(rows).T + 1e-10)  # (bands, slices)
    return cast(bytes, np.clip((db - db.max() + 80) / 80 * 255, 0, 255).astype(np.uint8).tobytes())


def _facts(samples: np.ndarray, rate: int, traits: dict[str, Any]) -> Facts:
    """`samples`: mono at the file's own rate."""
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    digest = hashlib.blake2b(pcm.tobytes() + str(rate).encode(), digest_size=16)
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
    traits = {
        **traits,
        "loudness_dbfs": round(20 * np.log10(rms + 1e-10), 1),
        "clipped": float(np.mean(np.abs(samples) >= 0.999)) if len(samples) else 0.0,
    }
    # the fingerprint is the sound's hash: only identical sounds come near each other (no near duplicates)
    return Facts(
        content=digest.hexdigest(),
        fingerprint=int.from_bytes(digest.digest()[:8], "big"),
        thumb=loudness_map(samples),
        traits=traits,
    )


def inspect_file(path: str) -> Facts:
    """Hash and inspect one sound file at its own rate: the declared length is checked against the samples
    actually there, so a file cut short in copying is reported as truncated."""
    import soundfile as sf

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return Facts(error=f"cannot read: {e.strerror or e}")
    content = hashlib.blake2b(data, digest_size=16).hexdigest()
    if not data:
        return Facts(content=content, error="empty file")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            declared, rate, channels, subtype = f.frames, f.samplerate, f.channels, f.subtype
            samples = f.read(dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types for a bad file; each is a finding
        return Facts(content=content, error=f"unreadable sound file ({type(e).__name__}: {e})")
    if len(samples) == 0:
        return Facts(content=content, error="no samples in the file")
    if declared > len(samples) or (subtype.startswith("PCM") and _wav_cut_short(data)):
        return Facts(content=content, error="truncated: the header declares more audio than the file holds")
    mono = samples.mean(axis=1)
    return _facts(mono, rate, {"seconds": len(mono) / rate, "rate": rate, "channels": channels})


def _wav_cut_short(data: bytes) -> bool:
    """A RIFF/WAVE file whose `data` chunk says it is longer than the bytes that follow it."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    at = 12
    while at + 8 <= len(data):
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        if data[at : at + 4] == b"data":
            return at + 8 + size > len(data)
        at += 8 + size + (size & 1)
    return False


def inspect_array(item: np.ndarray) -> Facts:
    samples = from_memory(item)
    return _facts(samples, SAMPLE_RATE, {"seconds": len(samples) / SAMPLE_RATE, "rate": SAMPLE_RATE, "channels": 1})


FLAG_LABELS = {
    "silent": f"silent (quieter than {SILENT_DBFS:g} dBFS)",
    "clipped": f"clipped (over {CLIPPED_FRACTION:.1%} of samples at full scale)",
    "too_long": f"much longer than the median clip (over {ODD_LENGTH:g}x)",
    "too_short": f"much shorter than the median clip (under 1/{ODD_LENGTH:g})",
    "low_rate": f"sampled below {SAMPLE_RATE // 1000} kHz (upsampled: no sound above half its rate)",
}


def flags(facts: list[Facts], names: list[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Durations (min, median, max), sample rates and channels, and the silent, clipped, odd-length and
    low-rate clips."""
    found: dict[str, list[str]] = {key: [] for key in FLAG_LABELS}
    if not facts:
        return {}, found
    seconds = np.array([f.traits["seconds"] for f in facts])
    median = float(np.median(seconds))
    for f, name in zip(facts, names):
        t = f.traits
        checks = {
            "silent": t["loudness_dbfs"] < SILENT_DBFS,
            "clipped": t["clipped"] > CLIPPED_FRACTION,
            "too_long": t["seconds"] > ODD_LENGTH * median,
            "too_short": t["seconds"] < median / ODD_LENGTH,
            "low_rate": t["rate"] < SAMPLE_RATE,
        }
        for key, hit in checks.items():
            if hit:
                found[key].append(name)
    rates = {int(r): int(n) for r, n in zip(*np.unique([f.traits["rate"] for f in facts], return_counts=True))}
    channels = {int(c): int(n) for c, n in zip(*np.unique([f.traits["channels"] for f in facts], return_counts=True))}
    summary = {
        "min": float(seconds.min()),
        "median": median,
        "max": float(seconds.max()),
        "sample_rates": rates,
        "channels": channels,
        "summary": f"{median:.2f} s median; sample rates " + ", ".join(f"{r} Hz x{n}" for r, n in rates.items()),
    }
    return summary, found


def native_size(paths: Sequence[str]) -> int | None:
    return None  # sizes are an image notion; every clip becomes `clip_seconds` of 16 kHz samples


def input_spec(pre: AudioPreprocess) -> dict[str, Any]:
    return {
        "name": "samples",
        "layout": "NT",
        "dtype": "float32",
        "range": [-1, 1],
        "sample_rate": pre.sample_rate,
        "samples": pre.samples,
        "channels": "mono",
    }
