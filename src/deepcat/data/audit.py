"""Data audit: what is wrong with a data set before it is trained on.

One pass over every image (two processes, a progress bar) records a content hash, a
perceptual hash (imagehash's pHash, 64 bits), the size, colour and EXIF orientation, or
why it could not be read. Then, without touching the files:

- unreadable or truncated images;
- exact duplicates (same bytes, or same pixels for built-in sets) and near duplicates
  (pHash Hamming distance <= `near`), grouped, and each group labelled as a duplicate
  within a class, a label conflict (across classes) or a leak (across train/val/test);
- class counts and imbalance; tiny, huge, grayscale and odd-shaped images; EXIF rotation.

`fix_split` turns the findings into a cleaned split CSV that `deepcat train` reads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepcat.data.sources import SPLIT_NAMES, DataSplits, combined
from deepcat.errors import DeepcatError

NEAR_DUPLICATE_BITS = 4   # pHash distance at or under which two images are near-duplicate candidates
NEAR_DUPLICATE_MAE = 6    # ... confirmed when their 16x16 grayscale thumbnails differ by at most this (0..255)
ODD_ASPECT = 3.0          # longer side over shorter side
HUGE_PIXELS = 40_000_000
MAX_LISTED = 50           # findings of one kind listed in full in the JSON and table


@dataclass
class ImageFacts:
    """What one pass over an image learns; `error` is set when it could not be read."""

    content: str = ""
    phash: int = 0
    width: int = 0
    height: int = 0
    grayscale: bool = False
    exif_rotated: bool = False
    thumb: bytes = b""  # 16x16 grayscale: confirms a pHash match pixel by pixel
    error: str | None = None


def _hashes(image: Image.Image) -> tuple[int, bytes]:
    import imagehash

    thumb = image.convert("L").resize((16, 16), Image.BILINEAR).tobytes()
    return int(str(imagehash.phash(image)), 16), thumb


def facts_of_file(path: str) -> ImageFacts:
    """Hash and inspect one file. JPEGs decode at reduced scale (draft): a full decode is not needed
    for a 32 px hash, and a truncated file still fails."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return ImageFacts(error=f"cannot read: {e.strerror or e}")
    facts = ImageFacts(content=hashlib.blake2b(data, digest_size=16).hexdigest())
    if not data:
        facts.error = "empty file"
        return facts
    try:
        with Image.open(io.BytesIO(data)) as image:
            facts.width, facts.height = image.size
            facts.exif_rotated = image.getexif().get(0x0112, 1) not in (1, None)
            mode = image.mode
            image.draft("RGB", (64, 64))
            image.load()
            facts.grayscale = mode in ("1", "L", "LA", "I", "I;16", "F") or _equal_channels(image)
            facts.phash, facts.thumb = _hashes(image)
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file; each is a finding
        facts.error = f"unreadable image ({type(e).__name__}: {e})"
    return facts


def _equal_channels(image: Image.Image) -> bool:
    if image.mode != "RGB":
        return False
    small = np.asarray(image.resize((16, 16)), dtype=np.int16)
    return bool(np.abs(small[..., 0] - small[..., 1]).max() <= 2 and np.abs(small[..., 1] - small[..., 2]).max() <= 2)


def facts_of_array(item: np.ndarray) -> ImageFacts:
    image = Image.fromarray(item)
    h, w = item.shape[:2]
    phash, thumb = _hashes(image)
    return ImageFacts(content=hashlib.blake2b(item.tobytes(), digest_size=16).hexdigest(), phash=phash,
                      thumb=thumb, width=w, height=h, grayscale=item.ndim == 2 or _equal_channels(image))


def _facts_chunk(args: tuple[str, Any]) -> list[ImageFacts]:
    kind, chunk = args
    return [facts_of_file(p) for p in chunk] if kind == "files" else [facts_of_array(a) for a in chunk]


