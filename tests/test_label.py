"""`deepcat label` over HTTP and on disk: labels.csv is always whole and is what `deepcat train` reads; paths stay
inside DATA; a deleted file, a corrupt one, two writers at once and a write killed halfway are handled; the
Suggester seam carries a model's pre-labels to the page."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import digit_pngs
from fastapi.testclient import TestClient
from PIL import Image

from deepcat.data.resolve import resolve_data
from deepcat.errors import DeepcatError
from deepcat.serving.label_app import create_label_app
from deepcat.serving.label_start import run_label_server
from deepcat.teach.labels import NONE_OF_THESE, LabelStore
from deepcat.teach.session import open_session
from deepcat.teach.suggest import FolderOrder, Suggestions

LOCAL = "http://127.0.0.1"  # without a key the server answers only requests addressed to this machine


def in_order(paths, kind, root):
    """No model: the labelling mechanics alone, inputs in folder order."""
    return FolderOrder(paths, kind)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A partly sorted folder: 8 digits at the top, 2 already in seven/, one corrupt file, one outside."""
    root = tmp_path / "photos"
    (root / "seven").mkdir(parents=True)
    pngs = digit_pngs(10)
    for i in range(8):
        (root / f"img{i}.png").write_bytes(pngs[i])
    for i in (8, 9):
        (root / "seven" / f"s{i}.png").write_bytes(pngs[i])
    (root / "broken.png").write_bytes(pngs[0][:40])  # a truncated PNG
    (tmp_path / "secret.png").write_bytes(pngs[0])
    return root


def client(root: Path, **options) -> TestClient:
    session = open_session(root, classes=["zero", "one"], suggester=in_order)
    return TestClient(create_label_app(session, **options), base_url=LOCAL)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_labels_are_saved_at_once_as_the_csv_train_reads(photos):
    with client(photos) as c:
        state = c.get("/v1/state").json()
        assert state["classes"] == ["zero", "one", "seven"] and state["total"] == 11 and state["labelled"] == 2
        shown = [i["path"] for i in c.get("/v1/next", params={"count": 6}).json()["items"]]
        assert shown == ["img0.png", "img1.png", "img2.png", "img3.png", "img4.png", "img5.png"]
        for path, label in zip(shown, ["zero", "one", "zero", "one", NONE_OF_THESE]):
            assert c.post("/v1/label", json={"path": path, "label": label}).status_code == 200
            assert {r["path"]: r["label"] for r in rows(photos / "labels.csv")}[path] == label  # saved at once
        assert c.get("/v1/next", params={"count": 1}).json()["items"][0]["path"] == "img5.png"
    saved = {r["path"]: r["label"] for r in rows(photos / "labels.csv")}
    assert saved == {
        "img0.png": "zero",
        "img1.png": "one",
        "img2.png": "zero",
        "img3.png": "one",
        "img4.png": NONE_OF_THESE,
        "seven/s8.png": "seven",  # the class folder's labels are written too: the CSV trains on everything
        "seven/s9.png": "seven",
    }
    splits = resolve_data(str(photos / "labels.csv"), val_fraction=0)
    assert splits.classes == ["one", "seven", "zero"]  # "none of these" is no class
    assert sorted(Path(p).name for p in splits.train.items) == ["img0.png", "img1.png", "img2.png", "img3.png"] + [
        "s8.png",
        "s9.png",
    ]
    assert all(Path(p).is_file() for p in splits.train.items)


def test_undo_puts_back_the_label_before(photos):
    with client(photos) as c:
        c.post("/v1/label", json={"path": "img0.png", "label": "zero"})
        c.post("/v1/label", json={"path": "seven/s8.png", "label": "one"})
        c.post("/v1/label", json={"path": "img1.png", "label": "one"})
        undone = c.post("/v1/undo", json={"path": "seven/s8.png"}).json()
        assert undone == {"path": "seven/s8.png", "label": "seven", "previous": "one"}
        assert c.post("/v1/undo", json={}).json()["path"] == "img1.png"  # no path: the last label
        assert c.post("/v1/undo", json={"path": "img1.png"}).status_code == 409  # nothing left to undo for it
    saved = {r["path"]: r["label"] for r in rows(photos / "labels.csv")}
    assert saved == {"img0.png": "zero", "seven/s8.png": "seven", "seven/s9.png": "seven"}


