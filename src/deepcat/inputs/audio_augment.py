"""What a keyword spotter meets beyond its training voices, as whole-batch augmentations of raw samples: other
speeds and pitches, telephone and 8 kHz bandwidths, rooms, and microphones. Each is a plain function of a batch
and explicit per-clip parameters (tested one by one); `acoustic` draws those parameters from torch's global RNG
(seeded per epoch by the training loop, so a resumed run replays it) and applies the pieces asked for, in the
order a recording meets them: the voice, the room, the line, the microphone.

Microphone colouring and gain are mostly undone by the front end's per-band mean normalisation (a fixed filter
is a constant per band in the log-mel domain); band-limiting is not (a band with no energy stays at the floor).
"""

from __future__ import annotations

import math
from typing import cast

import torch

__all__ = [
    "ACOUSTIC",
    "BAND_PROBABILITY",
    "REVERB_PROBABILITY",
    "RT60_SECONDS",
    "SPEEDS",
    "acoustic",
    "band_limit",
    "colour",
    "reverberate",
    "speed",
]

ACOUSTIC = ("speed", "reverb", "band", "colour")  # every piece, in the order they are applied
SPEEDS = (0.85, 1.15)  # playback speed: pitch and tempo together (Kaldi's 0.9-1.1 speed perturbation, wider)
REVERB_PROBABILITY = 0.8  # most recordings are made in rooms
RT60_SECONDS = (0.15, 0.8)  # a small room to a hall
BAND_PROBABILITY = 0.5  # half the clips through a telephone line or an 8 kHz recording
TELEPHONE_HZ = (300.0, 3400.0)
NARROW_HZ = 4000.0  # what an 8 kHz recording holds
COLOUR_DB = 6.0  # a microphone's response: up to +-6 dB, smooth across frequency


def speed(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """(B, samples) -> (B, samples): clip b played `factors[b]` times as fast (linear interpolation about the
    clip's centre); what leaves the clip is cropped, what enters is silence."""
    length = x.shape[1]
    centre = (length - 1) / 2
    source = centre + (torch.arange(length, dtype=torch.float32)[None] - centre) * factors[:, None]
    left = source.floor().long()
    frac = source - left
    inside = (left >= 0) & (left + 1 < length)
    left = left.clamp(0, length - 2)
    out = x.gather(1, left) * (1 - frac) + x.gather(1, left + 1) * frac
    return torch.where(inside, out, 0.0)


def band_limit(x: torch.Tensor, sample_rate: int, lines: torch.Tensor) -> torch.Tensor:
    """Clip b unchanged where `lines[b]` is 0, through a telephone band (300-3,400 Hz) where 1, as an 8 kHz
    recording (nothing above 4 kHz) where 2: a mask on its spectrum."""
    spectrum = torch.fft.rfft(x)
    hz = torch.fft.rfftfreq(x.shape[1], 1 / sample_rate)
    masks = torch.stack(
        [torch.ones_like(hz), ((hz >= TELEPHONE_HZ[0]) & (hz <= TELEPHONE_HZ[1])).float(), (hz <= NARROW_HZ).float()]
    )
    return cast("torch.Tensor", torch.fft.irfft(spectrum * masks[lines], n=x.shape[1]))


def reverberate(x: torch.Tensor, sample_rate: int, rt60: torch.Tensor) -> torch.Tensor:
    """Clip b in a room whose reverberation time is `rt60[b]` seconds (0: dry): convolved with an impulse
    response of exponentially decaying noise after the direct sound, scaled to keep the clip's energy."""
    batch, length = x.shape
    taps = int(RT60_SECONDS[1] * sample_rate)
    t = torch.arange(taps, dtype=torch.float32) / sample_rate
    decay = torch.exp(-6.9 * t[None] / rt60.clamp(min=1e-3)[:, None])  # -60 dB at rt60
    response = torch.randn(batch, taps) * decay * 0.1
    response[:, 0] = 1.0  # the direct sound
    response = torch.where(rt60[:, None] > 0, response, torch.nn.functional.one_hot(torch.zeros(batch).long(), taps))
    size = 2 ** math.ceil(math.log2(length + taps - 1))
    wet = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(response, size), size)[:, :length]
    energy = (x.pow(2).sum(1, keepdim=True) / (wet.pow(2).sum(1, keepdim=True) + 1e-12)).sqrt()
    return cast("torch.Tensor", wet * energy)


def colour(x: torch.Tensor, sample_rate: int, anchors_db: torch.Tensor) -> torch.Tensor:
    """Clip b through a microphone whose response is `anchors_db[b]` (gains in dB at points evenly spaced on a
    log-frequency axis from 100 Hz to Nyquist), interpolated across frequency."""
    spectrum = torch.fft.rfft(x)
    hz = torch.fft.rfftfreq(x.shape[1], 1 / sample_rate).clamp(min=100.0)
    position = torch.log(hz / 100.0) / math.log(sample_rate / 2 / 100.0) * (anchors_db.shape[1] - 1)
    left = position.floor().long().clamp(0, anchors_db.shape[1] - 2)
    frac = (position - left).clamp(0, 1)
    gain_db = anchors_db[:, left] * (1 - frac) + anchors_db[:, left + 1] * frac
    return cast("torch.Tensor", torch.fft.irfft(spectrum * 10 ** (gain_db / 20), n=x.shape[1]))


def acoustic(x: torch.Tensor, sample_rate: int, pieces: tuple[str, ...] | None = None) -> torch.Tensor:
    """`pieces` (default: ACOUSTIC, read when called: `benchmarks/sound.py` measures them one at a time) applied
    to a batch with parameters drawn per clip: a speed in SPEEDS; a room for REVERB_PROBABILITY of the clips; a
    telephone or 8 kHz line for BAND_PROBABILITY; a microphone for every clip."""
    pieces = ACOUSTIC if pieces is None else pieces
    batch = x.shape[0]
    if "speed" in pieces:
        x = speed(x, torch.empty(batch).uniform_(*SPEEDS))
    if "reverb" in pieces:
        rt60 = torch.empty(batch).uniform_(*RT60_SECONDS) * (torch.rand(batch) < REVERB_PROBABILITY)
        x = reverberate(x, sample_rate, rt60)
    if "band" in pieces:
        lines = torch.where(torch.rand(batch) < BAND_PROBABILITY, torch.randint(1, 3, (batch,)), 0)
        x = band_limit(x, sample_rate, lines)
    if "colour" in pieces:
        x = colour(x, sample_rate, torch.empty(batch, 6).uniform_(-COLOUR_DB, COLOUR_DB))
    return x
