"""Recordings as the field makes them, for the sound benchmarks: a telephone line, a room's echo."""

from __future__ import annotations

import numpy as np

RATE = 16_000


def room_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room's impulse response: the direct sound, then noise decaying by 60 dB over `rt60` seconds."""
    t = np.arange(int(0.8 * RATE)) / RATE
    response = rng.normal(size=len(t)) * np.exp(-6.9 * t / rt60) * 0.1
    response[0] = 1.0
    return response


def in_room(clip: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`clip` heard through `response`, as long as it was and as loud (its energy kept)."""
    return loud_as(np.convolve(clip, response)[: len(clip)], clip)


def loud_as(clip: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`clip` scaled to the energy of `like`."""
    return clip * np.sqrt(np.sum(like**2) / (np.sum(clip**2) + 1e-12))


def at_8khz(clip: np.ndarray, *, telephone_band: bool = False) -> np.ndarray:
    """`clip` resampled to 8 kHz and back (nothing above 4 kHz left); with `telephone_band`, also band-passed to
    300-3,400 Hz as a telephone line carries speech (ITU-T G.712)."""
    import soxr

    narrow = soxr.resample(clip, RATE, 8_000)
    if telephone_band:
        from scipy.signal import butter, sosfilt

        narrow = sosfilt(butter(4, (300, 3_400), btype="bandpass", fs=8_000, output="sos"), narrow)
    back = soxr.resample(narrow, 8_000, RATE)[: len(clip)]
    return np.pad(back, (0, len(clip) - len(back))).astype(clip.dtype)
