"""Experiment tracking, offline: TensorBoard event files and an MLflow file store hold what the run folder holds."""

import csv

import pytest

import deepcat

FAST = dict(epochs=2, batch_size=64, audit=False, progress=False)


def metrics_csv(run):
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_tensorboard_event_files_hold_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = deepcat.train("digits", output=str(tmp_path), name="tb", log="tensorboard", **FAST)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    val_acc = [(e.step, e.value) for e in events.Scalars("val_acc")]
    assert val_acc == [(i + 1, pytest.approx(float(row["val_acc"]))) for i, row in enumerate(metrics_csv(run))]
    assert {"train_loss", "lr", "val_loss"} <= set(events.Tags()["scalars"])


def test_mlflow_logs_parameters_metrics_and_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the default local store: ./mlflow.db, artefacts in ./mlruns
    run = deepcat.train("digits", output=str(tmp_path), name="ml", log="mlflow", **FAST)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    [logged] = client.search_runs([client.get_experiment_by_name("deepcat").experiment_id])
    assert logged.info.run_name == "ml" and logged.data.params["model"] == "smallcnn"
    history = client.get_metric_history(logged.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [
        (i + 1, pytest.approx(float(row["val_acc"]))) for i, row in enumerate(metrics_csv(run))
    ]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"report.html", "best.safetensors", "model.json", "metrics.csv"} <= artifacts
    assert "state.pt" not in artifacts
