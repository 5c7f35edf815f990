"""The web page in a real headless Chromium: a real photo classified in the browser, as the server does."""

import shutil
import time
from pathlib import Path

import httpx
import pytest

from deepcat.export.api import export_pretrained_cat_dog
from deepcat.serving.app import create_app, default_web_assets
from test_serving import Server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER and (default_web_assets() / "ort.min.js").is_file()),
                                   reason="needs Debian's chromium + chromium-driver and `npm ci --prefix web` "
                                          "(.ci/run installs them)")


@pytest.fixture(scope="module")
def cat_dog_model(tmp_path_factory) -> Path:
    return export_pretrained_cat_dog(tmp_path_factory.mktemp("model") / "cat-dog-neither.onnx")


def chrome(download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={download_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.slow
@needs_browser
def test_page_classifies_in_the_browser_like_the_server(cat_dog_model, chelsea_jpg, tmp_path):
    from selenium.webdriver.common.by import By

    with Server(create_app(cat_dog_model)) as url:
        server_label = httpx.post(f"{url}/v1/predict", content=chelsea_jpg.read_bytes(),
                                  headers={"content-type": "image/jpeg"}).json()["label"]
        driver = chrome(tmp_path / "profile")
        try:
            driver.get(url)
            deadline = time.time() + 60
            while driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "true":
                assert time.time() < deadline, "the page did not load the model"
                time.sleep(0.2)
            assert "in your browser" in driver.find_element(By.ID, "mode").text
            driver.find_element(By.ID, "file").send_keys(str(chelsea_jpg))
            while not driver.find_element(By.TAG_NAME, "body").get_attribute("data-classified"):
                assert time.time() < deadline, "the page did not classify the photo"
                time.sleep(0.2)
            browser_label = driver.find_element(By.ID, "label").text
            bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar")
            driver.save_screenshot(str(tmp_path / "page.png"))
        finally:
            driver.quit()
    assert server_label == "cat"
    assert browser_label == server_label
    assert len(bars) == 3  # cat, dog, neither