def scan(items: list[str] | np.ndarray, *, workers: int = 2, progress: bool = True) -> list[ImageFacts]:
    """Facts for every item, in order, over `workers` processes."""
    from tqdm import tqdm

    kind = "arrays" if isinstance(items, np.ndarray) else "files"
    size = 256
    chunks = [(kind, items[i:i + size]) for i in range(0, len(items), size)]
    out: list[ImageFacts] = []
    bar = tqdm(total=len(items), desc="audit", unit="img", disable=not progress, leave=False)
    if workers > 1 and len(chunks) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:  # as DataLoader workers do on Linux
            for part in pool.imap(_facts_chunk, chunks):
                out += part
                bar.update(len(part))
    else:
        for chunk in chunks:
            out += _facts_chunk(chunk)
            bar.update(len(chunk[1]))
    bar.close()
    return out


def _groups(keys: np.ndarray, pairs: np.ndarray | None = None) -> list[list[int]]:
    """Connected groups (size >= 2) of indices joined by equal `keys` or by `pairs` (union-find)."""
    parent = np.arange(len(keys))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = np.argsort(keys, kind="stable")
    same = np.nonzero(keys[order][1:] == keys[order][:-1])[0]
    joins = [(order[i], order[i + 1]) for i in same]
    if pairs is not None:
        joins += [tuple(p) for p in pairs]
    for a, b in joins:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for i in {int(i) for pair in joins for i in pair}:
        members.setdefault(find(i), []).append(i)
    return sorted((sorted(g) for g in members.values() if len(g) > 1), key=lambda g: g[0])


def near_pairs(hashes: np.ndarray, max_bits: int, block: int = 256) -> np.ndarray:
    """All pairs (i < j) of 64-bit hashes that differ in at most `max_bits` bits: every pair, in blocks,
    vectorised (~13 s for 70,000 images on 2 cores). Multi-index hashing was 5x slower on Fashion-MNIST,
    whose hashes share pieces far more often than random ones."""
    hashes = hashes.astype(np.uint64)
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start:start + block]
        distance = np.bitwise_count(rows[:, None] ^ hashes[None, start:])      # (block, n - start)
        i, j = np.nonzero(distance <= max_bits)
        keep = j > i                                                          # upper triangle, no self-pairs
        found.append(np.stack([i[keep] + start, j[keep] + start], 1))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


@dataclass
class Audit:
    """Findings, as plain data: `to_dict()` is the JSON file, `summary_lines()` the terminal summary."""

    data: str
    images: int
    classes: dict[str, int]
    splits: dict[str, int]
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)   # groups, each with a kind
    tiny: list[str] = field(default_factory=list)
    huge: list[str] = field(default_factory=list)
    odd_shape: list[str] = field(default_factory=list)
    grayscale: list[str] = field(default_factory=list)
    exif_rotated: list[str] = field(default_factory=list)
    sizes: dict[str, Any] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(1 for g in self.duplicates if g["kind"] == kind)

    @property
    def imbalance(self) -> float:
        counts = [c for c in self.classes.values() if c]
        return max(counts) / min(counts) if counts else 1.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["imbalance"] = self.imbalance
        out["counts"] = {k: self.count(k) for k in ("leak", "label_conflict", "duplicate")}
        for key in ("tiny", "huge", "odd_shape", "grayscale", "exif_rotated"):
            out[f"{key}_count"] = len(out[key])
            out[key] = out[key][:MAX_LISTED]
        return out

    def rows(self) -> list[tuple[str, int, str]]:
        """(finding, count, example or advice) for the terminal table."""
        def first(items: list) -> str:
            return str(items[0]) if items else ""

        def group_example(kind: str) -> str:
            g = next((g for g in self.duplicates if g["kind"] == kind), None)
            if g is None:
                return ""
            members = g["members"]
            key = "split" if kind == "leak" else "label"  # show two members that differ in what matters
            second = next((m for m in members if m[key] != members[0][key]), members[1])
            return " = ".join(f"{m['item']} ({m['label']}, {m['split']})" for m in (members[0], second))

        gray_all = len(self.grayscale) == self.images
        return [
            ("unreadable or truncated", len(self.unreadable),
             f"{self.unreadable[0]['item']}: {self.unreadable[0]['error']}" if self.unreadable else ""),
            ("leak across train/val/test", self.count("leak"), group_example("leak")),
            ("same image, different labels", self.count("label_conflict"), group_example("label_conflict")),
            ("duplicate within a class", self.count("duplicate"), group_example("duplicate")),
            (f"class imbalance (largest / smallest = {self.imbalance:.1f})", int(self.imbalance >= 3),
             ", ".join(f"{k} {v}" for k, v in self.classes.items())),
            ("tiny images", len(self.tiny), first(self.tiny)),
            ("huge images", len(self.huge), first(self.huge)),
            (f"odd shape (aspect > {ODD_ASPECT:g})", len(self.odd_shape), first(self.odd_shape)),
            ("grayscale" + (" (the whole set)" if gray_all else ""), 0 if gray_all else len(self.grayscale),
             first(self.grayscale)),
            ("EXIF rotation (deepcat applies it)", len(self.exif_rotated), first(self.exif_rotated)),
        ]

    def summary_lines(self) -> list[str]:
        lines = [f"audit of {self.data}: {self.images} images, {len(self.classes)} classes"]
        lines += [f"  {name}: {n}" + (f"  e.g. {example}" if example else "")
                  for name, n, example in self.rows() if n]
        if len(lines) == 1:
            lines[0] += "; no problems found"
        return lines

    def print_table(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"audit of {self.data}: {self.images} images, {len(self.classes)} classes, "
                            f"sizes {self.sizes.get('summary', '')}")
        table.add_column("finding")
        table.add_column("count", justify="right")
        table.add_column("example")
        for name, n, example in self.rows():
            table.add_row(name, str(n), example, style="bold red" if n and "leak" in name else None)
        Console().print(table)


