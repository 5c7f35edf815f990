"""Shared fixtures: small real data written to disk (scikit-learn digits, scikit-image photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def pytest_addoption(parser):
    parser.addoption(
        "--bf16",
        choices=("native", "on", "off"),
        default="native",
        help="what `--amp auto` takes the CPU to compute natively: its real answer (native), or forced "
        "either way, so the precision-sensitive tests (-m precision) run both paths on any CPU",
    )


@pytest.fixture(autouse=True)
def _forced_bf16(request, monkeypatch):
    """`pytest --bf16 on|off`: `--amp auto` trains and evaluates in bf16 (emulated where the CPU lacks it: slower,
    still correct) or in fp32, whatever this CPU has."""
    forced = request.config.getoption("--bf16")
    if forced != "native":
        monkeypatch.setattr("deepcat.device.native_bf16", lambda device: forced == "on")


@pytest.fixture(autouse=True)
def _two_threads():
    """Tests run as CI does: 2 threads, and leave torch's global state as they found it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    yield
    torch.set_num_threads(threads)


def write_digits(root: Path, classes=(0, 1, 7), per_class: int = 30, size: int = 16) -> Path:
    """Real handwritten digits from scikit-learn, saved as PNG files in one folder per class."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for c in classes:
        folder = root / f"digit{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(bunch.images[bunch.target == c][:per_class]):
            pixels = np.clip(img * 16, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "L").resize((size, size), Image.BILINEAR).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def digits_folder(tmp_path: Path) -> Path:
    return write_digits(tmp_path / "digits")


@pytest.fixture(scope="session")
def chelsea_jpg(tmp_path_factory) -> Path:
    """scikit-image's photo of Chelsea the cat, as a JPEG file."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def coffee_jpg(tmp_path_factory) -> Path:
    """scikit-image's photo of a cup of coffee: no cat, no dog."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "coffee.jpg"
    Image.fromarray(data.coffee()).save(path, quality=95)
    return path


@pytest.fixture
def truncated_jpg(tmp_path: Path, chelsea_jpg: Path) -> Path:
    path = tmp_path / "truncated.jpg"
    raw = chelsea_jpg.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return path


def assert_deployed_threshold_holds(run: Path) -> None:
    """Calibration is fitted on what the deployed model computes (fp32), whatever the run trained in: the exported
    file's scores of the run's validation inputs put the share asked for above its threshold."""
    import json

    import deepcat
    from deepcat.exporting.check import run_images
    from deepcat.inference.onnx_model import load_onnx

    onnx = load_onnx(deepcat.export(run, format="onnx", progress=False).path)
    val, _ = run_images(run, onnx.meta, split="val", limit=10_000)
    _, scores = onnx.infer(val)
    accepted = float(np.mean(scores >= onnx.threshold))
    target = json.loads((run / "model.json").read_text())["calibration"]["target_accept"]
    assert abs(accepted - target) <= 1.5 / len(val), (accepted, target, len(val))
