"""Decisions an owner sets (deepcat.run_meta.Decision): per-class thresholds and a cost matrix change the answer
alike in `predict` (PyTorch and ONNX Runtime), in the exported file's metadata, in the server and in the page's JS."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import digit_images
from fastapi.testclient import TestClient
from PIL import Image

import deepcat
from deepcat import export
from deepcat.cli import main
from deepcat.errors import DeepcatError
from deepcat.inference.exported import load_exported
from deepcat.run_meta import Decision
from deepcat.serving.app import create_app
from deepcat.serving.web_page import PAGE

CLASSES = ("cat", "dog", "fox")
CLASSES_10 = [str(d) for d in range(10)]  # digits'


def test_costs_pick_the_answer_of_least_expected_cost_and_thresholds_fall_to_the_next_class():
    row = np.array([0.3, 0.6, 0.1], dtype=np.float32)  # the likeliest: dog
    a_false_dog_costs_5 = Decision.from_dict({"costs": {"cat": {"dog": 5}}}, classes=CLASSES)
    # expected cost: cat 0.6 + 0.1 = 0.7; dog 0.3 * 5 + 0.1 = 1.6; fox 0.3 + 0.6 = 0.9
    assert a_false_dog_costs_5.choose(row) == 0
    assert Decision.from_dict({"thresholds": {"dog": 0.8}}, classes=CLASSES).choose(row) == 0  # dog < 0.8: cat
    strict = Decision.from_dict({"thresholds": {"cat": 0.5, "dog": 0.8, "fox": 0.5}}, classes=CLASSES)
    assert strict.choose(row) is None  # no class is sure enough: unknown
    zero_one = Decision.from_dict({"costs": {"cat": {"dog": 1}}}, classes=CLASSES)  # the default costs
    assert zero_one.choose(row) == 1  # = the most probable class


def test_the_documented_example_answers_as_the_docs_say():
    """docs/deploy/serve.md: 70% dog, 30% cat is answered cat (expected cost 0.7 against 1.5 for dog)."""
    docs = {"thresholds": {"dog": 0.8}, "costs": {"cat": {"dog": 5}, "neither": {"dog": 5}}}
    decision = Decision.from_dict(docs, classes=("cat", "dog", "neither"))
    row = np.array([0.3, 0.7, 0.0])
    assert (row[:, None] * decision.matrix).sum(0) == pytest.approx([0.7, 1.5, 1.0])
    assert decision.choose(row) == 0
    assert Decision.from_dict({"costs": docs["costs"]}, classes=("cat", "dog", "neither")).choose(row) == 0
    assert Decision.from_dict({"thresholds": docs["thresholds"]}, classes=("cat", "dog", "neither")).choose(row) == 0


@pytest.mark.parametrize(
    "content, says",
    [
        ({"thresholds": {"dgo": 0.8}}, "names 'dgo', which is not one of the model's classes (cat, dog, fox). Did you"),
        ({"costs": {"cat": {"dog": -1}}}, "costs.cat.dog must be a number 0 or more; received -1"),
        ({"thresholds": {"dog": 1.5}}, "thresholds.dog must be a number from 0 to 1; received 1.5"),
        (
            {"treshold": {"dog": 0.8}},
            "holds 'treshold'; a decision has thresholds and costs. Did you mean: thresholds?",
        ),
        ({"costs": [[0, 1], [1, 0]]}, "costs must be a JSON object keyed by class name"),
        ({}, "sets neither thresholds nor costs"),
        ("{not json", "is not JSON"),
    ],
)
def test_a_bad_decision_file_names_the_file_and_the_fix(tmp_path, content, says):
    path = tmp_path / "decision.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DeepcatError, match=str(path)) as e:
        Decision.read(path, classes=CLASSES)
    assert says in str(e.value)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """A digits run, its ONNX file, images, and a decision file that turns one image's answer to its runner-up."""
    root = tmp_path_factory.mktemp("decision")
    run = deepcat.train(data="digits", output=str(root), name="digits", epochs=2, progress=False)
    model = Path(export(run, format="onnx", progress=False).path)
    images = []
    for digit in (3, 5, 8, 9):
        for i, pixels in enumerate(digit_images(digit, 6)):
            images.append(root / f"{digit}-{i}.png")
            Image.fromarray(pixels).save(images[-1])
    plain = deepcat.predict(model, images, top_k=10, reject=False)
    # the least sure answer whose runner-up is likely enough that a false answer costing 50 flips it
    pick = min(range(len(plain)), key=lambda i: plain[i].top[0][1] - plain[i].top[1][1])
    answered, runner_up = plain[pick].top[0][0], plain[pick].top[1][0]
    assert plain[pick].top[1][1] > 0.03
    decision = root / "decision.json"
    decision.write_text(json.dumps({"costs": {runner_up: {answered: 50}}}))  # a false `answered` costs 50
    return run, model, images, decision, pick, answered, runner_up


