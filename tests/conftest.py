"""Shared fixtures and helpers: small real data written to disk (scikit-learn digits, scikit-image photos), the
server on loopback, the page in a real headless Chromium. Tests share helpers through here, never by importing
each other."""

from __future__ import annotations

import io
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from PIL import Image

from deepcat.serving.app import default_web_assets
from deepcat.serving.start import UVICORN_OPTIONS


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


# the optional export toolchains (a format's name without -int8) and the runtime module each needs; the test extra
# has them
TOOLCHAIN_RUNTIMES = {
    "openvino": "openvino",
    "executorch": "executorch.runtime",
    "litert": "ai_edge_litert.interpreter",
}


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
    from deepcat.inference.exported import load_exported

    onnx = load_exported(deepcat.export(run, format="onnx", progress=False).path)
    val, _ = run_images(run, onnx.meta, split="val", limit=10_000)
    _, scores = onnx.infer(val)
    accepted = float(np.mean(scores >= onnx.threshold))
    target = json.loads((run / "model.json").read_text())["calibration"]["target_accept"]
    assert abs(accepted - target) <= 1.5 / len(val), (accepted, target, len(val))


# ---- the server on loopback, and the page in a real browser (shared by the serving, page, sound and soak tests)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread, stopped at the end of the test module."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **UVICORN_OPTIONS))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def digit_pngs(n: int) -> list[bytes]:
    from sklearn.datasets import load_digits

    images = load_digits().images[:n]
    return [png_bytes(np.clip(img * 16, 0, 255).astype(np.uint8)) for img in images]


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header claims 2.5 gigapixels: must be refused before decoding."""
    data = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER and (default_web_assets() / "ort.min.js").is_file()),
    reason="needs Debian's chromium + chromium-driver and `npm ci --prefix web` (.ci/run installs them)",
)


PHONE = {"width": 390, "height": 844, "pixelRatio": 3.0, "touch": True}  # an iPhone 12-14's screen, in CSS pixels


def chrome(download_dir: Path, flags: tuple[str, ...] = (), phone: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    if phone:  # Chromium's mobile emulation: the viewport, pixel ratio and touch events of a phone
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={download_dir}",
        *flags,
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def classify_in_page(
    url: str,
    image: Path,
    profile: Path,
    api_key: str | None = None,
    coverage: str | None = None,
    phone: bool = False,
) -> dict:
    """Open the page (typing `api_key` when it asks; on a phone's screen with `phone`), wait for its model, upload
    `image` (asking for the prediction set at `coverage`), wait for the answer; what the page shows, with the
    viewport's and the page's widths and whether the camera button is on screen."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = chrome(profile, phone=phone)
    try:
        driver.get(url)
        deadline = time.time() + 60
        if api_key is not None:
            while not driver.find_element(By.ID, "keyform").is_displayed():
                assert time.time() < deadline, "the page did not ask for the API key"
                time.sleep(0.2)
            driver.find_element(By.ID, "key").send_keys(api_key)
            driver.find_element(By.CSS_SELECTOR, "#keyform button").click()
        while driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "true":
            assert time.time() < deadline, "the page did not load the model"
            time.sleep(0.2)
        if coverage is not None:
            Select(driver.find_element(By.ID, "coverage")).select_by_value(coverage)
            driver.find_element(By.ID, "coverage-help").click()  # what the control means, in a user's words
        driver.find_element(By.ID, "file").send_keys(str(image))
        while not driver.find_element(By.TAG_NAME, "body").get_attribute("data-classified"):
            assert time.time() < deadline, "the page did not classify the image"
            time.sleep(0.2)
        shown = {
            "label": driver.find_element(By.ID, "label").text,
            "mode": driver.find_element(By.ID, "mode").text,
            "set": driver.find_element(By.ID, "set").text,
            "sets_help": driver.find_element(By.ID, "sets-help").text,
            "bars": len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")),
            "viewport_width": driver.execute_script("return window.innerWidth"),
            "page_width": driver.execute_script("return document.documentElement.scrollWidth"),
            "touch": driver.execute_script("return navigator.maxTouchPoints > 0"),
            "camera_on_screen": driver.execute_script(
                "const r = document.getElementById('camera').getBoundingClientRect();"
                "return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth"
            ),
        }
        driver.save_screenshot(str(profile.parent / "page.png"))
        return shown
    finally:
        driver.quit()


def digit_images(digit: int, count: int) -> list[np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return [np.clip(img * 16, 0, 255).astype(np.uint8) for img in bunch.images[bunch.target == digit][-count:]]


@pytest.fixture(scope="session")
def s3_bucket():
    """A bucket on a local S3-compatible server (moto's), reached as AWS clients are: endpoint and credentials
    from the environment variables boto and s3fs read."""
    import os

    import fsspec
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
    )
    fsspec.filesystem("s3").mkdir("deepcat-test")
    yield "deepcat-test"
    os.environ.clear()
    os.environ.update(saved)
    server.stop()
