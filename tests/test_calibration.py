"""Calibrated confidence and `unknown`: the maths on known cases, then a real run on digits 0-7 shown 8s and 9s."""

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import deepcat
from deepcat.evaluation import calibration
from deepcat import export
from deepcat.inference.onnx_model import load_onnx
from deepcat.serving.app import create_app


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 5))
    labels = np.array([rng.choice(5, p=p) for p in calibration.softmax(logits)])  # calibrated by construction
    over = logits * 2.5                                                            # an overconfident model
    t = calibration.fit_temperature(over, labels)
    assert t == pytest.approx(2.5, rel=0.05)
    before = calibration.expected_calibration_error(calibration.softmax(over), labels)
    after = calibration.expected_calibration_error(calibration.softmax(over, t), labels)
    assert after < 0.02 < 0.1 < before


def test_ece_of_known_cases():
    probs = np.array([[0.9, 0.1]] * 10)
    assert calibration.expected_calibration_error(probs, np.array([0] * 9 + [1])) == pytest.approx(0.0)
    assert calibration.expected_calibration_error(probs, np.array([0] * 5 + [1] * 5)) == pytest.approx(0.4)


def test_threshold_accepts_the_target_share():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(0, 3, (4000, 4)), rng.integers(0, 4, 4000)
    cal = calibration.fit(logits, labels, accept=0.9)
    accepted = 1 - cal.rejects(calibration.energy_score(logits)).mean()
    assert accepted == pytest.approx(0.9, abs=0.002)


def digit_images(digit: int, count: int) -> list[np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return [np.clip(img * 16, 0, 255).astype(np.uint8) for img in bunch.images[bunch.target == digit][-count:]]


@pytest.fixture(scope="module")
def run_0_to_7(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return deepcat.train(data="digits", classes="0,1,2,3,4,5,6,7", output=str(out), name="d8", epochs=8,
                         progress=False)


def test_run_saves_calibration_and_improves_ece(run_0_to_7):
    meta = json.loads((run_0_to_7 / "model.json").read_text())
    assert meta["classes"] == [str(d) for d in range(8)]
    assert meta["calibration"]["score"] == "energy" and meta["calibration"]["temperature"] > 0
    report = json.loads((run_0_to_7 / "calibration.json").read_text())
    assert report["ece_after"] < report["ece_before"]
    assert (run_0_to_7 / "reliability.png").is_file() and (run_0_to_7 / "rejection.png").is_file()


def test_unseen_digits_are_answered_unknown_everywhere(run_0_to_7):
    unseen = digit_images(8, 40) + digit_images(9, 40)
    known = digit_images(3, 40)
    clf = deepcat.load(run_0_to_7)
    unknown_share = np.mean([p.label == "unknown" for p in clf.predict(unseen)])
    known_share = np.mean([p.label == "unknown" for p in clf.predict(known)])
    assert unknown_share > max(0.2, 2 * known_share)  # held-out classes are rejected far more often
    assert not any(p.label == "unknown" for p in clf.predict(unseen, reject=False))

    path = export(run_0_to_7, format="onnx", progress=False).path
    onnx = load_onnx(path)
    assert onnx.threshold == pytest.approx(clf.calibration.threshold)
    assert [p.label for p in onnx.predict(unseen)] == [p.label for p in clf.predict(unseen)]

    rejected = next(img for img, p in zip(unseen, clf.predict(unseen)) if p.label == "unknown")
    png = io.BytesIO()
    Image.fromarray(rejected).save(png, format="PNG")
    for reject, expected in ((True, "unknown"), (False, clf.predict(rejected, reject=False).label)):
        with TestClient(create_app(path, reject=reject)) as client:
            answer = client.post("/v1/predict", content=png.getvalue(), headers={"content-type": "image/png"}).json()
        assert answer["label"] == expected
        assert answer["score"] < onnx.threshold
