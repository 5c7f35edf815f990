"""`deepcat label`'s page in a real headless Chromium, against the command run as a user runs it: inputs labelled
by keyboard, one undone, a webcam frame captured (Chromium's fake camera), then the server killed: labels.csv is
whole and holds every label the page showed as saved."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import CHROMEDRIVER, CHROMIUM, chrome, digit_pngs, free_port
from PIL import Image

from deepcat.data.resolve import resolve_data

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium + chromium-driver (.ci/run installs them)"
)
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


def start_label_server(data: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`python -m deepcat label DATA ARGS` in its own process, once it answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    command = [sys.executable, "-m", "deepcat", "label", str(data), "--port", str(port), *args]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 60
    while True:
        assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
        try:
            if httpx.get(f"{url}/v1/state").status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "deepcat label did not start"
        time.sleep(0.2)


def wait_for(driver, script: str, what: str, timeout: float = 30):
    deadline = time.time() + timeout
    while not (value := driver.execute_script(script)):
        assert time.time() < deadline, what
        time.sleep(0.1)
    return value


@pytest.mark.slow
@needs_chromium
def test_label_by_keyboard_and_webcam_then_kill_the_server(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    data = tmp_path / "photos"
    data.mkdir()
    for i, png in enumerate(digit_pngs(6)):
        (data / f"img{i}.png").write_bytes(png)
    (data / "zz-copy.png").write_bytes((data / "img0.png").read_bytes())  # for review: the same photo twice
    server, url = start_label_server(data, "--classes", "zero,one")
    driver = chrome(tmp_path / "profile", flags=FAKE_CAMERA)
    try:
        driver.get(url)
        wait_for(driver, "return document.body.dataset.ready === 'true'", "the page did not open")
        shown = lambda: driver.execute_script("return document.body.dataset.current")  # noqa: E731
        assert shown() == "img0.png"
        assert driver.find_element(By.ID, "shown").get_attribute("alt") in ("", "img0.png")
        for key, then in [("1", "img1.png"), ("2", "img2.png"), ("1", "img3.png"), ("u", "img2.png")]:
            ActionChains(driver).send_keys(key).perform()
            wait_for(driver, f"return document.body.dataset.current === '{then}'", f"{key} did not show {then}")
        ActionChains(driver).send_keys("2").perform()  # img2, undone from zero, is one
        wait_for(driver, "return document.body.dataset.current === 'img3.png'", "the label after undo")
        wait_for(driver, "return document.getElementById('shown').naturalWidth > 0", "the image was not shown")

        driver.find_element(By.ID, "camera").click()
        wait_for(driver, "return document.getElementById('video').videoWidth > 0", "the fake camera did not start")
        driver.find_element(By.ID, "snap").click()
        captured = wait_for(driver, "return document.body.dataset.captured", "the frame was not saved")
        wait_for(driver, "return document.body.dataset.pending === '0'", "a label is still being saved")
        status = driver.find_element(By.ID, "status").text

        driver.find_element(By.CSS_SELECTOR, "#review-box summary").click()
        driver.find_element(By.ID, "review").click()
        group = "return [...document.querySelectorAll('#duplicates li')].map((li) => li.textContent).join('|')"
        assert wait_for(driver, group, "no near duplicates listed", timeout=60) == "img0.png = zz-copy.png"
        driver.find_element(By.CSS_SELECTOR, "#duplicates button[data-path='zz-copy.png']").click()
        wait_for(driver, "return document.body.dataset.current === 'zz-copy.png'", "a listed input was not shown")
    finally:
        driver.quit()
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    assert server.returncode == -signal.SIGKILL
    assert status == f"saved {captured} as zero"
    with (data / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["path"]: r["label"] for r in rows} == {
        "img0.png": "zero",
        "img1.png": "one",
        "img2.png": "one",
        captured: "zero",
    }
    assert captured.startswith("zero/capture-") and captured.endswith(".jpg")
    assert Image.open(data / captured).size[0] > 0  # the fake camera's frame, as a JPEG
    assert sorted(resolve_data(str(data / "labels.csv"), val_fraction=0).classes) == ["one", "zero"]
    assert not list(data.glob(".labels.csv.*.tmp"))


@pytest.mark.slow
@needs_chromium
def test_a_clip_plays_and_the_microphone_records_a_wav_deepcat_reads(tmp_path):
    """A folder of sound clips: the page plays each one, and a clip recorded from Chromium's fake microphone is
    saved as a WAV file that deepcat's sound reader opens without ffmpeg."""
    import numpy as np
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from deepcat.inputs import input_kind

    data = tmp_path / "sounds"
    data.mkdir()
    for i in range(3):
        tone = np.sin(np.arange(16_000) * 2 * np.pi * (200 + 100 * i) / 16_000).astype(np.float32) * 0.3
        sf.write(data / f"clip{i}.wav", tone, 16_000)
    server, url = start_label_server(data, "--classes", "low,high")
    driver = chrome(tmp_path / "profile", flags=(*FAKE_CAMERA, "--autoplay-policy=no-user-gesture-required"))
    try:
        driver.get(url)
        wait_for(driver, "return document.body.dataset.ready === 'true'", "the page did not open")
        wait_for(driver, "return document.getElementById('clip').duration > 0.9", "the clip did not load")
        assert driver.find_element(By.ID, "record").is_displayed()
        assert not driver.find_element(By.ID, "camera").is_displayed()  # a sound folder: no webcam
        driver.find_element(By.ID, "record").click()
        captured = wait_for(driver, "return document.body.dataset.captured", "the clip was not saved")
    finally:
        driver.quit()
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    assert captured.startswith("low/capture-") and captured.endswith(".wav")
    samples = input_kind("audio").read(str(data / captured))  # mono, 16 kHz
    assert 0.8 * 16_000 <= len(samples) <= 1.3 * 16_000  # the page's default: one second