def test_a_path_outside_data_is_not_found(photos, tmp_path):
    (photos / "link.png").symlink_to(tmp_path / "secret.png")  # a link inside DATA that leads out
    with client(photos) as c:
        assert c.get("/v1/input", params={"path": "img0.png"}).content == (photos / "img0.png").read_bytes()
        for path in ("../secret.png", str(tmp_path / "secret.png"), "link.png", "seven/../../secret.png", "", "."):
            assert c.get("/v1/input", params={"path": path}).status_code == 404, path
            assert c.post("/v1/label", json={"path": path, "label": "zero"}).status_code == 404, path
        assert c.get("/v1/input/../../secret.png").status_code == 404
        (photos / "notes.txt").write_text("not an input")
        assert c.get("/v1/input", params={"path": "notes.txt"}).status_code == 404  # inside, but no input
        assert c.post("/v1/label", json={"path": "img0.png"}).json()["error"] == "invalid_parameter"
    assert not (photos / "labels.csv").exists()
    elsewhere = TestClient(
        create_label_app(open_session(photos, suggester=in_order)), base_url="http://attacker.example"
    )
    with elsewhere as c:
        assert c.get("/v1/state").status_code == 400  # DNS rebinding: a page elsewhere cannot read DATA


def test_a_label_for_a_deleted_file_is_reported_not_written(photos):
    with client(photos) as c:
        c.post("/v1/label", json={"path": "img0.png", "label": "zero"})
        before = (photos / "labels.csv").read_bytes()
        (photos / "img1.png").unlink()
        answer = c.post("/v1/label", json={"path": "img1.png", "label": "one"})
        assert answer.status_code == 410 and "img1.png is no longer there" in answer.json()["detail"]
        assert c.post("/v1/label", json={"path": "img2.png", "label": "nine"}).status_code == 422  # no such class
    assert (photos / "labels.csv").read_bytes() == before


def test_corrupt_files_are_listed_with_their_reason_and_never_shown(photos):
    with client(photos) as c:
        for path in ["img0.png", "img1.png", "img2.png", "img3.png", "img4.png", "img5.png", "img6.png"]:
            c.post("/v1/label", json={"path": path, "label": "zero"})
        shown = [i["path"] for i in c.get("/v1/next", params={"count": 5}).json()["items"]]
        assert shown == ["img7.png"]  # broken.png, next in order, was read and left out
        deadline = time.time() + 20
        while not (progress := c.get("/v1/progress").json())["finished"]:
            assert time.time() < deadline
            time.sleep(0.05)
        assert progress == {"stage": "checking files", "done": 11, "total": 11, "failed": 1, "finished": True}
        [bad] = c.get("/v1/corrupt").json()["corrupt"]
    assert bad["path"] == "broken.png" and "not an image file" in bad["reason"] and str(photos) not in bad["reason"]


