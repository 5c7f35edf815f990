"""WebDataset shards: a data set as tar files that training streams, on local disk or in object storage.

`write_shards` turns any DATA (a folder, a CSV, a built-in set) into `{split}-{n:05d}.tar` files in WebDataset's
layout (`KEY.jpg` beside `KEY.cls`, the class index as text, so `webdataset.WebDataset` reads them too), plus:
- `manifest.json`: classes, input kind, the shards of each split and, per input, its shard, byte offset and size
  (`index.npz`), so evaluation and the report read one input by its byte range;
- `facts.jsonl.gz`: the audit's facts per input (content hash, perceptual hash, thumbnail), so auditing a sharded
  set reads no image.

`from_shards` reads them back as `DataSplits` whose samples are `ShardMembers`, from a folder or any fsspec URL
(`s3://bucket/prefix`; S3 needs `pip install 'deepcat[s3]'`, credentials and endpoint from the usual AWS
environment variables). Training streams whole shards through a shuffle buffer (`shard_stream.py`).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from deepcat.data.sources import SPLIT_NAMES, DataSplits, Samples, combined, stratified_split
from deepcat.errors import DeepcatError
from deepcat.inputs import Facts

__all__ = ["FORMAT", "MANIFEST", "Member", "ShardMembers", "from_shards", "is_shards", "shard_root", "write_shards"]

MANIFEST = "manifest.json"
FORMAT = "deepcat-shards/1"
OPEN_SHARDS = 4  # read handles one process keeps open (the stream reads one shard at a time per worker)
READ_AHEAD = 8 << 20  # object storage: one request per 8 MB read ahead, not one per input


class Member(io.BytesIO):
    """One input's bytes, named as its shard and key: a kind's `read` takes it where it takes a path, and the
    error for a corrupt input names the member."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return str(self.name)


@dataclass
class ShardMembers:
    """The inputs of a split as (shard, byte offset, size) in the shard files under `root`. Indexing with an
    int gives an input's name (`root/train-00003.tar#00000042.jpg`), with an array a subset; `read(i)` its bytes."""

    root: str
    shards: list[str]  # file names under root; `shard` indexes them
    shard: np.ndarray  # (N,) int32
    offset: np.ndarray  # (N,) int64: where the input's bytes start in its shard
    size: np.ndarray  # (N,) int64
    row: np.ndarray  # (N,) int64: the input's key, its line in facts.jsonl.gz
    suffix: list[str]  # per input: ".jpg", ".wav", ".npy" (an in-memory item)
    token: str = ""  # the manifest's id: the audit's cache key
    _open: OrderedDict[int, IO[bytes]] = field(default_factory=OrderedDict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return self.name(int(index))
        index = np.asarray(index)
        return ShardMembers(
            self.root,
            self.shards,
            self.shard[index],
            self.offset[index],
            self.size[index],
            self.row[index],
            [self.suffix[i] for i in index],
            self.token,
        )

    def __iter__(self) -> Iterator[str]:
        return (self.name(i) for i in range(len(self)))

    def __getstate__(self) -> dict[str, Any]:  # a data-loader worker opens its own handles
        return {**self.__dict__, "_open": OrderedDict()}

    def name(self, i: int) -> str:
        return f"{self.root}/{self.shards[self.shard[i]]}#{self.row[i]:08d}{self.suffix[i]}"

    def url(self, shard: int) -> str:
        return f"{self.root}/{self.shards[shard]}"

    def read(self, i: int) -> Member:
        """Input `i`'s bytes. Handles stay open (a few), so reading a shard's inputs in order streams the file."""
        handle = self._handle(int(self.shard[i]))
        handle.seek(int(self.offset[i]))
        return Member(handle.read(int(self.size[i])), self.name(i))

    def item(self, i: int) -> Any:
        """Input `i` as prediction takes it: its bytes as an open file, or the array of an in-memory item."""
        member = self.read(i)
        return np.load(member) if self.suffix[i] == ".npy" else member

    def decode(self, i: int, kind: Any, min_side: int | None = None) -> Any:
        """Input `i` decoded by `kind`, as `Samples.decode` does a file or an in-memory item."""
        item = self.item(i)
        if isinstance(item, np.ndarray):
            return kind.from_memory(item)
        return kind.read(item, min_side) if min_side else kind.read(item)

    def _handle(self, shard: int) -> IO[bytes]:
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        if len(self._open) >= OPEN_SHARDS:
            self._open.popitem(last=False)[1].close()
        fs, path = _filesystem(self.url(shard))
        self._open[shard] = fs.open(path, "rb", block_size=READ_AHEAD, cache_type="readahead")
        return self._open[shard]

    def joined(self, parts: list[ShardMembers]) -> ShardMembers:
        """These inputs' store with `parts` (of the same shards) in one."""
        first = self
        return ShardMembers(
            first.root,
            first.shards,
            np.concatenate([p.shard for p in parts]),
            np.concatenate([p.offset for p in parts]),
            np.concatenate([p.size for p in parts]),
            np.concatenate([p.row for p in parts]),
            [s for p in parts for s in p.suffix],
            first.token,
        )

    def facts(self) -> list[Facts]:
        """The audit's facts of these inputs, as `deepcat shard` recorded them."""
        fs, path = _filesystem(f"{self.root}/facts.jsonl.gz")
        with fs.open(path, "rb") as raw, gzip.open(raw, "rt") as lines:
            every = [_facts_from(json.loads(line)) for line in lines]
        return [every[r] for r in self.row]


def _facts_from(d: dict[str, Any]) -> Facts:
    return Facts(d["content"], int(d["fingerprint"]), base64.b64decode(d["thumb"]), d["traits"], d["error"])


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)  # type: ignore[no-any-return]
    except ImportError as e:
        scheme = url.split("://", 1)[0]
        raise DeepcatError(
            f"reading {scheme}:// needs its fsspec driver ({e}); for S3: pip install 'deepcat[s3]'"
        ) from None


