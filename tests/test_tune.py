"""deepcat tune on real digits, 1 epoch a trial: files, failures, continuation, a bad space, best.yaml, and two
processes sharing one study on a real PostgreSQL server."""

import csv
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

import deepcat
from deepcat.cli import main

FAST = dict(epochs=1, batch_size=64, audit=False, progress=False)


def trial_rows(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "trials.csv").open()))


def test_search_runs_to_its_trial_count_writes_every_file_and_continues(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = deepcat.tune("digits", trials=3, **FAST)
    folder = tmp_path / "tunes" / "digits"
    assert result.trials == 3 and result.folder == Path("tunes/digits")
    assert [int(r["number"]) for r in trial_rows(folder)] == [0, 1, 2]
    assert {"value", "state", "params_lr", "seconds"} <= set(trial_rows(folder)[0])
    assert (folder / "study.db").is_file() and (folder / "report.html").read_text().count("data:image/png") >= 2
    assert result.best_value == max(float(r["value"]) for r in trial_rows(folder) if r["state"] == "COMPLETE")
    best = tmp_path / result.best_run
    assert (best / "report.html").is_file() and (best / "calibration.json").is_file()  # the winner is judged
    assert deepcat.evaluate(best, progress=False).accuracy > 0.2  # 10 classes; one epoch

    again = deepcat.tune("digits", trials=5, **FAST)  # the same call continues the study
    assert again.trials == 5 and [int(r["number"]) for r in trial_rows(folder)] == [0, 1, 2, 3, 4]


def test_best_yaml_retrains_to_the_same_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = deepcat.tune("digits", trials=2, study="s", output="searches", **FAST)
    assert result.folder == Path("searches/s") and result.best_run.parent == Path("searches/s/trials")
    assert main(["train", "--config", str(result.best_config), "--name", "again"]) == 0
    strip = ("output", "name")
    best = {
        k: v
        for k, v in yaml.safe_load((tmp_path / result.best_run / "config.yaml").read_text()).items()
        if k not in strip
    }
    again = {
        k: v
        for k, v in yaml.safe_load((tmp_path / "runs" / "again" / "config.yaml").read_text()).items()
        if k not in strip
    }
    assert again == best


def test_a_diverging_learning_rate_fails_its_trials_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text("lr: {low: 50, high: 500, log: true}\n")
    result = deepcat.tune("digits", trials=3, space=tmp_path / "space.yaml", optimizer="sgd", **FAST)
    assert result.trials == 3 and result.complete + result.pruned + result.failed == 3
    assert result.failed + result.pruned >= 2
    errors = [r["error"] for r in trial_rows(tmp_path / "tunes" / "digits") if r["state"] == "FAIL"]
    assert all("training loss diverged" in e for e in errors), errors


@pytest.mark.parametrize(
    "content, message",
    [
        ("lr: {low: 0.1, high: 0.01}\n", "lr in {path} needs low < high"),
        ("lrr: [0.1]\n", "unknown config key 'lrr' in {path}. Did you mean: lr"),
        ("epochs: {low: two, high: 5}\n", "epochs in {path} (epochs) must be a whole number"),
        ("data: [digits]\n", "data in {path} cannot be searched"),
    ],
)
def test_a_bad_space_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "space.yaml"
    path.write_text(content)
    assert main(["tune", "digits", "--trials", "1", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert message.format(path=path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# PostgreSQL: Debian's server, started as the postgres user in a folder of its own.


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres():
    pg = _pg_bin()
    if pg is None:
        pytest.skip("needs Debian's postgresql package (.ci/run installs it)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="deepcat-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(data, user.pw_uid, user.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*as_postgres, str(pg / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            str(pg / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-w",
            "-l",
            str(data / "log"),
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(
            [*as_postgres, str(pg / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_one_study_on_postgresql_and_keep_the_cap(postgres, tmp_path):
    command = [
        sys.executable,
        "-m",
        "deepcat",
        "tune",
        "digits",
        "--trials",
        "3",
        "--storage",
        postgres,
        "--study",
        "shared",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--no-audit",
    ]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)
    ]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()[-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=postgres.replace("postgresql://", "postgresql+psycopg://"))
    counted = [t for t in study.trials if not t.user_attrs.get("over_cap")]
    assert sorted(t.number for t in counted) == [0, 1, 2]  # distinct, and the cap held
    workers_seen = {t.user_attrs.get("worker") for t in counted if t.user_attrs.get("worker")}
    assert len(workers_seen) == 2  # both processes made trials
    assert len(trial_rows(tmp_path / "tunes" / "shared")) == 3


@pytest.mark.slow
def test_workers_run_trials_in_several_processes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = deepcat.tune("digits", trials=4, workers=2, **FAST)
    rows = trial_rows(tmp_path / "tunes" / "digits")
    assert result.trials == 4 and sorted(int(r["number"]) for r in rows) == [0, 1, 2, 3]
    assert len({r["user_attrs_worker"] for r in rows}) == 2  # the helper made trials too


@pytest.mark.slow
def test_torchrun_processes_are_search_workers_on_one_study(tmp_path):
    """`torchrun ... -m deepcat tune`: each process is a worker on the one study (as on two machines with a
    c10d rendezvous), each trial trains alone, the workers draw different first trials, and one process writes
    the results and judges the winner."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
    command = [*torchrun, "-m", "deepcat", "tune", "digits", "--trials", "4", "--epochs", "1", "--batch-size", "64"]
    done = subprocess.run(
        [*command, "--no-audit"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = trial_rows(tmp_path / "tunes" / "digits")
    assert sorted(int(r["number"]) for r in rows) == [0, 1, 2, 3] and len({r["user_attrs_worker"] for r in rows}) == 2
    first = {r["user_attrs_worker"]: r for r in sorted(rows, key=lambda r: int(r["number"]))}
    assert len({r["params_lr"] for r in first.values()}) == 2  # not the same draw twice
    assert done.stdout.count("trials (") == 2  # each worker says what the study holds...
    best = [r for r in rows if r["state"] == "COMPLETE"]
    assert best and (tmp_path / "tunes" / "digits" / "report.html").is_file()  # ...one wrote the results
    judged = list((tmp_path / "tunes" / "digits" / "trials").glob("*/report.html"))
    assert len(judged) == 1  # and judged the winner alone


@pytest.mark.slow
def test_a_worker_killed_mid_trial_fails_that_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    import signal
    import time

    import optuna

    from deepcat.tuning import search

    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepcat",
            "tune",
            "digits",
            "--trials",
            "3",
            "--epochs",
            "50",
            "--batch-size",
            "64",
            "--no-audit",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = tmp_path / "tunes" / "digits" / "trials" / "trial-0000"
    deadline = time.monotonic() + 120
    while not started.exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.exists(), "the worker never started its first trial"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(search, "HEARTBEAT_S", 1)  # a 3 s grace instead of 30, so the test need not wait
    time.sleep(4)
    result = deepcat.tune("digits", trials=3, **FAST)
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path / 'tunes/digits/study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert result.failed == 1 and result.complete == 2
    assert "stopped sending heartbeats" in trial_rows(tmp_path / "tunes" / "digits")[0]["error"]