def test_two_writers_at_once_never_lose_a_label(photos):
    """Two stores over one CSV (two servers, or two processes): only the file lock keeps them apart."""
    for i in range(40):
        (photos / f"many{i:02d}.png").write_bytes((photos / "img0.png").read_bytes())
    stores = [LabelStore(photos / "labels.csv", photos), LabelStore(photos / "labels.csv", photos)]

    def write(store: LabelStore, start: int) -> None:
        for i in range(start, 40, 2):
            store.set(f"many{i:02d}.png", "one" if start else "zero")

    threads = [threading.Thread(target=write, args=(store, n)) for n, store in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    saved = {r["path"]: r["label"] for r in rows(photos / "labels.csv")}
    assert saved == {f"many{i:02d}.png": "one" if i % 2 else "zero" for i in range(40)}
    assert stores[0].labels() == stores[1].labels() == saved  # each sees the other's


KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from deepcat.teach.labels import LabelStore
root = Path(sys.argv[1])
store = LabelStore(root / "labels.csv", root)
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed after the new file is written, before the swap
store.set("img1.png", "one")
"""


def test_a_write_killed_halfway_leaves_the_old_file_whole(photos):
    store = LabelStore(photos / "labels.csv", photos)
    store.set("img0.png", "zero")
    before = (photos / "labels.csv").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(photos)], env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr
    assert (photos / "labels.csv").read_bytes() == before
    assert [p.name for p in photos.glob(".labels.csv.*.tmp")]  # the new file, never swapped in
    fresh = LabelStore(photos / "labels.csv", photos)
    assert not list(photos.glob(".labels.csv.*.tmp"))  # cleared by the next store
    fresh.set("img1.png", "one")  # and the next label goes on from the old file
    assert {r["path"]: r["label"] for r in rows(photos / "labels.csv")} == {"img0.png": "zero", "img1.png": "one"}


def test_a_captured_frame_is_saved_in_its_class_folder_and_labelled(photos):
    with client(photos) as c:
        frame = (photos / "img3.png").read_bytes()
        saved = c.post("/v1/capture", params={"label": "three"}, content=frame, headers={"content-type": "image/png"})
        assert saved.status_code == 200
        path = saved.json()["path"]
        assert path.startswith("three/capture-") and (photos / path).read_bytes() == frame
        assert c.get("/v1/state").json()["classes"][-1] == "three"
        png, text = {"content-type": "image/png"}, {"content-type": "text/plain"}
        refused = [
            c.post("/v1/capture", params={"label": "three"}, content=b"no image", headers=png),
            c.post("/v1/capture", params={"label": "../up"}, content=frame, headers=png),
            c.post("/v1/capture", params={"label": "three"}, content=frame, headers=text),
        ]
        (photos / "out").symlink_to(photos.parent, target_is_directory=True)  # a class folder leading out
        refused.append(c.post("/v1/capture", params={"label": "out"}, content=frame, headers=png))
        assert [r.status_code for r in refused] == [422, 422, 415, 422]
        assert c.get("/v1/input", params={"path": path}).content == frame
    assert {r["path"]: r["label"] for r in rows(photos / "labels.csv")}[path] == "three"
    assert sorted(p.name for p in (photos / "three").iterdir()) == [Path(path).name]  # the refused left nothing
    assert not (photos.parent / "up").exists() and not list(photos.parent.glob("capture-*"))


def test_classes_added_on_the_page_are_checked(photos):
    with client(photos) as c:
        assert c.post("/v1/classes", json={"name": " two "}).json()["classes"] == ["zero", "one", "seven", "two"]
        assert c.post("/v1/classes", json={"name": "two"}).json()["classes"][-1] == "two"  # not twice
        for bad in ("", "../x", "a/b", ".hidden", NONE_OF_THESE):
            assert c.post("/v1/classes", json={"name": bad}).status_code == 422, bad


def test_an_api_key_guards_every_route_but_the_page(photos):
    with client(photos, api_key="s3cret") as c:
        assert c.get("/").status_code == 200
        assert c.get("/v1/state").status_code == 401
        assert c.get("/v1/input", params={"path": "img0.png"}).status_code == 401
        assert c.get("/v1/state", headers={"x-api-key": "s3cret"}).status_code == 200


def test_a_host_others_can_reach_needs_an_api_key(photos, monkeypatch):
    monkeypatch.delenv("DEEPCAT_API_KEY", raising=False)
    with pytest.raises(DeepcatError, match="--api-key"):
        run_label_server(photos, host="0.0.0.0", port=0, api_key=None, classes=[], modality="auto")


class Brightness(FolderOrder):
    """A toy model behind the seam: the brightest unlabelled inputs first, pre-labelled 'one' when bright."""

    def suggest(self, paths, labels, classes, count):
        readable = [i for i, p in enumerate(paths) if labels[i] is None and self.checked.ensure(p)]
        light = {i: float(np.asarray(Image.open(paths[i])).mean()) / 255 for i in readable}
        order = sorted(light, key=light.__getitem__, reverse=True)[:count]
        return Suggestions(order, ["one" if light[i] > 0.2 else "zero" for i in order], [light[i] for i in order])


def test_a_suggester_with_a_model_gives_the_page_its_order_and_pre_labels(photos):
    session = open_session(photos, classes=["zero", "one"], suggester=lambda paths, kind, root: Brightness(paths, kind))
    with TestClient(create_label_app(session), base_url=LOCAL) as c:
        items = c.get("/v1/next", params={"count": 3}).json()["items"]
    light = {p.name: np.asarray(Image.open(p)).mean() / 255 for p in photos.glob("img*.png")}
    assert [i["path"] for i in items] == sorted(light, key=light.__getitem__, reverse=True)[:3]
    assert all(i["prelabel"] in ("zero", "one") and 0 < i["probability"] <= 1 for i in items)


@pytest.mark.slow
def test_a_folder_of_100000_files_opens_in_seconds(tmp_path):
    root = tmp_path / "huge"
    root.mkdir()
    png = digit_pngs(1)[0]
    for i in range(100_000):
        if i % 50_000 == 0:  # a file system allows some 65,000 links to one file
            first = root / f"{i:06d}.png"
            first.write_bytes(png)
        else:
            os.link(first, root / f"{i:06d}.png")
    started = time.perf_counter()
    session = open_session(root)
    with TestClient(create_label_app(session), base_url=LOCAL) as c:
        items = c.get("/v1/next", params={"count": 10}).json()["items"]
        progress = c.get("/v1/progress").json()
    opened = time.perf_counter() - started
    assert len(items) == 10 and progress["total"] == 100_000 and not progress["finished"]
    # a bound that only catches reading every file at open (minutes); how fast it opens is a benchmark's to say,
    # not a timed test's (1.3 s on a quiet machine; 5.5 s with a second test suite on the same 2 cores)
    assert opened < 30, f"{opened:.1f} s to open 100,000 files"
