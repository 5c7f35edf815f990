"""Images, the first kind of input: read any image file as an upright 8-bit RGB picture, and everything that
follows from "an image" (the pixels a model takes, the audit's checks, the server's decoder).

Reading handles EXIF rotation, palette and alpha (composited on white), grayscale and 16-bit images. The model
input is float32 RGB in 0..255, NCHW: shorter side resized to `resize`, centre crop `input_size`, exactly as
torchvision's eval transform; normalisation happens inside the model (`front_end`). No torch in this module:
ONNX Runtime, the server and `deepcat predict MODEL.onnx` use it; torch is imported by the tensor members.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from deepcat.inputs import BadInput, Facts

__all__ = [
    "FLAG_LABELS",
    "HUGE_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ODD_ASPECT",
    "RESAMPLE",
    "Preprocess",
    "decode_bytes",
    "flags",
    "from_memory",
    "input_spec",
    "inspect_array",
    "inspect_file",
    "load_image",
    "native_size",
    "pixels",
    "png_min_bytes",
    "reduce_jpeg",
    "to_rgb",
]

MAX_PIXELS = 40_000_000  # the largest image decoded by default: a decompression bomb is refused before it

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
ODD_ASPECT = 3.0  # longer side over shorter side
HUGE_PIXELS = 40_000_000


@dataclass
class Preprocess:
    """How raw RGB pixels become the model's input: resize shorter side, centre crop, normalise. Saved in every
    run (model.json) and export; prediction, evaluation and serving rebuild their transform from it."""

    kind: ClassVar[str] = "image"  # the input kind this preprocessing belongs to

    input_size: int
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def describe(self) -> str:
        return f"{self.input_size} px input"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(d["input_size"], d["resize"], d["interpolation"], tuple(d["mean"]), tuple(d["std"]))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: 16-bit scaled to 8-bit, transparency over white, turned as its EXIF says."""
    if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies every image, turned or not
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def reduce_jpeg(image: Image.Image, side: int) -> None:
    """Before decoding: a JPEG at least twice `side` on its shorter side is decoded at 1/2, 1/4 or 1/8 scale
    (libjpeg's DCT scaling, PIL's `draft`), the largest reduction keeping both sides >= `side`. A 12-megapixel
    phone photo decodes in a fraction of the time, and the resize to the model's input that follows sees nearly
    the same pixels."""
    if image.format == "JPEG" and min(image.size) >= 2 * side:
        image.draft(image.mode, (side, side))