def audit(splits: DataSplits, *, near: int = NEAR_DUPLICATE_BITS, workers: int = 2, progress: bool = True) -> Audit:
    """Audit every image of `splits` (as the run would split it) and return the findings."""
    everything, names, where = combined(splits)
    items, labels = everything.items, everything.labels
    facts = scan(items, workers=workers, progress=progress)
    ok = np.array([f.error is None for f in facts])
    result = Audit(data=splits.name, images=len(facts),
                   classes={c: int((labels == i).sum()) for i, c in enumerate(splits.classes)},
                   splits=dict(Counter(where)))
    result.unreadable = [{"index": int(i), "item": names[i], "error": facts[i].error} for i in np.nonzero(~ok)[0]]

    good = np.nonzero(ok)[0]
    content = np.array([facts[i].content for i in good])
    phash = np.array([facts[i].phash for i in good], dtype=np.uint64)
    pairs = near_pairs(phash, near) if near >= 0 else None
    if pairs is not None and len(pairs):  # pHash proposes, the thumbnails confirm (pHash alone is coarse)
        thumbs = np.frombuffer(b"".join(facts[i].thumb for i in good), np.uint8).reshape(len(good), -1)
        mae = np.abs(thumbs[pairs[:, 0]].astype(np.int16) - thumbs[pairs[:, 1]]).mean(1)
        pairs = pairs[mae <= NEAR_DUPLICATE_MAE]
    for g in _groups(content, pairs):
        members = good[g]
        labels_in = {int(labels[i]) for i in members}
        splits_in = {where[i] for i in members}
        kind = "label_conflict" if len(labels_in) > 1 else "leak" if len(splits_in) > 1 else "duplicate"
        result.duplicates.append({
            "kind": kind, "exact": len({facts[i].content for i in members}) == 1,
            "members": [{"index": int(i), "item": names[i], "label": splits.classes[labels[i]], "split": where[i]}
                        for i in members]})
    result.duplicates.sort(key=lambda g: ("leak", "label_conflict", "duplicate").index(g["kind"]))

    sides = np.array([[facts[i].width, facts[i].height] for i in good]).reshape(-1, 2)
    if len(sides):
        short, long_ = sides.min(1), sides.max(1)
        median_short = float(np.median(short))
        result.sizes = {"min": sides.min(0).tolist(), "median": np.median(sides, 0).tolist(),
                        "max": sides.max(0).tolist(),
                        "summary": f"{int(np.median(sides[:, 0]))}x{int(np.median(sides[:, 1]))} median"}
        for k, i in enumerate(good):
            if short[k] < max(8, 0.25 * median_short):
                result.tiny.append(names[i])
            if sides[k, 0] * sides[k, 1] > HUGE_PIXELS:
                result.huge.append(names[i])
            if long_[k] > ODD_ASPECT * short[k]:
                result.odd_shape.append(names[i])
    result.grayscale = [names[i] for i in good if facts[i].grayscale]
    result.exif_rotated = [names[i] for i in good if facts[i].exif_rotated]
    return result


