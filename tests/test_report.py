"""report.html: written by every run, self-contained, and renders with its images in a real headless Chromium."""

import re
import time

import pytest
from conftest import CHROMEDRIVER, CHROMIUM, chrome

import deepcat
from deepcat import export
from deepcat.cli import main

SECTIONS = (
    "Data",
    "Audit",
    "Training",
    "Evaluation",
    "Calibration",
    "Unknown inputs",
    "Worst mistakes",
    "Suspected label errors",
    "Export",
    "Model card",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return deepcat.train(data="digits", output=str(tmp_path_factory.mktemp("runs")), name="d", epochs=3, progress=False)


# What each section holds once its part of the pipeline has run: a heading alone (written by every branch,
# also when a part is missing) does not pass.
FILLED = {
    "Data": [r"<td>9</td><td class=\"n\">\d+</td>", r"<h3>Audit</h3>", r"leaks across train/val/test"],
    "Training": [r'alt="learning curves"', r"<td>model</td><td>smallcnn</td>"],
    "Evaluation": [
        r"test split, 360 images",
        r'alt="confusion matrix"',
        r"(<tr><td>\d</td>(<td class=\"n\">[\d.]+</td>){4}</tr>){10}",
    ],
    "Calibration": [r"T = \d+\.\d+", r"<b>0\.\d+</b> before", r'alt="reliability diagram"'],
    "Unknown inputs": [r"below <b>-?\d+\.\d+</b>", r'alt="rejection trade-off"'],
    "Worst mistakes": [r'alt="mistakes"', r"<th>predicted</th>"],
    "Suspected label errors": [r"\d+ of 1797 images look mislabelled"],
    "Export": [r"Not exported yet"],
    "Model card": [r"smallcnn, 16 px input", r"classes: 0, 1, 2"],
}


def sections(page: str) -> dict[str, str]:
    parts = re.split(r"<h2>", page)[1:]
    return {part.split("</h2>")[0].split(" (")[0]: part for part in parts}


def test_report_is_self_contained_and_filled(run):
    page = (run / "report.html").read_text()
    found = sections(page)
    for section, patterns in FILLED.items():
        for pattern in patterns:
            assert re.search(pattern, found[section]), (section, pattern)
    assert not re.search(r'src="(?!data:)', page)  # every image inlined: the file can be mailed on its own
    assert page.count('src="data:image/png;base64,') >= 6  # curves, confusion, reliability, rejection, ...


def test_export_and_cli_rewrite_the_report(run):
    export(run, format="onnx", progress=False)
    assert re.search(r"<td>model.onnx</td><td>[\d.]+ MB</td>", sections((run / "report.html").read_text())["Export"])
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium + chromium-driver")
def test_report_renders_in_chromium(run, tmp_path):
    from selenium.webdriver.common.by import By

    driver = chrome(tmp_path / "profile")
    try:
        driver.get((run / "report.html").resolve().as_uri())
        deadline = time.time() + 30
        while driver.execute_script("return document.readyState") != "complete":
            assert time.time() < deadline
            time.sleep(0.1)
        images = driver.find_elements(By.TAG_NAME, "img")
        sizes = [
            driver.execute_script("return [arguments[0].naturalWidth, arguments[0].complete]", img) for img in images
        ]
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert len(images) >= 6 and all(width > 100 and done for width, done in sizes), sizes
    assert [s for s in SECTIONS if s not in ("Audit",) and not any(h.startswith(s) for h in headings)] == []
