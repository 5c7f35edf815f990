"""Faults from outside: training killed with SIGKILL in the middle of an epoch resumes to the same weights, from
a built-in set in memory and from WebDataset shards streamed by loader workers."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import deepcat

OPTIONS = ["--epochs", "3", "--batch-size", "32", "--no-audit", "--seed", "3"]


@pytest.mark.parametrize("source", ["digits", "shards"])
def test_sigkill_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path, source):
    data = "digits" if source == "digits" else deepcat.shard("digits", out=str(tmp_path / "s"), per_shard=200)
    whole = deepcat.train(
        data, output=str(tmp_path), name="whole", epochs=3, batch_size=32, audit=False, seed=3, progress=False
    )
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepcat", "train", data, "--output", str(tmp_path), "--name", "cut", *OPTIONS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    # epoch 2's line comes once it is saved, and says how long it took
    epoch_2 = r"epoch 2\s+train_loss.*\bseconds ([\d.]+)"
    while not (saved := re.search(epoch_2, line := proc.stderr.readline().decode())):
        assert line or proc.poll() is None, "training ended before epoch 2"
        assert time.time() < deadline
    time.sleep(float(saved[1]) / 3)  # a third into epoch 3 on any machine (a fixed 0.5 s outlasted a 0.5 s epoch)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = (cut / "metrics.csv").read_text().splitlines()
    assert proc.returncode == -signal.SIGKILL and len(rows) == 3, rows  # killed before the run's end
    for name in ("best.safetensors", "last.safetensors"):  # every file it left is whole
        load_file(cut / name)
    torch.load(cut / "state.pt", weights_only=False)
    resumed = deepcat.train(resume=cut, progress=False)
    a, b = load_file(whole / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(cut.glob("*.tmp"))  # a half-written temporary from the kill is not left behind
