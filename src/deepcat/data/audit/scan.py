"""One pass over every image: a content hash, a perceptual hash (imagehash's pHash, 64 bits) confirmed by a
16x16 thumbnail, the size, colour and EXIF orientation, or why it could not be read. Two processes, a progress bar.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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
