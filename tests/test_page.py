"""The web page in a real headless Chromium: a real photo classified in the browser, as the server does."""

from pathlib import Path

import httpx
import pytest
from conftest import Server, classify_in_page, needs_browser

from deepcat.exporting.export import export_pretrained_cat_dog
from deepcat.serving.app import create_app


@pytest.fixture(scope="module")
def cat_dog_model(tmp_path_factory) -> Path:
    return export_pretrained_cat_dog(tmp_path_factory.mktemp("model") / "cat-dog-neither.onnx")


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
def test_page_works_on_a_phone_screen_without_scrolling_sideways(cat_dog_model, chelsea_jpg, tmp_path):
    with Server(create_app(cat_dog_model)) as url:
        shown = classify_in_page(url, chelsea_jpg, tmp_path / "profile", phone=True)
    assert shown["viewport_width"] == 390 and shown["touch"]
    assert shown["page_width"] <= shown["viewport_width"], "the page scrolls sideways on a phone"
    assert shown["camera_on_screen"] and shown["label"] == "cat" and shown["bars"] == 3
    assert (tmp_path / "page.png").stat().st_size > 10_000  # the screenshot, for a person to look at


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
    from conftest import digit_images
    from PIL import Image

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
    assert shown["set"].startswith("95% sure it is one of: {" + ", ".join(server["set"]) + "}")
    assert "9 times in 10" in shown["sets_help"]  # "(what is this?)" says what the list means
    assert "in your browser" in shown["mode"]


@pytest.mark.slow
@needs_browser
def test_the_monitor_panel_shows_the_servers_alarm_and_its_reason(tmp_path):
    """Digits served, sent digits unlike anything in training (inverted): the page's panel shows the alarm."""
    from conftest import chrome, png_bytes
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import deepcat
    from deepcat import export
    from deepcat.data.builtin import digits

    run = deepcat.train(data="digits", output=str(tmp_path), name="d", epochs=4, progress=False)
    model = export(run, format="onnx", progress=False).path
    test = digits(None, val_fraction=0.1, seed=0, data_root=None).test
    with Server(create_app(model, monitor_window=100)) as url:
        for start in range(0, 100, 10):
            files = [
                ("files", (f"{i}.png", png_bytes(255 - img), "image/png"))
                for i, img in enumerate(test.items[start : start + 10])
            ]
            assert httpx.post(f"{url}/v1/predict/batch", files=files).status_code == 200
        driver = chrome(tmp_path / "profile")
        try:
            driver.get(url)
            WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
            driver.find_element(By.CSS_SELECTOR, "#monitor summary").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "alarm").text.startswith("alarm:"))
            alarm = driver.find_element(By.ID, "alarm").text
            rows = driver.find_element(By.ID, "monitor-rows").text
        finally:
            driver.quit()
    assert "inputs unknown, validation" in alarm and "100 of the last 100" in rows
