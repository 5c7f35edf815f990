"""What a search leaves in tunes/NAME/: trials.csv, best.yaml (`deepcat train --config best.yaml` reproduces the
best run), the best trial's run folder (evaluate, export, serve it) and report.html with the search's plots."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["NOT_REPRODUCED", "STOPPED", "TuneResult", "write_report", "write_results"]

NOT_REPRODUCED = ("output", "name")  # where the best trial's run lived, not how it trained
STOPPED = "its worker stopped sending heartbeats (killed, or its machine lost); the study went on"


@dataclass
class TuneResult:
    """A search's outcome; `folder` holds trials.csv, best.yaml, report.html and the trials' run folders."""

    folder: Path
    study: str
    trials: int
    complete: int
    pruned: int
    failed: int
    best_value: float | None  # best validation accuracy
    best_params: dict[str, Any]
    best_run: Path | None  # the best trial's run folder
    best_config: Path | None  # best.yaml


def write_results(study: Any, folder: Path, *, write: bool = True) -> TuneResult:
    """The search's outcome from its study; with `write`, trials.csv, best.yaml and report.html too (one process
    of a search under torchrun writes them)."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("over_cap")]
    rows = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    if len(rows):
        rows = rows[rows["number"].isin([t.number for t in trials])]
        rows["seconds"] = rows.pop("duration").dt.total_seconds()
        rows["error"] = [t.user_attrs.get("error", STOPPED if t.state == TrialState.FAIL else "") for t in trials]
        rows = rows.drop(columns=[c for c in rows.columns if c in ("user_attrs_error", "user_attrs_over_cap")])
    if write:
        rows.to_csv(folder / "trials.csv", index=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    best_run = Path(best.user_attrs["run"]) if best is not None else None
    best_config = None
    if best_run is not None:
        cfg = {
            k: v for k, v in yaml.safe_load((best_run / "config.yaml").read_text()).items() if k not in NOT_REPRODUCED
        }
        best_config = folder / "best.yaml"
        if write:
            best_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    result = TuneResult(
        folder,
        study.study_name,
        len(trials),
        count[TrialState.COMPLETE],
        count[TrialState.PRUNED],
        count[TrialState.FAIL],
        best.value if best else None,
        dict(best.params) if best else {},
        best_run,
        best_config,
    )
    if write:
        write_report(study, result)
    return result


def _figure(plot: Any, study: Any) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        ax = plot(study)
    except (ValueError, RuntimeError) as e:  # e.g. importances need two finished trials
        return f"<p class='muted'>({html.escape(str(e))})</p>"
    figure = (ax[0] if hasattr(ax, "__len__") else ax).figure
    figure.set_size_inches(8, 4.5)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def write_report(study: Any, result: TuneResult) -> Path:
    """report.html: optimisation history, parameter importances and each parameter against the score."""
    import warnings

    from optuna.visualization import matplotlib as plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        sections = [
            ("Optimisation history", _figure(plots.plot_optimization_history, study)),
            ("Parameter importances", _figure(plots.plot_param_importances, study)),
            ("Parameters against the score", _figure(plots.plot_slice, study)),
        ]
    best = (
        f"best validation accuracy <b>{result.best_value:.4f}</b> in <code>{html.escape(str(result.best_run))}"
        f"</code>; <code>deepcat train --config {html.escape(str(result.best_config))}</code> reproduces it"
        if result.best_value is not None
        else "no trial finished"
    )
    body = "".join(f"<h2>{title}</h2>{figure}" for title, figure in sections)
    path = result.folder / "report.html"
    path.write_text(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>deepcat tune: "
        f"{html.escape(result.study)}</title><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:"
        f"1000px;margin:2rem auto}} img{{max-width:100%}} .muted{{color:#777}}</style></head><body>"
        f"<h1>deepcat tune: {html.escape(result.study)}</h1><p>{result.trials} trials: {result.complete} "
        f"finished, {result.pruned} pruned, {result.failed} failed; {best}.</p>{body}</body></html>"
    )
    return path
