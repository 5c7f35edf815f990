"""Calibrated confidence, `unknown` and prediction sets: the maths on known cases, then a real run on digits 0-7
shown 8s and 9s, answered alike by PyTorch, ONNX Runtime and the server."""

import io
import json

import numpy as np
import pytest
from conftest import assert_deployed_threshold_holds, digit_images
from fastapi.testclient import TestClient
from PIL import Image

import deepcat
from deepcat import export
from deepcat.evaluation import calibration
from deepcat.inference.calibrated import set_limit
from deepcat.inference.exported import load_exported
from deepcat.serving.app import create_app

pytestmark = pytest.mark.precision  # parity and calibration through bf16 or fp32 training: CI runs both


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 5))
    labels = np.array([rng.choice(5, p=p) for p in calibration.softmax(logits)])  # calibrated by construction
    over = logits * 2.5  # an overconfident model
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
    logits, labels, scores = rng.normal(0, 3, (4000, 4)), rng.integers(0, 4, 4000), rng.normal(0, 1, 4000)
    cal = calibration.fit(logits, labels, scores, score="knn", accept=0.9)
    assert 1 - cal.rejects(scores).mean() == pytest.approx(0.9, abs=0.002)


def test_a_split_with_no_mistakes_keeps_temperature_1_and_a_small_one_stays_off_the_bound():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 40)
    logits = rng.normal(0, 1, (40, 3))
    logits[np.arange(40), labels] += 8  # every answer right
    cal = calibration.fit(logits, labels, np.zeros(40), score="energy")
    assert cal.temperature == 1.0 and "cannot be measured" in cal.note and cal.images == 40
    logits[0, (labels[0] + 1) % 3] += 20  # one confident mistake in 40
    t = calibration.fit_temperature(logits, labels)
    assert np.exp(-3) * 1.5 < t < np.exp(3) / 1.5  # the prior keeps it off the bounds


def test_cross_fitted_probabilities_do_not_judge_the_temperature_on_its_own_images():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (300, 4))
    labels = np.array([rng.choice(4, p=p) for p in calibration.softmax(logits / 2)])  # overconfident x2
    crossed = calibration.cross_fitted_probs(logits, labels)
    in_sample = calibration.softmax(logits, calibration.fit_temperature(logits, labels))
    assert not np.allclose(crossed, in_sample)
    assert calibration.expected_calibration_error(crossed, labels) < calibration.expected_calibration_error(
        calibration.softmax(logits), labels
    )


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_sets_cover_what_they_promise(coverage):
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2.5, (12000, 10))
    labels = np.array([rng.choice(10, p=p) for p in calibration.softmax(logits)])
    fit, held = slice(0, 4000), slice(4000, None)
    limits = calibration.conformal_quantiles(logits[fit], labels[fit], 1.0)
    sets = calibration.prediction_sets(calibration.neg_log_probs(logits[held], 1.0), limits[f"{coverage:.2f}"])
    measured = sets[np.arange(8000), labels[held]].mean()
    assert abs(measured - coverage) < 0.015 and 1 < sets.sum(1).mean() < 10
    with pytest.raises(Exception, match="0.50, 0.51"):
        set_limit(limits, 0.905, ValueError)


@pytest.fixture(scope="module")
def run_0_to_7(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return deepcat.train(data="digits", classes="0,1,2,3,4,5,6,7", output=str(out), name="d8", epochs=8, progress=False)


def test_run_saves_calibration_and_improves_ece(run_0_to_7):
    meta = json.loads((run_0_to_7 / "model.json").read_text())
    assert meta["classes"] == [str(d) for d in range(8)]
    assert meta["calibration"]["score"] == "layers" and meta["calibration"]["temperature"] > 0
    assert set(meta["calibration"]["conformal"]) >= {"0.80", "0.90", "0.95"}
    report = json.loads((run_0_to_7 / "calibration.json").read_text())
    assert report["ece_after"] < report["ece_before"]
    assert [r["coverage"] for r in report["coverage"]] == [0.8, 0.9, 0.95]
    assert (run_0_to_7 / "reliability.png").is_file() and (run_0_to_7 / "rejection.png").is_file()


def test_unseen_digits_get_the_same_unknown_and_sets_from_pytorch_onnx_and_the_server(run_0_to_7):
    unseen = digit_images(8, 40) + digit_images(9, 40)
    known = digit_images(3, 40)
    clf = deepcat.load(run_0_to_7)
    unknown_share = np.mean([p.label == "unknown" for p in clf.predict(unseen)])
    known_share = np.mean([p.label == "unknown" for p in clf.predict(known)])
    assert unknown_share > max(0.4, 3 * known_share)  # held-out classes are rejected far more often
    assert not any(p.label == "unknown" for p in clf.predict(unseen, reject=False))

    path = export(run_0_to_7, format="onnx", progress=False).path
    onnx = load_exported(path)
    assert onnx.threshold == pytest.approx(clf.calibration.threshold)
    mixed = unseen[::4] + known[::4]
    torch_answers = [(p.label, p.set) for p in clf.predict(mixed, coverage=0.95)]
    assert [(p.label, p.set) for p in onnx.predict(mixed, coverage=0.95)] == torch_answers
    assert {len(s) for _, s in torch_answers} != {1}  # sets are not just the top class
    scores = [p.score for p in clf.predict(mixed)]
    assert np.allclose([p.score for p in onnx.predict(mixed)], scores, atol=1e-4)  # the score is in the graph

    with TestClient(create_app(path)) as client:
        for image, (label, members) in zip(mixed, torch_answers):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            answer = client.post(
                "/v1/predict?coverage=0.95", content=png.getvalue(), headers={"content-type": "image/png"}
            ).json()
            assert (answer["label"], answer["set"]) == (label, members)
        refused = client.post(
            "/v1/predict?coverage=0.905", content=png.getvalue(), headers={"content-type": "image/png"}
        )
        assert refused.status_code == 422 and "0.50, 0.51" in refused.json()["detail"]

    rejected = next(img for img, p in zip(unseen, clf.predict(unseen)) if p.label == "unknown")
    png = io.BytesIO()
    Image.fromarray(rejected).save(png, format="PNG")
    for reject, expected in ((True, "unknown"), (False, clf.predict(rejected, reject=False).label)):
        with TestClient(create_app(path, reject=reject)) as client:
            answer = client.post("/v1/predict", content=png.getvalue(), headers={"content-type": "image/png"}).json()
        assert answer["label"] == expected
        assert answer["score"] < onnx.threshold


def test_the_deployed_fp32_model_accepts_the_share_of_validation_images_its_threshold_promises(run_0_to_7):
    assert_deployed_threshold_holds(run_0_to_7)


def test_a_model_that_gets_every_validation_image_right_is_not_made_certain(tmp_path):
    import csv

    run = deepcat.train(data="digits", classes="0,1", output=str(tmp_path), name="easy", epochs=3, progress=False)
    assert max(float(r["val_acc"]) for r in csv.DictReader((run / "metrics.csv").open())) == 1.0  # the premise
    meta = json.loads((run / "model.json").read_text())
    report = json.loads((run / "calibration.json").read_text())
    assert meta["calibration"]["temperature"] == 1.0 and "cannot be measured" in meta["calibration"]["note"]
    assert report["split"] == "test" and report["ece_after_measured_on"] == "images the temperature was not fitted on"
    assert report["calibration_images"] == meta["calibration"]["images"] > 0
    html = (run / "report.html").read_text()
    assert "Prediction sets" in html and "cannot be measured" in html
