"""The monitor: a served model's last answers against its validation split (drift test, accuracy without labels,
alarm with its reasons), the labels owners send back, and `predict --monitor` on a folder."""

import json

import httpx
import numpy as np
import pytest
from conftest import Server, png_bytes
from fastapi.testclient import TestClient

import deepcat
from deepcat import export
from deepcat.cli import main
from deepcat.data.builtin import digits
from deepcat.inference.monitor import Monitor, reference_of
from deepcat.serving.app import create_app


def answers(rng, n, classes=4, sharpness=4.0, class_weights=None, score_shift=0.0):
    """Synthetic answers, calibrated by construction (each true label drawn from its answer's probabilities):
    softmax of a one-hot signal plus noise, and `unknown` scores."""
    signal = rng.choice(classes, n, p=class_weights)
    logits = sharpness * np.eye(classes)[signal] + rng.normal(size=(n, classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return probabilities, rng.normal(score_shift, 1.0, n), labels


def test_traffic_like_validation_rarely_alarms_and_each_shift_alarms_with_its_reason():
    rng = np.random.default_rng(0)
    probabilities, scores, labels = answers(rng, 2000)
    threshold = float(np.quantile(scores, 0.05))
    reference = reference_of(probabilities, scores, labels, threshold=threshold)
    classes = ["cat", "dog", "fox", "owl"]

    def window(**shift):
        monitor = Monitor(classes, reference, threshold=threshold, window=500)
        monitor.observe(*answers(rng, 500, **shift)[:2])
        return monitor.report()

    normal = [window() for _ in range(20)]
    assert sum(r["alarm"] for r in normal) <= 1  # at most 5% false alarms over 20 windows
    assert all(abs(r["accuracy"]["estimate"] - reference["accuracy"]) < 0.05 for r in normal)
    unknown = window(score_shift=-2.0)
    assert unknown["alarm"] and any("inputs unknown, validation 5%" in r for r in unknown["reasons"])
    blurred = window(sharpness=1.0)
    assert blurred["alarm"] and any(r.startswith("mean confidence") for r in blurred["reasons"])
    assert blurred["accuracy"]["estimate"] < reference["accuracy"] - 0.2  # the estimate sees confidence fall
    mix = window(class_weights=[0.7, 0.1, 0.1, 0.1])
    assert mix["alarm"] and any(r.startswith("cat answered for") for r in mix["reasons"])


def test_a_window_not_yet_full_enough_is_shown_but_not_tested():
    rng = np.random.default_rng(1)
    probabilities, scores, labels = answers(rng, 300)
    monitor = Monitor(["a", "b", "c", "d"], reference_of(probabilities, scores, labels, threshold=None))
    monitor.observe(probabilities[:50], scores[:50])
    report = monitor.report()
    assert report["answers"] == 50 and report["drift"]["p_value"] is None and not report["alarm"]
    assert "fewer than 100 answers" in report["drift"]["why"]
    assert Monitor(["a", "b"], None).report()["drift"]["why"].startswith("the model has no reference")


@pytest.fixture(scope="module")
def served_digits(tmp_path_factory):
    """A digits model, its exported file, and its test split's images (never seen in training or validation)."""
    out = tmp_path_factory.mktemp("runs")
    run = deepcat.train(data="digits", output=str(out), name="digits", epochs=4, progress=False)
    test = digits(None, val_fraction=0.1, seed=0, data_root=None).test
    return run, export(run, format="onnx", progress=False).path, test


def post_batches(url, images, size=8):
    found = []
    for start in range(0, len(images), size):
        files = [
            ("files", (f"{i}.png", png_bytes(img), "image/png")) for i, img in enumerate(images[start : start + size])
        ]
        found += httpx.post(f"{url}/v1/predict/batch", files=files, timeout=30).json()["predictions"]
    return found


def test_the_server_alarms_when_its_inputs_shift_and_scores_the_labels_sent_back(served_digits):
    _, model, test = served_digits
    with Server(create_app(model, monitor_window=200)) as url:
        normal = post_batches(url, list(test.items[:200]))
        calm = httpx.get(f"{url}/v1/monitor").json()
        assert calm["answers"] == 200 and not calm["alarm"], calm["reasons"]
        assert calm["drift"]["p_value"] > 0.01 and set(calm["drift"]["tests"]) == {"confidence", "score", "classes"}
        right = [a["top"][0]["label"] == str(y) for a, y in zip(normal, test.labels[:200])]
        assert abs(calm["accuracy"]["estimate"] - np.mean(right)) < 0.1

        for answer, label in zip(normal[:40], test.labels[:40]):
            sent = httpx.post(f"{url}/v1/feedback", json={"id": answer["id"], "label": str(label)})
            assert sent.status_code == 200 and sent.json()["correct"] == (answer["top"][0]["label"] == str(label))
        measured = httpx.get(f"{url}/v1/monitor").json()["accuracy"]["measured"]
        assert measured["labels"] == 40 and measured["value"] == pytest.approx(np.mean(right[:40]))

        post_batches(url, [255 - img for img in test.items[200:360]])  # negatives: nothing like the training digits
        shifted = httpx.get(f"{url}/v1/monitor").json()
        assert shifted["alarm"] and shifted["drift"]["p_value"] < 0.01
        assert any("inputs unknown, validation" in reason for reason in shifted["reasons"]), shifted["reasons"]
        metrics = httpx.get(f"{url}/metrics").text
        assert "deepcat_monitor_alarm 1.0" in metrics and 'deepcat_monitor_class_share{class="0"}' in metrics


def test_feedback_refuses_what_it_cannot_score(served_digits):
    _, model, test = served_digits
    with TestClient(create_app(model, api_key="k")) as client:
        files = {"file": ("d.png", png_bytes(test.items[0]), "image/png")}
        answer = client.post("/v1/predict", files=files, headers={"x-api-key": "k"}).json()
        assert client.post("/v1/feedback", json={"id": answer["id"], "label": "3"}).status_code == 401
        key = {"x-api-key": "k"}
        wrong_label = client.post("/v1/feedback", json={"id": answer["id"], "label": "cat"}, headers=key)
        assert wrong_label.status_code == 422 and "not one of the model's classes" in wrong_label.json()["detail"]
        assert client.post("/v1/feedback", content=b"{", headers=key).json()["error"] == "invalid_feedback"
        assert client.post("/v1/feedback", json={"id": "nope", "label": "3"}, headers=key).status_code == 404
        huge = client.post("/v1/feedback", content=b" " * 10_000, headers={**key, "content-type": "application/json"})
        assert huge.status_code == 413
        assert client.post("/v1/feedback", json={"id": answer["id"], "label": "3"}, headers=key).status_code == 200
        again = client.post("/v1/feedback", json={"id": answer["id"], "label": "3"}, headers=key)
        assert again.status_code == 404  # one label per answer
        assert client.get("/v1/monitor").status_code == 401


def test_predict_monitor_prints_the_servers_report_for_a_folder(served_digits, tmp_path, capsys):
    run, _, test = served_digits
    for i, img in enumerate(test.items[:120]):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(img))
    assert main(["predict", str(run), str(tmp_path), "--monitor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["monitor"]
    assert report["answers"] == 120 and not report["alarm"] and report["drift"]["p_value"] > 0.01
    for i, img in enumerate(test.items[:120]):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(255 - img))
    assert main(["predict", str(run), str(tmp_path), "--monitor"]) == 0
    assert "alarm" in capsys.readouterr().out
    assert main(["predict", str(run), str(tmp_path), "--monitor", "--output", str(tmp_path / "a.csv")]) == 2
    assert "drop --output" in capsys.readouterr().err and not (tmp_path / "a.csv").exists()


def test_without_a_threshold_a_moved_score_is_said_by_the_score_and_sets_are_sized_only_when_given():
    rng = np.random.default_rng(2)
    probabilities, scores, labels = answers(rng, 1000)
    monitor = Monitor(["a", "b", "c", "d"], reference_of(probabilities, scores, labels, threshold=None), window=300)
    shifted, moved, _ = answers(rng, 300, score_shift=-3.0)
    monitor.observe(shifted, moved)
    report = monitor.report()
    assert report["unknown_share"]["now"] is None and report["set_size"]["mean"] is None
    assert any("unknown score of the last 300 inputs moved" in reason for reason in report["reasons"])


def test_a_label_sent_back_is_scored_against_the_answer_given_not_the_likeliest_class():
    from deepcat.serving.feedback import Answers

    store = Answers(["cat", "dog"])
    decided = {"label": "cat", "top": [{"label": "dog", "probability": 0.6}, {"label": "cat", "probability": 0.4}]}
    unknown = {"label": "unknown", "top": [{"label": "dog", "probability": 0.5}]}
    first, second = store.remember(decided), store.remember(unknown)
    assert store.score(json.dumps({"id": first, "label": "cat"}).encode()) == (first, True)
    assert store.score(json.dumps({"id": second, "label": "dog"}).encode()) == (second, True)  # its best guess
