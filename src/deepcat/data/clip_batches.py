"""The fast path for sound clips that fit in memory (`spoken-digits`, a few thousand clips): every clip is
decoded once into one (N, samples) tensor, and each batch is shifted, mixed with noise and turned into its
log-mel spectrogram at once, instead of clip by clip in DataLoader workers. Under torchrun the processes share
the decoding and exchange the clips. Same contract as TensorBatches
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

__all__ = ["MEMORY_BYTES", "ClipBatches", "decode_all", "decode_share", "fits"]

MEMORY_BYTES = 2 * 2**30  # decoded float32 samples held for the fast path; larger sets stream from disk


def fits(samples: Samples, pre: AudioPreprocess, augment: str = "none") -> bool:
    """The fast path applies: sound clips whose decoded samples fit in MEMORY_BYTES."""
    return len(samples) * pre.samples * 4 <= MEMORY_BYTES


def decode_all(
    samples: Samples, pre: AudioPreprocess, *, rank: int = 0, world_size: int = 1, progress: bool = True
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """(N', samples) float32 of every readable clip at the clip length, their positions, and why the others
    failed. Under torchrun (`world_size` > 1) each process decodes every `world_size`-th clip from its `rank`
    and the processes exchange what they decoded, so every process holds the same clips for a share of the
    decoding."""
    clips, readable, bad = decode_share(samples, pre, rank=rank, world_size=world_size, progress=progress)
    if world_size > 1:
        clips, readable, bad = _exchange(clips, readable, bad, count=len(samples), world_size=world_size)
    kept = np.flatnonzero(readable)
    return torch.from_numpy(clips[kept]), kept, bad


def decode_share(
    samples: Samples, pre: AudioPreprocess, *, rank: int, world_size: int, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Clips rank, rank + world_size, ... at the clip length (zeros where unreadable), which were readable, and
    why the others failed."""
    from deepcat.progress import progress_bar

    kind = input_kind(pre.kind)
    mine = range(rank, len(samples), world_size)
    clips = np.zeros((len(mine), pre.samples), np.float32)
    readable = np.zeros(len(mine), bool)
    bad = []
    for row, i in enumerate(progress_bar(mine, desc="loading clips", leave=False, enabled=progress and rank == 0)):
        try:
            clips[row] = fit_length(samples.decode(i, kind), pre.samples)
            readable[row] = True
        except BadInput as e:
            bad.append(str(e))
    return clips, readable, bad


def _exchange(
    clips: np.ndarray, readable: np.ndarray, bad: list[str], *, count: int, world_size: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every process's share (`decode_share`), gathered into all `count` clips in their own order."""
    import torch.distributed as dist

    share = -(-count // world_size)  # all_gather wants equal shapes: shares padded to the largest
    padded = torch.zeros((share, clips.shape[1]), dtype=torch.float32)
    padded[: len(clips)] = torch.from_numpy(clips)
    flags = torch.zeros(share, dtype=torch.bool)
    flags[: len(readable)] = torch.from_numpy(readable)
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    gathered_flags = [torch.empty_like(flags) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    dist.all_gather(gathered_flags, flags)
    reasons: list[list[str]] = [[] for _ in range(world_size)]
    dist.all_gather_object(reasons, bad)
    every = np.zeros((count, clips.shape[1]), np.float32)
    ok = np.zeros(count, bool)
    for rank in range(world_size):
        rows = len(range(rank, count, world_size))
        every[rank::world_size] = gathered[rank][:rows].numpy()
        ok[rank::world_size] = gathered_flags[rank][:rows].numpy()
    return every, ok, [reason for part in reasons for reason in part]


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
        self.clips, kept, self.bad = decode_all(
            samples, pre, rank=order.rank, world_size=order.world_size, progress=progress
        )
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
                    x = augment_batch(x, self.pre, self.noise, preset=self.augment)
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
