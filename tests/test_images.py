import numpy as np
import pytest
from PIL import Image

from deepcat.inputs import BadInput
from deepcat.inputs.image import load_image


def test_grayscale_palette_alpha_and_16bit_become_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8), "L").save(gray)
    assert np.asarray(load_image(gray))[0, 0].tolist() == [100, 100, 100]

    pal = tmp_path / "pal.png"
    Image.fromarray(np.full((8, 8, 3), (200, 10, 10), np.uint8)).convert("P", palette=Image.ADAPTIVE).save(pal)
    assert np.asarray(load_image(pal))[0, 0].tolist() == [200, 10, 10]

    alpha = tmp_path / "alpha.png"
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black: shows the white background
    Image.fromarray(rgba, "RGBA").save(alpha)
    assert np.asarray(load_image(alpha))[0, 0].tolist() == [255, 255, 255]

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535 // 2, np.uint16)).save(deep)
    value = np.asarray(load_image(deep))[0, 0]
    assert load_image(deep).mode == "RGB" and abs(int(value[0]) - 127) <= 1


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (40, 20), "red")
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


def test_truncated_and_non_image_files_name_the_file(tmp_path, truncated_jpg):
    with pytest.raises(BadInput, match="truncated.jpg"):
        load_image(truncated_jpg)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(BadInput, match="notes.jpg: not an image"):
        load_image(text)


def test_a_png_whose_bytes_cannot_hold_its_pixels_is_refused_before_decoding():
    """The most compressible PNGs there are (one bit a pixel, all zeros, zlib's best) still have the bytes
    `png_min_bytes` asks; a header claiming 36 megapixels on 70 bytes is refused without allocating them."""
    import io

    from conftest import bomb_png

    from deepcat.inputs.image import decode_bytes, png_min_bytes

    for mode, size in [("1", (8000, 5000)), ("P", (6000, 6000)), ("1", (100_000, 1)), ("L", (300, 200))]:
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, format="PNG", optimize=True)
        assert len(buf.getvalue()) >= png_min_bytes(*size), (mode, size)
    small = io.BytesIO()
    Image.new("1", (2000, 2000)).save(small, format="PNG", optimize=True)
    assert decode_bytes(small.getvalue(), "blank.png", 40_000_000).size == (2000, 2000)
    with pytest.raises(BadInput, match="forged.png: a 6000x6000 PNG needs at least 4366 bytes.*truncated"):
        decode_bytes(bomb_png(6000, 6000), "forged.png", 40_000_000)


def test_a_large_jpeg_request_is_decoded_at_reduced_scale_to_nearly_the_same_model_input():
    """A photo four times the model's resize decodes at 1/2 or 1/4 scale (never below the resize); what the model
    sees differs from a full decode by about as much as JPEG's own rounding."""
    import io

    from skimage import data

    from deepcat.inputs.image import Preprocess, decode_bytes, pixels

    pre = Preprocess(input_size=224, resize=256, interpolation="bicubic")
    big = Image.fromarray(data.chelsea()).resize((1804, 1200), Image.BICUBIC)  # shorter side 1200 >= 2 x 256
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    reduced = decode_bytes(buf.getvalue(), "photo.jpg", 40_000_000, pre)
    full = decode_bytes(buf.getvalue(), "photo.jpg", 40_000_000)
    assert full.size == (1804, 1200) and 256 <= min(reduced.size) < 600
    gap = np.abs(pixels(reduced, pre) - pixels(full, pre))
    assert gap.mean() < 2.0 and np.percentile(gap, 99) < 16, (gap.mean(), np.percentile(gap, 99))
    small = io.BytesIO()
    Image.fromarray(data.chelsea()).save(small, format="JPEG")  # 451x300: under twice the resize, decoded whole
    assert decode_bytes(small.getvalue(), "cat.jpg", 40_000_000, pre).size == (451, 300)


def test_training_reads_a_large_jpeg_at_reduced_scale_keeping_twice_the_resize(tmp_path):
    from skimage import data

    photo = tmp_path / "photo.jpg"
    Image.fromarray(data.chelsea()).resize((2048, 1536), Image.BICUBIC).save(photo, quality=90)
    assert load_image(photo).size == (2048, 1536)
    assert load_image(photo, min_side=512).size == (1024, 768)  # 1/2 scale: 1/4 would go below 512
    png = tmp_path / "photo.png"
    Image.open(photo).save(png)
    assert load_image(png, min_side=512).size == (2048, 1536)  # only JPEG decodes at reduced scale
