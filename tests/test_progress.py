"""Progress bars suit where stderr goes: a log (a file, a pipe) gets a few whole lines, never a carriage-return frame
per update; a terminal keeps tqdm's live bar."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepcat import progress
from deepcat.progress import LineProgress, progress_bar

SRC = Path(__file__).parent.parent / "src"


@pytest.mark.slow
def test_cli_training_into_a_log_writes_lines_not_frames(tmp_path):
    log = tmp_path / "train.log"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with log.open("w") as stderr:  # `deepcat train ... 2> train.log`
        subprocess.run(
            [sys.executable, "-m", "deepcat", "train", "digits", "--classes", "0,1", "--epochs", "2"]
            + ["--output", str(tmp_path / "runs"), "--name", "log"],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            env=env,
            check=True,
        )
    text = log.read_text()
    assert "\r" not in text
    for epoch in (1, 2):  # a short epoch is one line: how far it got, its loss and accuracy
        lines = [line for line in text.splitlines() if line.startswith(f"epoch {epoch}/2")]
        assert len(lines) == 1 and "loss=" in lines[0] and "acc=" in lines[0], text
    assert not [line for line in text.splitlines() if line.startswith(("val:", "calibrate:", "features:"))], text
    assert len(text.splitlines()) < 30, text


def test_a_terminal_gets_a_live_bar(monkeypatch, capsys):
    monkeypatch.setattr(progress, "is_terminal", lambda stream=None: True)
    for _ in progress_bar(range(3), desc="epoch 1/1"):
        pass
    assert "\r" in capsys.readouterr().err
    monkeypatch.setattr(progress, "is_terminal", lambda stream=None: False)
    for _ in progress_bar(range(3), desc="epoch 1/1"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1 and err.startswith("epoch 1/1: 100%")
    assert progress.is_terminal(io.StringIO()) is False


def test_a_long_bar_in_a_log_writes_a_line_every_interval():
    out = io.StringIO()
    bar = LineProgress(total=4, desc="predict", unit="input", stream=out, every=0.0)
    bar.update(2)
    bar.set_postfix(loss="0.5")
    bar.update(2)
    bar.close()
    bar.close()  # once
    lines = out.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == ["predict:  50% (2/4)", "predict: 100% (4/4)"]  # close adds none
    assert "loss=0.5" in lines[-1]


def test_a_short_pass_a_terminal_would_clear_leaves_no_line_in_a_log():
    out = io.StringIO()
    short = LineProgress(total=2, desc="val", stream=out, leave=False)
    short.update(2)
    short.close()
    assert out.getvalue() == ""
    long = LineProgress(total=2, desc="val", stream=out, leave=False, every=0.0)
    long.update(1)
    long.update(1)
    long.close()
    assert [line.split(" [")[0] for line in out.getvalue().splitlines()] == ["val:  50% (1/2)", "val: 100% (2/2)"]


def test_a_disabled_bar_writes_nothing(capsys, monkeypatch):
    monkeypatch.setattr(progress, "is_terminal", lambda stream=None: False)
    bar = progress_bar(total=3, desc="quiet", enabled=False)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""
