"""Label-error finder on real digits with 5% of labels flipped at random: most flips are among the top suspects."""

import json
import sys
from pathlib import Path

import numpy as np

import deepcat
from deepcat.cli import main

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from label_errors import measure, write_flipped  # noqa: E402


def test_flipped_digit_labels_are_found(tmp_path, capsys):
    from deepcat.data.sources import resolve_data

    splits = resolve_data("digits", val_fraction=0.0)
    index = np.random.default_rng(0).choice(len(splits.train), 600, replace=False)
    flipped = write_flipped(tmp_path / "data", splits.train.items[index], splits.train.labels[index],
                            splits.classes, fraction=0.05, seed=0)
    run = deepcat.train(data=str(tmp_path / "data"), output=str(tmp_path), name="r", epochs=8, progress=False)
    found = json.loads((run / "label_issues.json").read_text())  # written by training (small data)
    scores = measure(found, flipped)
    assert scores["flipped"] == 30
    assert scores["recall_at_k"] >= 0.6 and scores["precision_at_k"] >= 0.6, scores
    assert (run / "label_issues.png").is_file()

    assert main(["check", str(tmp_path / "data"), "--labels", str(run), "--quiet", "--top", "5",
                 "--out", str(tmp_path / "check")]) == 0
    out = capsys.readouterr().out
    assert "suspected label errors" in out and "report.html" in out
