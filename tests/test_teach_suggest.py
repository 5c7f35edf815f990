"""The labelling page with a model (`teach.model_suggest`), on real digits: features computed in the background,
a quick head refit after the labels, pre-labels a user can accept, and the page's inputs chosen by the model."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.datasets import load_digits

from deepcat.serving.label_app import create_label_app
from deepcat.teach.session import open_session

LOCAL = "http://127.0.0.1"


@pytest.fixture
def zeros_and_ones(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """60 unlabelled digits, 0s and 1s, enlarged to 64 px (a photo-sized backbone sees them better), and the truth."""
    digits = load_digits()
    root, truth = tmp_path / "digits", {}
    root.mkdir()
    picked = [i for i, y in enumerate(digits.target) if y in (0, 1)][:60]
    for n, i in enumerate(picked):
        image = Image.fromarray(np.clip(digits.images[i] * 16, 0, 255).astype(np.uint8)).resize((64, 64))
        image.save(root / f"{n:03d}.png")
        truth[f"{n:03d}.png"] = ["zero", "one"][digits.target[i]]
    return root, truth


def wait(until, what: str, timeout: float = 180.0):
    deadline = time.time() + timeout
    while not (value := until()):
        assert time.time() < deadline, what
        time.sleep(0.2)
    return value


def test_the_model_pre_labels_what_it_asks_next_after_a_few_labels(zeros_and_ones):
    root, truth = zeros_and_ones
    session = open_session(root, classes=["zero", "one"])
    with TestClient(create_label_app(session), base_url=LOCAL) as c:
        wait(lambda: c.get("/v1/progress").json()["finished"], "features for 60 digits")
        first = c.get("/v1/next", params={"count": 6}).json()["items"]
        assert all(item["prelabel"] is None for item in first)  # no label yet, and no ImageNet class for digits
        labelled = [p for p, label in truth.items() if label == "zero"][:3]
        labelled += [p for p, label in truth.items() if label == "one"][:3]
        for name in labelled:
            assert c.post("/v1/label", json={"path": name, "label": truth[name]}).status_code == 200

        def pre_labelled():
            items = c.get("/v1/next", params={"count": 20}).json()["items"]
            return items if items and all(item["prelabel"] for item in items) else None

        items = wait(pre_labelled, "pre-labels once the head is fitted")
    assert len(items) == 20 and not {item["path"] for item in items} & set(labelled)
    right = sum(item["prelabel"] == truth[item["path"]] for item in items)
    assert right >= 17, f"{right} of 20 pre-labels right after 3 labels a class"
    assert all(0.5 <= item["probability"] <= 1 for item in items)
    assert (root / ".deepcat" / "features").is_dir()  # embedded once, kept for the next session


def test_pre_labels_are_accepted_in_bulk_at_the_error_rate_asked(zeros_and_ones):
    """Too few labels: refused, saying how many are needed. With 12 labels a class, the pre-labels the model is
    sure of are accepted at 10% error in one write, and at most 10% of them (plus one) are wrong."""
    root, truth = zeros_and_ones
    session = open_session(root, classes=["zero", "one"])
    with TestClient(create_label_app(session), base_url=LOCAL) as c:
        wait(lambda: c.get("/v1/progress").json()["finished"], "features for 60 digits")
        labelled = [p for p, label in truth.items() if label == "zero"][:12]
        labelled += [p for p, label in truth.items() if label == "one"][:12]
        for name in labelled[:4] + labelled[12:16]:
            c.post("/v1/label", json={"path": name, "label": truth[name]})
        few = c.post("/v1/bulk", json={"alpha": 0.1})
        assert few.status_code == 422 and "Label 14 more" in few.json()["detail"], few.json()
        for name in labelled:
            c.post("/v1/label", json={"path": name, "label": truth[name]})
        found = c.post("/v1/bulk", json={"alpha": 0.1}).json()
    saved = session.store.labels()
    accepted = {p: label for p, label in saved.items() if p not in labelled}
    assert found["accepted"] == len(accepted) > 10, found
    wrong = sum(label != truth[p] for p, label in accepted.items())
    assert wrong <= 0.1 * len(accepted) + 1, f"{wrong} of {len(accepted)} accepted pre-labels wrong"


def test_review_lists_the_labels_the_model_doubts_and_the_near_duplicates(zeros_and_ones):
    """Two of 20 labels flipped on purpose are among the labels the model doubts, each with its true class; a
    photo saved twice (once a little brighter) is a group of near duplicates once the search has read the files."""
    root, truth = zeros_and_ones
    image = Image.open(root / "000.png")
    image.point(lambda v: min(255, v + 3)).save(root / "zz-brighter.png")
    session = open_session(root, classes=["zero", "one"])
    zeros = [p for p, label in truth.items() if label == "zero"][:10]
    ones = [p for p, label in truth.items() if label == "one"][:10]
    flipped = {zeros[0]: "one", ones[0]: "zero"}
    with TestClient(create_label_app(session), base_url=LOCAL) as c:
        wait(lambda: c.get("/v1/progress").json()["finished"], "features for 61 digits")
        assert c.get("/v1/review").json()["doubted"] == []  # nothing labelled, nothing to doubt
        for name in zeros + ones:
            c.post("/v1/label", json={"path": name, "label": flipped.get(name, truth[name])})
        found = wait(lambda: (r := c.get("/v1/review").json())["near_duplicates"] is not None and r, "the search")
    doubted = {d["path"]: d for d in found["doubted"]}
    assert set(flipped) <= set(doubted), found["doubted"]
    assert all(doubted[p]["model_says"] == truth[p] and doubted[p]["label"] == flipped[p] for p in flipped)
    assert len(doubted) <= 6, f"{len(doubted)} of 20 labels doubted, 2 of them wrong"
    assert ["000.png", "zz-brighter.png"] in found["near_duplicates"]


def test_a_run_you_trained_gives_the_page_its_features(tmp_path):
    """`deepcat label DATA --model RUN`: a small CNN trained on 30 digits a class embeds a flat folder of 20 other
    digits a class for the page's head, so two labels a class pre-label the rest; a run of another kind of input is
    refused."""
    from conftest import write_digits

    import deepcat
    from deepcat.errors import DeepcatError
    from deepcat.inputs import input_kind
    from deepcat.teach.session import make_suggester

    trained_on = write_digits(tmp_path / "sorted", classes=(0, 1, 7), per_class=30, size=16)  # the first 30 a class
    run = deepcat.train(str(trained_on), output=str(tmp_path / "runs"), name="d", epochs=5, progress=False)
    digits = load_digits()
    root, truth = tmp_path / "flat", {}
    root.mkdir()
    for digit, name in ((0, "zero"), (1, "one"), (7, "seven")):
        for n, image in enumerate(digits.images[digits.target == digit][-20:]):  # none of the run's 30
            pixels = Image.fromarray(np.clip(image * 16, 0, 255).astype(np.uint8)).resize((16, 16), Image.BILINEAR)
            pixels.save(root / f"{n:02d}-{digit * 37 % 10}.png")
            truth[f"{n:02d}-{digit * 37 % 10}.png"] = name
    session = open_session(root, classes=["zero", "one", "seven"], suggester=partial(make_suggester, model=str(run)))
    with TestClient(create_label_app(session), base_url=LOCAL) as c:
        wait(lambda: c.get("/v1/progress").json()["finished"], "features for 60 digits")
        labelled = [p for name in ("zero", "one", "seven") for p in sorted(truth) if truth[p] == name][::10]
        for path in labelled:
            c.post("/v1/label", json={"path": path, "label": truth[path]})

        def pre_labelled():
            items = c.get("/v1/next", params={"count": 20}).json()["items"]
            return items if items and all(item["prelabel"] for item in items) else None

        items = wait(pre_labelled, "pre-labels once the head is fitted")
    right = sum(item["prelabel"] == truth[item["path"]] for item in items)
    assert len(labelled) == 6 and right >= 17, f"{right} of 20 pre-labels right after 2 labels a class"
    with pytest.raises(DeepcatError, match="trained on image inputs"):
        make_suggester([], input_kind("audio"), root, model=str(run))
