"""Bad input is a 4xx with a JSON body that says what was wrong; it never reaches inference."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepcat.data.images import to_rgb
from deepcat.inference.onnx_model import pixels


class RequestError(Exception):
    """A client error: HTTP status, a short machine-readable kind and a sentence for people."""

    def __init__(self, status: int, kind: str, detail: str):
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


def decode(data: bytes, meta: dict, *, max_bytes: int, max_pixels: int, name: str = "image") -> np.ndarray:
    """Bytes -> (3, H, W) model pixels, refusing empty, oversized, bomb, non-image and truncated input."""
    if not data:
        raise RequestError(400, "empty_body", f"{name}: the request had no image bytes")
    if len(data) > max_bytes:
        raise RequestError(413, "too_many_bytes", f"{name}: {len(data)} bytes is over the limit of {max_bytes}")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise RequestError(415, "unsupported_image", f"{name}: not an image format deepcat reads "
                                                     f"(JPEG, PNG, WebP, GIF, BMP, TIFF)") from None
    except Image.DecompressionBombError as e:  # PIL's own check, at twice its pixel limit
        raise RequestError(413, "too_many_pixels", f"{name}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a malformed header of any kind is the client's error
        raise RequestError(400, "corrupt_image", f"{name}: cannot read the image header ({e})") from None
    width, height = image.size
    if width * height > max_pixels:  # refused before decoding: a decompression bomb never expands
        raise RequestError(413, "too_many_pixels",
                           f"{name}: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}")
    try:
        image.load()
        return pixels(to_rgb(image), meta)
    except Exception as e:  # noqa: BLE001 - truncated or malformed data of any kind
        raise RequestError(400, "corrupt_image", f"{name}: cannot decode the image ({e})") from None