def test_a_cost_matrix_flips_the_likeliest_answer_alike_in_predict_the_export_and_the_server(
    flipped, capsys, monkeypatch
):
    run, model, images, decision, pick, answered, runner_up = flipped
    torch_labels = [p.label for p in deepcat.predict(run, images, reject=False, decision=decision)]
    onnx = deepcat.predict(model, images, reject=False, decision=decision)
    assert torch_labels[pick] == onnx[pick].label == runner_up != answered
    assert main(["predict", str(model), str(images[pick]), "--json", "--no-reject", "--decision", str(decision)]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["label"] == runner_up
    assert onnx[pick].probability == pytest.approx(dict(onnx[pick].top)[runner_up])  # the answer's own

    with TestClient(create_app(model, reject=False, decision=decision)) as client:
        served = [
            client.post("/v1/predict", content=path.read_bytes(), headers={"content-type": "image/png"}).json()
            for path in images
        ]
        info = client.get("/v1/model").json()
    assert [a["label"] for a in served] == [p.label for p in onnx]
    assert info["decision"] == {"costs": {runner_up: {answered: 50.0}}, "thresholds": {}}  # what the page applies

    # kept in the run, the decision travels in the export's metadata: no flag needed where the file goes
    shutil.copy(decision, Path(run) / "decision.json")
    carried = Path(export(run, format="onnx", output=str(Path(run) / "carried.onnx"), progress=False).path)
    assert load_exported(carried).meta.decision == Decision.read(decision, classes=info["classes"])
    assert "decision" not in load_exported(model).meta.to_dict()  # a file without one reads in older deepcats
    assert [p.label for p in deepcat.predict(carried, images, reject=False)] == [p.label for p in onnx]
    assert deepcat.predict(run, images[pick : pick + 1], reject=False)[0].label == runner_up  # the run's own
    with TestClient(create_app(carried, reject=False)) as client:
        again = client.post("/v1/predict", content=images[pick].read_bytes(), headers={"content-type": "image/png"})
    assert again.json()["label"] == runner_up

    # `deepcat serve RUN` answers by a decision.json newer than the run's export (here model.onnx has none)
    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.setdefault("app", app))
    monkeypatch.setattr("deepcat.serving.memory.return_large_buffers", lambda: None)  # the test process's malloc
    deepcat.serve(run, device="cpu")
    with TestClient(started["app"]) as client:
        assert client.get("/v1/model").json()["decision"] == info["decision"]
    (Path(run) / "decision.json").unlink()


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's JavaScript")
def test_the_page_decides_as_the_server_from_the_metadata_it_reads(flipped):
    """The page's `decided` (index.html), run in node on the probabilities and the /v1/model metadata the page
    gets, answers what the server answered, thresholds and costs together."""
    _, model, images, _, pick, answered, runner_up = flipped
    plain = deepcat.predict(model, images, top_k=10, reject=False)
    bar = float(np.median([p.probability for p in plain]))  # half the answers are below it
    sure = {c: bar for c in CLASSES_10}
    sure[runner_up] = 0.999 * dict(plain[pick].top)[runner_up]  # what the costs flip to passes its threshold
    both = Path(images[0]).parent / "both.json"
    both.write_text(json.dumps({"thresholds": sure, "costs": {runner_up: {answered: 50}}}))
    with TestClient(create_app(model, reject=False, decision=both)) as client:
        served = [
            client.post("/v1/predict?top_k=10", content=p.read_bytes(), headers={"content-type": "image/png"}).json()
            for p in images
        ]
        meta = client.get("/v1/model").json()
    rows = [[{t["label"]: t["probability"] for t in answer["top"]}[c] for c in CLASSES_10] for answer in served]
    page = (PAGE / "index.html").read_text()
    start = page.index("function decided(")
    decided = page[start : page.index("\n}\n", start) + 3]
    script = (
        f"const meta = {json.dumps(meta)};\n{decided}\nconsole.log(JSON.stringify({json.dumps(rows)}.map(decided)));"
    )
    shown = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)
    assert shown == [a["label"] for a in served]
    assert shown[pick] == runner_up and "unknown" in shown  # the costs and the thresholds both decided some
