"""Experiment tracking, as training callbacks on rank 0: `--log tensorboard` writes TensorBoard event files in
RUN/tensorboard; `--log mlflow` logs the configuration, each epoch's metrics and, once the run is judged, the
run folder to MLflow (a local store: ./mlflow.db with artefacts in ./mlruns, as MLflow recommends now that its
plain-file store is frozen; or the server at `--tracking-uri`). A resumed run continues its MLflow run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepcat.config import TrainConfig

__all__ = ["MLFLOW_RUN_ID", "MLflowLog", "TensorBoardLog", "log_run_folder", "loggers_for"]

MLFLOW_RUN_ID = "mlflow_run_id"  # file in the run folder: which MLflow run this run logs to


def loggers_for(cfg: TrainConfig, run_dir: Path) -> list[Any]:
    if cfg.log == "tensorboard":
        return [TensorBoardLog(run_dir)]
    if cfg.log == "mlflow":
        return [MLflowLog(run_dir, cfg)]
    return []


def _scalars(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "epoch"}


class TensorBoardLog:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float], **_: Any) -> None:
        for name, value in _scalars(metrics).items():
            self.writer.add_scalar(name, value, epoch + 1)
        self.writer.flush()

    def on_fit_end(self, **_: Any) -> None:
        self.writer.close()


def _mlflow(cfg: TrainConfig) -> Any:
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri or f"sqlite:///{Path('mlflow.db').resolve()}")
    return mlflow


class MLflowLog:
    def __init__(self, run_dir: Path, cfg: TrainConfig):
        self.mlflow, self.run_dir = _mlflow(cfg), run_dir
        saved = run_dir / MLFLOW_RUN_ID
        if saved.is_file():  # a resumed run goes on logging to its own MLflow run
            self.run_id = saved.read_text().strip()
        else:
            self.mlflow.set_experiment("deepcat")
            with self.mlflow.start_run(run_name=run_dir.name) as run:
                self.run_id = run.info.run_id
                self.mlflow.log_params({k: "" if v is None else v for k, v in cfg.to_dict().items()})
            saved.write_text(self.run_id)

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float], **_: Any) -> None:
        with self.mlflow.start_run(run_id=self.run_id):
            self.mlflow.log_metrics(_scalars(metrics), step=epoch + 1)


def log_run_folder(run_dir: Path, cfg: TrainConfig) -> None:
    """After the run is judged: its folder as MLflow artefacts (not state.pt, which only `--resume` needs)."""
    if cfg.log != "mlflow":
        return
    mlflow = _mlflow(cfg)
    with mlflow.start_run(run_id=(run_dir / MLFLOW_RUN_ID).read_text().strip()):
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and path.name != "state.pt" and not path.name.endswith(".tmp"):
                folder = path.parent.relative_to(run_dir).as_posix()
                mlflow.log_artifact(str(path), artifact_path=None if folder == "." else folder)
