"""The fast path for sound clips that fit in memory (`spoken-digits`, a few thousand clips): every clip is
decoded once into one (N, samples) tensor, and each batch is shifted, mixed with noise and turned into its
log-mel spectrogram at once, instead of clip by clip in DataLoader workers. Same contract as TensorBatches
(the images' fast path): yields (x, y, bad), the order from a DistributedSampler, augmentation from torch's
global RNG. Unreadable clips are left out, and reported with the first batch (one warning per file).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from deepcat.data.order import WHOLE_BATCHES, Order, Rows, WholeBatches
from deepcat.data.sources import Samples
from deepcat.inputs import BadInput, input_kind
from deepcat.inputs.audio import AudioPreprocess, fit_length
from deepcat.inputs.audio_tensors import LogMel, augment_batch, noise_bank

__all__ = ["MEMORY_BYTES", "ClipBatches", "decode_all", "fits"]

MEMORY_BYTES = 2 * 2**30  # decoded float32 samples held for the fast path; larger sets stream from disk


def fits(samples: Samples, pre: AudioPreprocess, augment: str = "none") -> bool:
    """The fast path applies: sound clips whose decoded samples fit in MEMORY_BYTES."""
    return len(samples) * pre.samples * 4 <= MEMORY_BYTES


def decode_all(
    samples: Samples, pre: AudioPreprocess, *, progress: bool = True
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """(N', samples) float32 of every readable clip at the clip length, their positions, and why the others failed."""
    from tqdm import tqdm

    kind = input_kind(pre.kind)
    clips, kept, bad = [], [], []
    for i in tqdm(range(len(samples)), desc="loading clips", leave=False, disable=not progress):
        try:
            decoded = samples.decode(i, kind)
        except BadInput as e:
            bad.append(str(e))
            continue
        clips.append(fit_length(decoded, pre.samples))
        kept.append(i)
    stacked = np.stack(clips) if clips else np.zeros((0, pre.samples), np.float32)
    return torch.from_numpy(stacked), np.array(kept, int), bad


class ClipBatches:
    def __init__(
        self,
        samples: Samples,
        pre: AudioPreprocess,
        order: Order,
        *,
        augment: str = "none",
        noise_files: list[str] | None = None,
        progress: bool = True,
    ):
        self.clips, kept, self.bad = decode_all(samples, pre, progress=progress and order.rank == 0)
        self.labels = torch.from_numpy(samples.labels[kept])
        self.pre, self.augment = pre, augment
        self.front = LogMel(pre).train(augment != "none")
        self.noise = noise_bank(list(noise_files or []), pre.samples) if augment != "none" else []
        self.rows = Rows(len(self.labels), order)
        self.sampler = self.rows.sampler  # the loop's set_epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for k, index in enumerate(self.rows.batches()):
            with torch.no_grad():  # closed before the yield: the consumer trains with gradients
                x = self.clips[index]
                if self.augment != "none":
                    x = augment_batch(x, self.pre, self.noise)
                x = self.front(x)
            yield x, self.labels[index], (self.bad if k == 0 else [])


WHOLE_BATCHES.add(
    "audio",
    WholeBatches(
        fits,
        lambda samples, pre, order, *, augment, hflip, noise_files, progress: ClipBatches(
            samples, pre, order, augment=augment, noise_files=noise_files, progress=progress
        ),
    ),
)
