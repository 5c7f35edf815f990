"""Batch prediction into a file: rows written part by part (CSV or Parquet), a rerun after an interruption
skips what is written and ends with the uninterrupted file's rows, shards are read like files, and two
torchrun processes split the work into one file with one process's rows."""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import deepcat
from deepcat.inference import prediction_file


@pytest.fixture
def photos(tmp_path, chelsea_jpg, coffee_jpg) -> Path:
    """Two classes of real photos (copies: 5 cats, 4 coffee cups), as a folder of class folders."""
    root = tmp_path / "photos"
    for name, source, count in (("cat", chelsea_jpg, 5), ("cup", coffee_jpg, 4)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            shutil.copy(source, root / name / f"{name}{i}.jpg")
    return root


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_an_interrupted_prediction_file_resumes_to_the_uninterrupted_rows(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(prediction_file, "CHUNK", 2)  # 9 inputs: 5 parts
    model = deepcat.load()
    whole = deepcat.predict(model, [str(photos)], output=tmp_path / "whole.parquet")
    assert (whole.predicted, whole.skipped, whole.errors) == (9, 0, 0)
    expected = _rows(whole.path)
    assert [r["label"] for r in expected] == ["cat"] * 5 + ["neither"] * 4
    assert set(expected[0]) == {"source", "label", "probability", "score", "threshold", "set", "error"} | {
        f"{k}{i}" for k in ("top", "p") for i in (1, 2, 3)
    }

    calls, predict = [], model.predict

    def interrupted(batch, **options):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the third part
        return predict(batch, **options)

    monkeypatch.setattr(model, "predict", interrupted)
    cut = tmp_path / "cut.parquet"
    with pytest.raises(KeyboardInterrupt):
        deepcat.predict(model, [str(photos)], output=cut)
    assert not cut.exists() and len(list(Path(f"{cut}.parts").glob("*.parquet"))) == 2
    monkeypatch.setattr(model, "predict", predict)
    resumed = deepcat.predict(model, [str(photos)], output=cut)
    assert (resumed.predicted, resumed.skipped) == (5, 4)
    assert _rows(cut) == expected and not Path(f"{cut}.parts").exists()
    again = deepcat.predict(model, [str(photos)], output=cut)  # a finished file: nothing left to do
    assert (again.predicted, again.skipped) == (0, 9) and _rows(cut) == expected


def test_shards_are_predicted_like_their_files(photos, tmp_path):
    shards = deepcat.shard(str(photos), out=str(tmp_path / "shards"), per_shard=3, val_fraction=0.3, progress=False)
    from_shards = _rows(deepcat.predict(None, [shards], output=tmp_path / "shards.csv").path)
    from_files = _rows(deepcat.predict(None, [str(photos)], output=tmp_path / "files.csv").path)
    assert len(from_shards) == 9 and all(".tar#" in r["source"] for r in from_shards)
    by_label = sorted((r["label"], r["p1"][:6]) for r in from_shards)
    assert by_label == sorted((r["label"], r["p1"][:6]) for r in from_files)


@pytest.mark.slow
def test_two_torchrun_processes_write_one_file_with_one_process_rows(photos, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cli = ["-m", "deepcat", "predict", str(photos), "--json"]
    subprocess.run([sys.executable, *cli, "--output", str(tmp_path / "one.csv")], check=True, env=env)
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *cli]
    done = subprocess.run([*two, "--output", str(tmp_path / "two.csv")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    one, both = _rows(tmp_path / "one.csv"), _rows(tmp_path / "two.csv")
    assert [r["source"] for r in both] == [r["source"] for r in one]  # each process a contiguous share, joined
    assert [r["label"] for r in both] == [r["label"] for r in one]
    assert max(abs(float(a["p1"]) - float(b["p1"])) for a, b in zip(one, both)) < 1e-5