def fix_split(splits: DataSplits, found: Audit, path: Path) -> dict[str, int]:
    """Write a cleaned split as a CSV (path,label,split) that `deepcat train` reads. The user's files stay as
    they are. Dropped: unreadable images; every copy of a label conflict (which label is right is unknown);
    leaked copies outside train's group (val/test keep their copy, train loses its); extra duplicates."""
    everything, names, where = combined(splits)
    items, labels = everything.items, everything.labels
    if isinstance(items, np.ndarray):
        raise DeepcatError(f"--fix writes a CSV of file paths; {splits.name} is a built-in data set held in "
                           f"memory. Its audit findings are in the JSON file")
    drop = {u["index"] for u in found.unreadable}
    reasons = Counter(unreadable=len(drop))
    for g in found.duplicates:
        members = [m["index"] for m in g["members"]]
        if g["kind"] == "label_conflict":
            lost = members
        else:  # keep one copy, from the most held-out split present (test, then val, then train)
            keep = max(members, key=lambda i: (SPLIT_NAMES.index(where[i]), -i))
            lost = [i for i in members if i != keep]
        reasons[g["kind"]] += len(lost)
        drop.update(lost)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for i, item in enumerate(items):
            if i not in drop:
                writer.writerow([str(Path(item).resolve()), splits.classes[labels[i]], where[i]])
    return {"kept": len(items) - len(drop), "dropped": len(drop), **reasons}


def _fingerprint(splits: DataSplits, near: int) -> str:
    """Changes when any image, label or split assignment changes (file size and mtime stand in for content)."""
    import os

    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{splits.name}|{splits.classes}|{near}|{NEAR_DUPLICATE_MAE}|v1".encode())
    for name in SPLIT_NAMES:
        samples = splits.split(name)
        if samples is None:
            continue
        digest.update(name.encode() + samples.labels.tobytes())
        if samples.in_memory:
            digest.update(np.ascontiguousarray(samples.items).data)
        else:
            for path in samples.items:
                stat = os.stat(path)
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def audit_cached(splits: DataSplits, *, near: int = NEAR_DUPLICATE_BITS, progress: bool = True,
                 cache: Path | None = None) -> Audit:
    """`audit`, remembered per data set and split in ~/.cache/deepcat/audit: a second run on the same data
    (the usual case when tuning) costs a hash instead of a pass over every image."""
    cache = cache or Path.home() / ".cache" / "deepcat" / "audit"
    path = cache / f"{_fingerprint(splits, near)}.json"
    if path.is_file():
        try:
            return Audit(**json.loads(path.read_text()))
        except (TypeError, ValueError):
            pass  # an older format: audit again
    found = audit(splits, near=near, progress=progress)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(found)))
    tmp.replace(path)
    return found


def check(data: str, *, val_fraction: float = 0.2, seed: int = 0, classes: str | None = None,
          near: int = NEAR_DUPLICATE_BITS, progress: bool = True) -> Audit:
    """Audit DATA as `deepcat.train` would split it (same val_fraction and seed).

    >>> found = deepcat.check("pets")
    >>> found.count("leak"), found.unreadable
    """
    from deepcat.data.sources import resolve_data

    return audit(resolve_data(data, val_fraction=val_fraction, seed=seed, classes=classes), near=near,
                 progress=progress)


def write_json(found: Audit, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found.to_dict(), indent=2))
