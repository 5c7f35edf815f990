"""DDP under torchrun: 2 CPU processes (gloo) end with the weights of 1 process with the same global batch, on one
node or on two (two torchrun invocations with one rendezvous), even when a worker is killed mid-epoch and torchrun
restarts them."""

import os
import socket
import subprocess
import sys

import psutil
import pytest
import torch
from conftest import write_digits
from safetensors.torch import load_file

import deepcat
from deepcat.training.distributed import init_distributed

LAYERS = "layers:\n  - conv: {channels: 8, batchnorm: false}\n  - pool: max\n  - linear: 32\n"


def options(digits_folder, tmp_path, epochs: int = 2) -> list[str]:
    model = tmp_path / "net.yaml"
    model.write_text(LAYERS)  # no batch norm: its statistics are per process by design
    return [
        str(digits_folder),
        "--model",
        str(model),
        "--epochs",
        str(epochs),
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
        "--no-audit",
        "--output",
        str(tmp_path),
    ]


def assert_same_weights(a, b):
    one, two = load_file(a / "last.safetensors"), load_file(b / "last.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=1e-4)


def torchrun(*flags: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *flags, "-m", "deepcat", "train"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_two_nodes_match_one_process(digits_folder, tmp_path):
    """Two "nodes": two torchrun invocations of one process each, one c10d rendezvous on loopback, as two
    machines would run them (docs, Scale: Many processes, many machines)."""
    args = options(digits_folder, tmp_path)
    subprocess.run([sys.executable, "-m", "deepcat", "train", *args, "--name", "one"], check=True, env=ENV)
    rendezvous = ("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "test")
    node = [*torchrun("--nnodes", "2", "--nproc-per-node", "1", *rendezvous), *args, "--name", "nodes"]
    nodes = [subprocess.Popen(node, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    errors = [n.communicate(timeout=300)[1] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "".join(errors)[-3000:]
    assert_same_weights(tmp_path / "one", tmp_path / "nodes")
    assert "resuming" not in "".join(errors) and len((tmp_path / "nodes" / "metrics.csv").read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_restarted_by_torchrun_and_ends_with_the_same_weights(tmp_path):
    """torchrun `--max-restarts`: one worker killed (SIGKILL) while the run trains; torchrun stops the other,
    starts both again, and they continue the run from its last saved epoch to one process's weights. With
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, as the docs' command (Scale) has it: each restart gets a fresh store."""
    data = write_digits(tmp_path / "digits", per_class=150)
    args = [*options(data, tmp_path, epochs=8)]
    subprocess.run([sys.executable, "-m", "deepcat", "train", *args, "--name", "one"], check=True, env=ENV)
    rendezvous = ("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "kill")
    command = [*torchrun("--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "3", *rendezvous), *args]
    env = {**ENV, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    job = subprocess.Popen([*command, "--name", "two"], stderr=subprocess.PIPE, text=True, env=env)
    seen = ""
    while "epoch 2 " not in seen:  # rank 0 printed epoch 2's line: its checkpoint is saved, epoch 3 runs
        line = job.stderr.readline()
        assert line, f"the job ended before epoch 2:\n{seen[-3000:]}"
        seen += line
    workers = [p for p in psutil.Process(job.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    workers[0].kill()
    try:
        seen += job.communicate(timeout=300)[1]
    finally:
        job.kill()
    assert job.returncode == 0, seen[-3000:]
    assert seen.count("resuming") == 1 and "train_loss" in seen.split("resuming", 1)[1], seen[-3000:]
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    assert len((tmp_path / "two" / "metrics.csv").read_text().splitlines()) == 9


@pytest.mark.slow
def test_early_stopping_stops_every_torchrun_process_in_the_same_epoch(digits_folder, tmp_path):
    """Only rank 0 validates; its verdict stops every process at once (a process that stopped alone would leave
    the others waiting in DDP's next all-reduce). With lr 0 the second epoch cannot improve on the first."""
    args = [*options(digits_folder, tmp_path, epochs=6), "--lr", "0", "--patience", "1", "--name", "stop"]
    rendezvous = ("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "stop")
    command = [*torchrun("--nnodes", "1", "--nproc-per-node", "2", *rendezvous), *args]
    job = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "early stopping" in job.stderr
    assert len((tmp_path / "stop" / "metrics.csv").read_text().splitlines()) == 3  # the header and 2 epochs


def test_a_restarted_torchrun_job_continues_its_own_run(digits_folder, tmp_path, monkeypatch, capsys):
    """What a worker does when torchrun restarts it (`--max-restarts`, after a worker failed): it finds the run
    folder its job's first attempt wrote (marked with the job's id) and continues it; another job starts anew."""
    args = {**dict(output=str(tmp_path), epochs=2, batch_size=32, audit=False, progress=False)}
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = deepcat.train(str(digits_folder), **args)
    assert (first / "torchrun_run_id").read_text() == "job-1"
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    capsys.readouterr()
    assert deepcat.train(str(digits_folder), **args) == first
    assert f"resuming {first} after epoch 2" in capsys.readouterr().err
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-2")
    assert deepcat.train(str(digits_folder), **args, name="other") != first


def test_restarts_over_a_store_shared_across_them_are_refused_with_the_fix(monkeypatch):
    """torchrun's shared store outlives a restart, and a restarted worker can hang on a dead one's address: a
    worker refuses to start so and names the variable that gives each restart its own store."""
    for name, value in {
        "WORLD_SIZE": "2",
        "TORCHELASTIC_MAX_RESTARTS": "3",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --rdzv-backend c10d"):
        init_distributed()
