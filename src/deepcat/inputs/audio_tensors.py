"""The log-mel spectrogram as the model's first layer, in plain PyTorch ops that export to ONNX (a strided
convolution with a windowed DFT basis, no torch.stft): the graph takes raw 16 kHz samples, so nothing about
the features is restated by a consumer. SpecAugment-style masking runs inside it while training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import torch
import torch.nn as nn

from deepcat.inputs.audio import AudioPreprocess
from deepcat.inputs.audio_features import frame_geometry, hz_to_mel, mel_filterbank, mel_to_hz

__all__ = [
    "NOISE_PROBABILITY",
    "NOISE_SNR_DB",
    "SHIFT_SECONDS",
    "Augment",
    "LogMel",
    "augment_batch",
    "eval_transform",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "noise_bank",
    "train_transform",
]


class LogMel(nn.Module):
    """(B, samples) float32 at the clip's sample rate -> (B, 1, n_mels, frames) log mel power, each band less its
    mean over the clip (`mean_normalise`)."""

    basis: torch.Tensor
    filters: torch.Tensor

    def __init__(
        self,
        pre: AudioPreprocess,
        *,
        time_masks: int = 2,
        time_width: int = 10,
        freq_masks: int = 2,
        freq_width: int = 6,
    ):
        super().__init__()
        geometry = frame_geometry(pre)
        self.window, self.hop, self.n_fft = geometry.window, geometry.hop, geometry.n_fft
        n = np.arange(self.window)
        k = np.arange(self.n_fft // 2 + 1)[:, None]
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.window)
        angle = 2 * np.pi * k * n / self.n_fft  # the DFT of the zero-padded frame, at n_fft points
        basis = np.concatenate([np.cos(angle) * hann, -np.sin(angle) * hann])[:, None, :]
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)))
        self.register_buffer("filters", torch.from_numpy(mel_filterbank(pre.n_mels, self.n_fft, pre.sample_rate)))
        self.log_floor, self.mean_normalise = pre.log_floor, pre.mean_normalise
        self.masks = (time_masks, time_width, freq_masks, freq_width)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(samples[:, None, :], (self.window // 2, self.window // 2))
        spectrum = nn.functional.conv1d(x, self.basis, stride=self.hop)  # (B, 2 * bins, frames)
        real, imag = spectrum.chunk(2, dim=1)
        mel = torch.matmul(self.filters, real * real + imag * imag)  # (B, n_mels, frames)
        out = mel.clamp_min(self.log_floor).log()[:, None]  # (B, 1, n_mels, frames)
        if self.mean_normalise:  # cepstral mean normalisation; spoken-digits test: 95.6% -> 98.4% (one run each)
            out = out - out.mean(dim=3, keepdim=True)
        return self.spec_augment(out) if self.training else out

    def spec_augment(self, x: torch.Tensor) -> torch.Tensor:
        """Zero (to the clip's mean) a few random bands of time frames and of mel bands, per clip."""
        time_masks, time_width, freq_masks, freq_width = self.masks
        batch, _, mels, frames = x.shape
        keep = torch.ones_like(x, dtype=torch.bool)
        for count, width, size, axis in ((time_masks, time_width, frames, 3), (freq_masks, freq_width, mels, 2)):
            for _ in range(count):
                w = torch.randint(0, width + 1, (batch,), device=x.device)
                start = (torch.rand(batch, device=x.device) * (size - w).clamp_min(1)).long()
                index = torch.arange(size, device=x.device)[None]
                band = (index >= start[:, None]) & (index < (start + w)[:, None])  # (B, size)
                keep &= ~(band[:, None, :, None] if axis == 2 else band[:, None, None, :])
        mean = x.mean(dim=(2, 3), keepdim=True)
        return torch.where(keep, x, mean)


def eval_transform(pre: AudioPreprocess) -> Callable[[np.ndarray], torch.Tensor]:
    """Decoded samples -> (1, n_mels, frames): fixed length, then the same LogMel the exported graph starts with."""
    from deepcat.inputs.audio import fit_length

    front = LogMel(pre).eval()

    def transform(samples: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return cast("torch.Tensor", front(torch.from_numpy(fit_length(samples, pre.samples))[None])[0])

    return transform


SHIFT_SECONDS = 0.1  # time shift of up to +-100 ms
NOISE_PROBABILITY = 0.5  # share of training clips that get noise mixed in
NOISE_SNR_DB = (10.0, 40.0)  # ... at an SNR drawn from this range (spoken-digits test: 97.2%; 95.9% at 0-30 dB for 80%)


def noise_bank(files: list[str], length: int) -> list[torch.Tensor]:
    """The noise clips (e.g. Speech Commands' _background_noise_) at least one clip long, as 16 kHz tensors."""
    from deepcat.inputs.audio import read_clip

    return [torch.from_numpy(clip) for clip in (read_clip(p) for p in files) if len(clip) >= length]


def augment_batch(
    x: torch.Tensor, pre: AudioPreprocess, noise: list[torch.Tensor], *, preset: str = "light"
) -> torch.Tensor:
    """(B, samples) -> (B, samples): with the `strong` preset, other speeds, rooms, lines and microphones first
    (`audio_augment.acoustic`); then each clip shifted in time by up to SHIFT_SECONDS (silence fills the gap),
    then, for most clips, noise mixed in at a random SNR: a random stretch of a `noise` clip, else white noise.
    Draws from torch's global RNG, which the training loop seeds per epoch (a resumed run replays it)."""
    from deepcat.inputs.audio_augment import acoustic

    if preset == "strong":
        x = acoustic(x, pre.sample_rate)
    batch, length = x.shape
    limit = int(SHIFT_SECONDS * pre.sample_rate)
    shift = torch.randint(-limit, limit + 1, (batch, 1))
    source = torch.arange(length)[None] - shift  # (B, samples)
    x = torch.where((source >= 0) & (source < length), x.gather(1, source.clamp(0, length - 1)), 0.0)
    if noise:
        picks = torch.randint(len(noise), (batch,)).tolist()
        starts = [int(torch.randint(len(noise[k]) - length + 1, ())) for k in picks]
        sound = torch.stack([noise[k][a : a + length] for k, a in zip(picks, starts)])
    else:
        sound = torch.randn(batch, length)
    snr_db = torch.empty(batch, 1).uniform_(*NOISE_SNR_DB)
    gain = (x.pow(2).mean(1, keepdim=True) / (sound.pow(2).mean(1, keepdim=True) + 1e-12) / 10 ** (snr_db / 10)).sqrt()
    mixed = torch.rand(batch, 1) < NOISE_PROBABILITY
    return x + torch.where(mixed, gain, 0.0) * sound


class Augment:
    """A training clip -> (1, n_mels, frames) through `augment_batch` and LogMel with SpecAugment masking, one
    clip at a time (the DataLoader path, for data too large to hold in memory; `ClipBatches` is the fast one).
    A class, not a closure, so DataLoader workers can pickle it; noise clips are read once per worker."""

    def __init__(self, pre: AudioPreprocess, *, augment: str, noise_files: list[str]):
        self.pre, self.augment, self.noise_files = pre, augment, list(noise_files)
        self.front = LogMel(pre).train(augment != "none")
        self._noise: list[torch.Tensor] | None = None

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        from deepcat.inputs.audio import fit_length

        clip = torch.from_numpy(fit_length(samples, self.pre.samples).astype(np.float32))[None]
        with torch.no_grad():
            if self.augment != "none":
                if self._noise is None:
                    self._noise = noise_bank(self.noise_files, self.pre.samples)
                clip = augment_batch(clip, self.pre, self._noise, preset=self.augment)
            return cast("torch.Tensor", self.front(clip)[0])


def train_transform(pre: AudioPreprocess, *, augment: str, noise_files: list[str]) -> Augment:
    """Augmentation presets for sound: none; light (shift, noise and SpecAugment); strong (also speed, rooms,
    telephone and 8 kHz lines, microphones: `audio_augment.py`)."""
    return Augment(pre, augment=augment, noise_files=noise_files)
