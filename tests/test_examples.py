"""examples/: a deepcat model inside an existing Flask or Django app answers the same JSON as `deepcat serve`,
on a real image, through each framework's own test client; neither imports torch."""

import subprocess
import sys
from pathlib import Path

import pytest

import deepcat

ROOT = Path(__file__).parent.parent
SEVEN = ROOT / "examples" / "digits" / "digit-7.png"


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory) -> str:
    run = deepcat.train(
        "digits", output=str(tmp_path_factory.mktemp("runs")), name="d", epochs=3, audit=False, progress=False
    )
    return deepcat.export(run, format="onnx", progress=False).path


def served_answer(model: str) -> dict:
    """What `deepcat serve` answers for the 7, for comparison, but the answer's id (for `/v1/feedback`, which the
    examples do not have)."""
    from fastapi.testclient import TestClient

    from deepcat.serving.app import create_app

    with TestClient(create_app(model)) as client:
        answer = client.post(
            "/v1/predict?top_k=3", files={"file": ("digit-7.png", SEVEN.read_bytes(), "image/png")}
        ).json()
    assert len(answer.pop("id")) == 32
    return answer


def test_flask_app_answers_like_the_server(digits_model):
    sys.path.insert(0, str(ROOT))
    from examples.flask_app import create_app

    client = create_app(digits_model).test_client()
    answer = client.post("/v1/predict?top_k=3", data={"file": (SEVEN.open("rb"), "digit-7.png")}).get_json()
    assert answer == served_answer(digits_model) and answer["label"] == "7"
    refused = client.post("/v1/predict", data=b"not an image", content_type="image/png")
    assert refused.status_code == 415 and refused.get_json()["error"] == "unsupported_image"


def test_django_app_answers_like_the_server(digits_model, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    monkeypatch.setenv("DEEPCAT_MODEL", digits_model)
    import django

    django.setup()
    from django.test import Client

    client = Client()
    with SEVEN.open("rb") as f:
        answer = client.post("/v1/predict?top_k=3", {"file": f}).json()
    assert answer == served_answer(digits_model) and answer["label"] == "7"
    refused = client.post("/v1/predict", data=b"", content_type="image/png")
    assert refused.status_code == 400 and refused.json()["error"] == "empty_body"


def test_neither_example_imports_torch(digits_model):
    code = f"""
import sys, os
sys.path.insert(0, {str(ROOT)!r})
os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_app.settings"
os.environ["DEEPCAT_MODEL"] = {digits_model!r}
import django; django.setup()
from django.test import Client
from examples.flask_app import create_app
image = open({str(SEVEN)!r}, "rb").read()
flask = create_app({digits_model!r}).test_client().post("/v1/predict", data=image, content_type="image/png")
dj = Client().post("/v1/predict", data=image, content_type="image/png")
print(flask.get_json()["label"], dj.json()["label"], "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["7", "7", "False"]
