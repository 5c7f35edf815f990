"""Label-error finder on real digits with 5% of labels flipped at random: most flips are among the top suspects."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

import deepcat
from deepcat.cli import main


def write_flipped(root: Path, count: int = 600, fraction: float = 0.05) -> set[str]:
    """`count` real digits as PNGs in class folders, `fraction` of them in a wrong folder; their file names."""
    from deepcat.data.resolve import resolve_data

    digits = resolve_data("digits", val_fraction=0.0).train
    rng = np.random.default_rng(0)
    index = rng.choice(len(digits), count, replace=False)
    flipped = set(rng.choice(count, int(round(fraction * count)), replace=False).tolist())
    for k, i in enumerate(index):
        label = int(digits.labels[i]) + (int(rng.integers(1, 10)) if k in flipped else 0)
        folder = root / str(label % 10)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.items[i]).save(folder / f"{k}.png")
    return {f"{k}.png" for k in flipped}


def test_flipped_digit_labels_are_found(tmp_path, capsys):
    flipped = write_flipped(tmp_path / "data")
    run = deepcat.train(data=str(tmp_path / "data"), output=str(tmp_path), name="r", epochs=8, progress=False)
    found = json.loads((run / "label_issues.json").read_text())  # written by training (small data)
    top = {Path(s["item"]).name for s in found["suspects"][: len(flipped)]}
    assert len(flipped) == 30
    assert len(top & flipped) >= 0.6 * len(flipped), sorted(top & flipped)  # precision = recall at k = 30
    assert (run / "label_issues.png").is_file()

    assert (
        main(
            [
                "check",
                str(tmp_path / "data"),
                "--labels",
                str(run),
                "--quiet",
                "--top",
                "5",
                "--out",
                str(tmp_path / "check"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "suspected label errors" in out and "report.html" in out
