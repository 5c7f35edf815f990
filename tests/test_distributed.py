"""DDP under torchrun: 2 CPU processes (gloo) end with the weights of 1 process with the same global batch."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

LAYERS = "layers:\n  - conv: {channels: 8, batchnorm: false}\n  - pool: max\n  - linear: 32\n"


@pytest.mark.slow
def test_two_processes_match_one(digits_folder, tmp_path):
    model = tmp_path / "net.yaml"
    model.write_text(LAYERS)  # no batch norm: its statistics are per process by design
    args = [
        str(digits_folder),
        "--model",
        str(model),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--augment",
        "none",
        "--amp",
        "off",
        "--workers",
        "0",
        "--output",
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "deepcat", "train", *args, "--name", "one"], check=True, env=env, capture_output=True
    )
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29531",
            "-m",
            "deepcat",
            "train",
            *args,
            "--name",
            "two",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = load_file(tmp_path / "one" / "last.safetensors"), load_file(tmp_path / "two" / "last.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=1e-4)
    assert "resuming" not in ddp.stderr and len((tmp_path / "two" / "metrics.csv").read_text().splitlines()) == 3