def shard_root(data: str) -> str:
    """The folder or URL prefix that holds the manifest: DATA itself, or the folder of a shard pattern such as
    `s3://bucket/pets/train-{00000..00009}.tar` or a manifest's path."""
    data = data.rstrip("/")
    if data.endswith((".tar", MANIFEST)) or "{" in data:
        return data.rsplit("/", 1)[0]
    return data


def is_shards(data: str) -> bool:
    """DATA names shards: a URL (s3://, gs://, https://, file://), or a local folder with a manifest."""
    if "://" in data:
        return True
    root = Path(shard_root(data)).expanduser()
    return (root / MANIFEST).is_file()


def from_shards(data: str, *, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """The splits `deepcat shard` wrote under DATA (a folder or URL). Without a written validation split, one
    is split off the training inputs as for a folder."""
    root = shard_root(data)
    fs, path = _filesystem(f"{root}/{MANIFEST}")
    try:
        with fs.open(path, "rb") as f:
            manifest = json.load(f)
        fs, index_path = _filesystem(f"{root}/index.npz")
        with fs.open(index_path, "rb") as f:
            index = dict(np.load(io.BytesIO(f.read())))
    except FileNotFoundError:
        raise DeepcatError(
            f"{root} holds no deepcat shards ({MANIFEST} and index.npz); "
            f"write them with `deepcat shard DATA --out {root}`"
        ) from None
    if manifest.get("format") != FORMAT:
        raise DeepcatError(f"{root}/{MANIFEST} is not a {FORMAT} manifest (format: {manifest.get('format')!r})")
    suffixes = manifest["suffixes"]
    parts: dict[str, Samples] = {}
    for number, name in enumerate(SPLIT_NAMES):
        rows = np.flatnonzero(index["split"] == number)
        if len(rows):
            members = ShardMembers(
                root,
                manifest["shards"],
                index["shard"][rows],
                index["offset"][rows],
                index["size"][rows],
                rows.astype(np.int64),
                [suffixes[s] for s in index["suffix"][rows]],
                manifest["id"],
            )
            parts[name] = Samples(members, index["label"][rows], index["ids"][rows])
    train, val = parts["train"], parts.get("val")
    if val is None:
        train, val = stratified_split(train, val_fraction, seed)
    return DataSplits(
        manifest["name"],
        manifest["classes"],
        train,
        val,
        parts.get("test"),
        small_images=manifest["small_images"],
        native_size=manifest["native_size"],
        mirror_safe=manifest["mirror_safe"],
        input_kind=manifest["input_kind"],
    )


def write_shards(
    splits: DataSplits,
    out: str,
    *,
    per_shard: int = 10_000,
    shard_mb: float = 500,
    seed: int = 0,
    progress: bool = True,
) -> str:
    """Write `splits` as shards under `out` (a folder or an fsspec URL) and return `out`. Each split's inputs
    are shuffled first (seeded), so each shard holds every class and a stream's shuffle buffer mixes well. A
    shard closes at `per_shard` inputs or `shard_mb` megabytes."""
    from deepcat.data.audit.scan import scan
    from deepcat.inputs import input_kind
    from deepcat.progress import progress_bar

    kind = input_kind(splits.input_kind)
    rng = np.random.default_rng(seed)
    shuffled = {n: s.subset(rng.permutation(len(s))) for n in SPLIT_NAMES if (s := splits.split(n)) is not None}
    ordered = DataSplits(splits.name, splits.classes, shuffled["train"], shuffled.get("val"), shuffled.get("test"))
    everything, _, where = combined(ordered)
    items = everything.items
    if isinstance(items, ShardMembers):  # shards written again: their facts are known
        facts = items.facts()
    else:
        facts = scan(cast("list[str] | np.ndarray", items), kind, progress=progress)
    fs, root = _filesystem(out.rstrip("/"))
    fs.makedirs(root, exist_ok=True)
    suffixes: list[str] = []
    index: dict[str, list[int]] = {k: [] for k in ("shard", "offset", "size", "suffix", "split")}
    shards: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        writer: tarfile.TarFile | None = None
        count, current = 0, ""
        bar = progress_bar(total=len(everything), desc="shards", unit="input", enabled=progress, leave=False)
        for row in range(len(everything)):
            split = where[row]
            if writer is None or count >= per_shard or writer.offset >= shard_mb * 1e6 or split != current:
                if writer is not None:
                    _close(writer, fs, f"{root}/{shards[-1]}")
                shards.append(f"{split}-{sum(s.startswith(split + '-') for s in shards):05d}.tar")
                writer = tarfile.open(Path(tmp) / "shard.tar", "w", format=tarfile.USTAR_FORMAT)
                count, current = 0, split
            data, suffix = _raw(everything, row)
            if suffix not in suffixes:
                suffixes.append(suffix)
            offset = _add(writer, f"{row:08d}{suffix}", data)
            _add(writer, f"{row:08d}.cls", str(int(everything.labels[row])).encode())
            for key, value in (
                ("shard", len(shards) - 1),
                ("offset", offset),
                ("size", len(data)),
                ("suffix", suffixes.index(suffix)),
                ("split", SPLIT_NAMES.index(split)),
            ):
                index[key].append(value)
            count += 1
            bar.update()
        if writer is not None:
            _close(writer, fs, f"{root}/{shards[-1]}")
        bar.close()
    arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.int64) for k, v in index.items()}
    arrays.update(label=everything.labels.astype(np.int64), ids=everything.ids.astype(np.int64))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    fs.pipe(f"{root}/index.npz", buffer.getvalue())
    lines = (json.dumps({**asdict(f), "thumb": base64.b64encode(f.thumb).decode()}) + "\n" for f in facts)
    fs.pipe(f"{root}/facts.jsonl.gz", gzip.compress("".join(lines).encode()))
    manifest = {
        "format": FORMAT,
        "id": uuid.uuid4().hex,
        "name": splits.name,
        "classes": splits.classes,
        "input_kind": splits.input_kind,
        "small_images": splits.small_images,
        "native_size": splits.native_size,
        "mirror_safe": splits.mirror_safe,
        "counts": {n: int(sum(1 for w in where if w == n)) for n in shuffled},
        "shards": shards,
        "suffixes": suffixes,
    }
    fs.pipe(f"{root}/{MANIFEST}", json.dumps(manifest, indent=1).encode())  # last: a half-written set has none
    return out


def _raw(samples: Samples, i: int) -> tuple[bytes, str]:
    """An input's bytes as stored: a file's own bytes and suffix, an in-memory item as .npy (a shard's member
    as it was: shards can be written again, with other sizes)."""
    if isinstance(samples.items, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, samples.items[i])
        return buffer.getvalue(), ".npy"
    if isinstance(samples.items, ShardMembers):
        return samples.items.read(i).getvalue(), samples.items.suffix[i]
    path = Path(samples.items[i])
    return path.read_bytes(), path.suffix.lower()


def _add(writer: tarfile.TarFile, name: str, data: bytes) -> int:
    """Add one member; returns where its bytes start (after the 512-byte ustar header)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    start = writer.offset + 512
    writer.addfile(info, io.BytesIO(data))
    return start


def _close(writer: tarfile.TarFile, fs: Any, target: str) -> None:
    writer.close()
    fs.put_file(writer.name, target)
