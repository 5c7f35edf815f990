"""WebDataset shards: written from a folder, read back input for input, audited from their manifest, streamed
in training (each process its own shards, the same batches on every run), and the same from an S3 server."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_digits
from safetensors.torch import load_file

import deepcat
from deepcat.data.order import Order
from deepcat.data.resolve import resolve_data
from deepcat.data.shard_stream import ShardStream
from deepcat.data.shards import ShardMembers
from deepcat.inputs import input_kind


@pytest.fixture
def pngs(tmp_path: Path) -> Path:
    root = write_digits(tmp_path / "pngs", per_class=40)
    first = sorted((root / "digit0").glob("*.png"))[0]
    shutil.copy(first, root / "digit1" / "copy.png")  # a label conflict the audit must find from the facts alone
    return root


def test_shards_hold_every_input_and_the_audit_reads_their_facts(pngs, tmp_path):
    out = deepcat.shard(str(pngs), out=str(tmp_path / "shards"), per_shard=16, progress=False)
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    folder, shards = resolve_data(str(pngs)), resolve_data(out)
    assert shards.classes == folder.classes and manifest["counts"] == {"train": 96, "val": 25}
    assert len(manifest["shards"]) == 8  # 96 / 16 training shards, 25 / 16 -> 2 validation shards
    kind = input_kind("image")
    for name in ("train", "val"):  # the same inputs under the same labels, shuffled once when written
        a, b = folder.split(name), shards.split(name)
        assert sorted(_pixels_and_labels(a)) == sorted(_pixels_and_labels(b))
        assert a.labels.tolist() != b.labels.tolist()
    assert isinstance(shards.train.items, ShardMembers) and "#" in shards.train.items[0]

    import webdataset as wds  # the files are WebDataset's: its own reader sees the same inputs and labels

    urls = [str(Path(out) / s) for s in manifest["shards"] if s.startswith("train")]
    read = list(wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("png", "cls"))
    assert sorted(int(c) for _, c in read) == sorted(shards.train.labels.tolist())
    assert np.array_equal(np.asarray(read[0][0]), np.asarray(shards.train.decode(0, kind)))

    from deepcat.data.audit import audit

    found, expected = audit(shards, progress=False), audit(folder, progress=False)
    assert found.images == expected.images == 121
    assert [g["kind"] for g in found.duplicates] == [g["kind"] for g in expected.duplicates]
    assert any("label_conflict" in g["kinds"] for g in found.duplicates)


def _pixels_and_labels(samples):
    kind = input_kind("image")
    return [(np.asarray(samples.decode(i, kind)).tobytes(), int(samples.labels[i])) for i in range(len(samples))]


def _stream(samples, *, rank=0, world=1, workers=1, epoch=0, batch=8):
    order = Order(batch, shuffle=True, seed=5, rank=rank, world_size=world, drop_last=True)
    stream = ShardStream(samples, lambda image: np.asarray(image).sum(), input_kind("image"), order, workers=workers)
    stream.set_epoch(epoch)
    return stream


def test_each_process_streams_its_own_shards_and_every_epoch_is_repeatable(pngs, tmp_path):
    train = resolve_data(deepcat.shard(str(pngs), out=str(tmp_path / "s"), per_shard=12, progress=False)).train
    assert len(np.unique(train.items.shard)) == 8
    ranks = [_stream(train, rank=r, world=2) for r in range(2)]
    mine = [set(s.share(0)[0].tolist()) for s in ranks]
    assert not mine[0] & mine[1] and len(mine[0]) == len(mine[1]) == 4  # disjoint halves of the shards
    assert len(ranks[0]) == len(ranks[1]) == 48  # the same number of batches in every process (DDP needs it)
    one = _stream(train)
    first = [int(label) for _, label in one]
    assert len(first) == 96 and sorted(first) == sorted(train.labels.tolist())  # every input once
    assert first == [int(label) for _, label in _stream(train)]  # the same epoch, the same order
    assert first != [int(label) for _, label in _stream(train, epoch=1)]  # the next epoch, another
    two = _stream(train, workers=2)  # each worker its shards and its share of the batches
    shares = [two.share(w) for w in range(2)]
    assert sum(n for _, n in shares) == 96 and not set(shares[0][0]) & set(shares[1][0])


def test_a_run_on_shards_trains_from_s3_to_the_weights_it_reaches_on_disk(pngs, tmp_path, s3_bucket):
    options = dict(epochs=3, batch_size=16, seed=1, workers=2, audit=False, progress=False, output=str(tmp_path))
    local = deepcat.shard(str(pngs), out=str(tmp_path / "local"), per_shard=16, progress=False)
    deepcat.shard(str(pngs), out=f"s3://{s3_bucket}/pets", per_shard=16, progress=False)
    a = deepcat.train(local, name="local", **options)
    b = deepcat.train(f"s3://{s3_bucket}/pets/train-{{00000..00005}}.tar", name="remote", **options)
    wa, wb = load_file(a / "last.safetensors"), load_file(b / "last.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert float((b / "metrics.csv").read_text().splitlines()[-1].split(",")[5]) > 0.6  # val_acc; chance is 1/3
