"""The log-mel spectrogram as the model's first layer, in plain PyTorch ops that export to ONNX (a strided
convolution with a windowed DFT basis, no torch.stft): the graph takes raw 16 kHz samples, so nothing about
the features is restated by a consumer. SpecAugment-style masking runs inside it while training.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from deepcat.inputs.audio import AudioPreprocess


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)  # the HTK scale


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, evenly spaced on the mel scale, peak 1."""
    f_max = f_max or sample_rate / 2
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class LogMel(nn.Module):
    """(B, samples) float32 at the clip's sample rate -> (B, 1, n_mels, frames) log mel power."""

    def __init__(self, pre: AudioPreprocess, *, time_masks: int = 2, time_width: int = 10, freq_masks: int = 2,
                 freq_width: int = 6):
        super().__init__()
        self.window = int(round(pre.sample_rate * pre.window_ms / 1000))
        self.hop = int(round(pre.sample_rate * pre.hop_ms / 1000))
        self.n_fft = 2 ** math.ceil(math.log2(self.window))
        n = np.arange(self.window)
        k = np.arange(self.n_fft // 2 + 1)[:, None]
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.window)
        angle = 2 * np.pi * k * n / self.n_fft  # the DFT of the zero-padded frame, at n_fft points
        basis = np.concatenate([np.cos(angle) * hann, -np.sin(angle) * hann])[:, None, :]
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)))
        self.register_buffer("filters", torch.from_numpy(mel_filterbank(pre.n_mels, self.n_fft, pre.sample_rate)))
        self.log_floor = pre.log_floor
        self.masks = (time_masks, time_width, freq_masks, freq_width)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(samples[:, None, :], (self.window // 2, self.window // 2))
        spectrum = nn.functional.conv1d(x, self.basis, stride=self.hop)            # (B, 2 * bins, frames)
        real, imag = spectrum.chunk(2, dim=1)
        mel = torch.matmul(self.filters, real * real + imag * imag)               # (B, n_mels, frames)
        out = mel.clamp_min(self.log_floor).log()[:, None]
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
                band = (index >= start[:, None]) & (index < (start + w)[:, None])               # (B, size)
                keep &= ~(band[:, None, :, None] if axis == 2 else band[:, None, None, :])
        mean = x.mean(dim=(2, 3), keepdim=True)
        return torch.where(keep, x, mean)
