"""The web page in a real headless Chromium: a real photo classified in the browser, as the server does."""

import shutil
import time
from pathlib import Path

import httpx
import pytest
from test_serving import Server

from deepcat.exporting.export import export_pretrained_cat_dog
from deepcat.serving.app import create_app, default_web_assets

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER and (default_web_assets() / "ort.min.js").is_file()),
    reason="needs Debian's chromium + chromium-driver and `npm ci --prefix web` (.ci/run installs them)",
)


@pytest.fixture(scope="module")
def cat_dog_model(tmp_path_factory) -> Path:
    return export_pretrained_cat_dog(tmp_path_factory.mktemp("model") / "cat-dog-neither.onnx")


def chrome(download_dir: Path, flags: tuple[str, ...] = ()):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
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
    url: str, image: Path, profile: Path, api_key: str | None = None, coverage: str | None = None
) -> dict:
    """Open the page (typing `api_key` when it asks), wait for its model, upload `image` (asking for the
    prediction set at `coverage`), wait for the answer; what the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = chrome(profile)
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
            Select(driver.find_element(By.ID, "coverage")).select_by_visible_text(coverage)
        driver.find_element(By.ID, "file").send_keys(str(image))
        while not driver.find_element(By.TAG_NAME, "body").get_attribute("data-classified"):
            assert time.time() < deadline, "the page did not classify the image"
            time.sleep(0.2)
        shown = {
            "label": driver.find_element(By.ID, "label").text,
            "mode": driver.find_element(By.ID, "mode").text,
            "set": driver.find_element(By.ID, "set").text,
            "bars": len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")),
        }
        driver.save_screenshot(str(profile.parent / "page.png"))
        return shown
    finally:
        driver.quit()


@pytest.mark.slow
@needs_browser
def test_page_classifies_in_the_browser_like_the_server(cat_dog_model, chelsea_jpg, tmp_path):
    with Server(create_app(cat_dog_model)) as url:
        server_label = httpx.post(
            f"{url}/v1/predict", content=chelsea_jpg.read_bytes(), headers={"content-type": "image/jpeg"}
        ).json()["label"]
        shown = classify_in_page(url, chelsea_jpg, tmp_path / "profile")
    assert server_label == "cat"
    assert shown["label"] == server_label and "in your browser" in shown["mode"]
    assert shown["bars"] == 3  # cat, dog, neither


@pytest.mark.slow
@needs_browser
def test_page_behind_an_api_key_asks_for_it_and_still_classifies_in_the_browser(cat_dog_model, chelsea_jpg, tmp_path):
    with Server(create_app(cat_dog_model, api_key="s3cret")) as url:
        shown = classify_in_page(url, chelsea_jpg, tmp_path / "profile", api_key="s3cret")
    assert shown["label"] == "cat" and "in your browser" in shown["mode"]


@pytest.mark.slow
@needs_browser
def test_page_answers_unknown_and_prediction_sets_like_the_server(tmp_path):
    """A digits model trained on 0-7, shown an 8 it rejects: the page (the `unknown` score computed in the
    browser) says unknown; shown a 3 with coverage 0.95, it shows the server's prediction set."""
    import numpy as np
    from PIL import Image
    from test_calibration import digit_images

    import deepcat
    from deepcat import export

    run = deepcat.train(
        data="digits", classes="0,1,2,3,4,5,6,7", output=str(tmp_path), name="d8", epochs=6, progress=False
    )
    model = export(run, format="onnx", progress=False).path
    clf = deepcat.load(run)
    eights = digit_images(8, 40)
    scores = [p.score for p in clf.predict(eights)]
    assert min(scores) < clf.calibration.threshold
    photo = tmp_path / "eight.png"
    Image.fromarray(np.asarray(eights[int(np.argmin(scores))])).save(photo)  # the clearest unknown: browser and
    with Server(create_app(model)) as url:  # PIL resizing differ slightly
        server = httpx.post(f"{url}/v1/predict", content=photo.read_bytes(), headers={"content-type": "image/png"})
        shown = classify_in_page(url, photo, tmp_path / "profile")
    assert server.json()["label"] == "unknown"
    assert shown["label"] == "unknown" and "in your browser" in shown["mode"]

    three = tmp_path / "three.png"
    Image.fromarray(digit_images(3, 1)[0]).save(three)
    with Server(create_app(model)) as url:
        server = httpx.post(
            f"{url}/v1/predict?coverage=0.95", content=three.read_bytes(), headers={"content-type": "image/png"}
        ).json()
        shown = classify_in_page(url, three, tmp_path / "profile3", coverage="0.95")
    assert shown["set"].startswith("95% set: {" + ", ".join(server["set"]) + "}") and "in your browser" in shown["mode"]
