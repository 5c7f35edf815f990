"""`deepcat shard`: DATA as WebDataset tar shards that training streams."""

from __future__ import annotations

from deepcat.config import TrainConfig

__all__ = ["shard"]


def shard(
    data: str,
    *,
    out: str,
    per_shard: int = 10_000,
    shard_mb: float = 500,
    val_fraction: float = TrainConfig.val_fraction,
    seed: int = TrainConfig.seed,
    classes: str | None = TrainConfig.classes,
    data_root: str | None = TrainConfig.data_root,
    modality: str = TrainConfig.modality,
    progress: bool = True,
) -> str:
    """Write DATA, split as `train` would split it, as WebDataset tar shards under `out` (a folder or a URL such
    as `s3://bucket/pets`), with a manifest and the audit's facts. `deepcat.train(out)` then streams them.

    Args:
        data: `TrainConfig.data`.
        out: folder or URL (s3://bucket/prefix) for the shards.
        per_shard: inputs per shard at most.
        shard_mb: megabytes per shard at most.
        val_fraction: `TrainConfig.val_fraction`.
        seed: `TrainConfig.seed`.
        classes: `TrainConfig.classes`.
        data_root: `TrainConfig.data_root`.
        modality: `TrainConfig.modality`.
        progress: show progress bars.

    Returns:
        `out`, to train on.

    Examples:
        >>> deepcat.train(deepcat.shard("pets", out="s3://bucket/pets"))
    """
    from deepcat.data.resolve import splits_of
    from deepcat.data.shards import write_shards

    splits = splits_of(
        dict(data=data, val_fraction=val_fraction, seed=seed, classes=classes, data_root=data_root, modality=modality)
    )
    return write_shards(splits, out, per_shard=per_shard, shard_mb=shard_mb, seed=seed, progress=progress)