def load_image(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Fully decode `path` (so truncated files fail here, not later) as upright RGB; with `min_side`, a large
    JPEG at reduced scale (`reduce_jpeg`)."""
    try:
        with Image.open(path) as img:
            if min_side:
                reduce_jpeg(img, min_side)
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise BadInput(f"{path}: not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadInput(f"{path}: cannot decode ({e})") from None


def from_memory(item: Any) -> Image.Image:
    """An (H, W) or (H, W, 3) uint8 array, or a PIL image, as upright RGB."""
    if isinstance(item, np.ndarray):
        return to_rgb(Image.fromarray(item))
    if isinstance(item, Image.Image):
        return to_rgb(item)
    raise BadInput(f"cannot read a {type(item).__name__} as an image; pass a path, a PIL image or an array")


def decode_bytes(data: bytes, name: str, max_pixels: int, pre: Preprocess | None = None) -> Image.Image:
    """Request bytes -> RGB image, refusing empty, non-image, bomb and truncated input; the pixel count is
    checked from the header, before decoding, so a decompression bomb never expands. With the model's
    preprocessing `pre`, a large JPEG is decoded at reduced scale, never below its `resize` (`reduce_jpeg`)."""
    if not data:
        raise BadInput(f"{name}: the request had no image bytes", reason="empty_body")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise BadInput(
            f"{name}: not an image format deepcat reads (JPEG, PNG, WebP, GIF, BMP, TIFF)",
            status=415,
            reason="unsupported_image",
        ) from None
    except Image.DecompressionBombError as e:  # PIL's own check, at twice its pixel limit
        raise BadInput(f"{name}: {e}", status=413, reason="too_many_pixels") from None
    except Exception as e:  # noqa: BLE001 - a malformed header of any kind is the client's error
        raise BadInput(f"{name}: cannot read the image header ({e})", reason="corrupt_image") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(
            f"{name}: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}",
            status=413,
            reason="too_many_pixels",
        )
    if image.format == "PNG" and len(data) < png_min_bytes(width, height):
        raise BadInput(
            f"{name}: a {width}x{height} PNG needs at least {png_min_bytes(width, height)} bytes and this one has "
            f"{len(data)}: it is truncated (refused before its {width * height} pixels are allocated)",
            reason="corrupt_image",
        )
    if pre is not None:
        reduce_jpeg(image, pre.resize)
    try:
        image.load()
        return to_rgb(image)
    except Exception as e:  # noqa: BLE001 - truncated or malformed data of any kind
        problem = str(e)
    image.close()  # frees the pixels now: the error's traceback would hold them until the garbage collector runs
    raise BadInput(f"{name}: cannot decode the image ({problem})", reason="corrupt_image")


def png_min_bytes(width: int, height: int) -> int:
    """The fewest bytes a PNG of this size can have: its rows at 1 bit a pixel (and a filter byte each), deflated
    at zlib's best ratio, 1032:1. A file that claims more pixels than its bytes can hold is truncated or forged, and
    decoding it would first allocate the whole image (100 MB for 6000x6000) to fail."""
    return height * (1 + (width + 7) // 8) // 1032


def pixels(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """(3, H, W) float32 RGB in 0..255: shorter side to `resize`, centre crop `input_size` (as torchvision). Only the
    crop is resampled (PIL's `box`): the same pixels as resizing the whole image and cropping (at most 2 levels
    apart from rounding, in 1 pixel of 10,000), in half the time on a photo, the largest cost of a request."""
    image = to_rgb(image)
    w, h = image.size
    size, crop = pre.resize, pre.input_size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    if (new_w, new_h) == (w, h):
        image = image.crop((left, top, left + crop, top + crop))
    else:
        sx, sy = w / new_w, h / new_h
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        image = image.resize((crop, crop), RESAMPLE[pre.interpolation], box=box)
    chw: np.ndarray = np.asarray(image, dtype=np.float32).transpose(2, 0, 1).copy()  # (3, H, W)
    return chw


# The audit's pass: a content hash, a perceptual hash (imagehash's pHash) confirmed by a 16x16 thumbnail,
# the size, colour and EXIF orientation.


def _hashes(image: Image.Image) -> tuple[int, bytes]:
    import imagehash

    thumb = image.convert("L").resize((16, 16), Image.Resampling.BILINEAR).tobytes()
    return int(str(imagehash.phash(image)), 16), thumb


def _equal_channels(image: Image.Image) -> bool:
    if image.mode != "RGB":
        return False
    small = np.asarray(image.resize((16, 16)), dtype=np.int16)
    return bool(np.abs(small[..., 0] - small[..., 1]).max() <= 2 and np.abs(small[..., 1] - small[..., 2]).max() <= 2)


def inspect_file(path: str) -> Facts:
    """Hash and inspect one file. JPEGs decode at reduced scale (draft): a full decode is not needed
    for a 32 px hash, and a truncated file still fails."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return Facts(error=f"cannot read: {e.strerror or e}")
    facts = Facts(content=hashlib.blake2b(data, digest_size=16).hexdigest())
    if not data:
        facts.error = "empty file"
        return facts
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            rotated = image.getexif().get(0x0112, 1) not in (1, None)
            mode = image.mode
            image.draft("RGB", (64, 64))
            image.load()
            gray = mode in ("1", "L", "LA", "I", "I;16", "F") or _equal_channels(image)
            facts.fingerprint, facts.thumb = _hashes(image)
            facts.traits = {"width": width, "height": height, "grayscale": gray, "exif_rotated": rotated}
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file; each is a finding
        facts.error = f"unreadable image ({type(e).__name__}: {e})"
    return facts


def inspect_array(item: np.ndarray) -> Facts:
    image = Image.fromarray(item)
    h, w = item.shape[:2]
    fingerprint, thumb = _hashes(image)
    return Facts(
        content=hashlib.blake2b(item.tobytes(), digest_size=16).hexdigest(),
        fingerprint=fingerprint,
        thumb=thumb,
        traits={"width": w, "height": h, "grayscale": item.ndim == 2 or _equal_channels(image), "exif_rotated": False},
    )


FLAG_LABELS = {
    "tiny": "tiny images",
    "huge": "huge images",
    "odd_shape": f"odd shape (aspect > {ODD_ASPECT:g})",
    "grayscale": "grayscale",
    "exif_rotated": "EXIF rotation (deepcat applies it)",
}


def flags(facts: list[Facts], names: list[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Sizes (min, median, max) and the tiny, huge, odd-shaped, grayscale and EXIF-rotated images."""
    found: dict[str, list[str]] = {key: [] for key in FLAG_LABELS}
    sides = np.array([[f.traits["width"], f.traits["height"]] for f in facts]).reshape(-1, 2)
    if not len(sides):
        return {}, found
    short, long_ = sides.min(1), sides.max(1)
    median_short = float(np.median(short))
    for k, name in enumerate(names):
        traits = facts[k].traits
        checks = {
            "tiny": short[k] < max(8, 0.25 * median_short),
            "huge": sides[k, 0] * sides[k, 1] > HUGE_PIXELS,
            "odd_shape": long_[k] > ODD_ASPECT * short[k],
            "grayscale": traits["grayscale"],
            "exif_rotated": traits["exif_rotated"],
        }
        for key, hit in checks.items():
            if hit:
                found[key].append(name)
    summary = {
        "min": sides.min(0).tolist(),
        "median": np.median(sides, 0).tolist(),
        "max": sides.max(0).tolist(),
        "summary": f"{int(np.median(sides[:, 0]))}x{int(np.median(sides[:, 1]))} median",
    }
    return summary, found


# The tensor side: torch and torchvision load when these are called.


def native_size(paths: Sequence[str]) -> int | None:
    """The largest side among up to 8 files' headers (small images get the small-image recipe)."""
    sides = []
    for path in paths[:: max(1, len(paths) // 8)][:8]:
        try:
            with Image.open(path) as img:
                sides.append(max(img.size))
        except OSError:
            continue
    return max(sides) if sides else None


def input_spec(pre: Preprocess) -> dict[str, Any]:
    return {"name": "pixels", "layout": "NCHW", "dtype": "float32", "range": [0, 255], "color": "RGB"}
