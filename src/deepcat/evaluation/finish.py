"""After a model exists: the one home of everything that judges a trained run and writes its report.

Training only fits; the public `train` calls `after_training` on rank 0 when fitting is done, `export`
calls `after_export`, and `check --labels` calls `check_labels`. Nothing below the front imports the
report, Grad-CAM or label-error code except this module.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn as nn

from deepcat.data.sources import DataSplits, Samples
from deepcat.device import pick_device
from deepcat.errors import DeepcatError
from deepcat.evaluation import calibration
from deepcat.evaluation.label_errors import LabelErrors
from deepcat.evaluation.scores import Evaluation, Scoring, features_of, score
from deepcat.inference.monitor import reference_of
from deepcat.inference.unknown_score import (
    DEFAULT_SCORE,
    FEATURE_SCORES,
    UnknownScore,
    WithFeatures,
    bank_size,
    classifier_layer,
    fit_score,
    save_score,
    stage_names,
)
from deepcat.run_folder import load_model, read_config, update_model_json
from deepcat.run_meta import RunMeta

__all__ = [
    "FIT_IMAGES",
    "LABEL_CHECK_MAX_IMAGES",
    "RunContext",
    "after_export",
    "after_training",
    "calibrate",
    "check_labels",
    "score_held_out",
    "unknown_scores",
    "write_report",
]

LABEL_CHECK_MAX_IMAGES = 20_000  # above this, label errors wait for `deepcat check DATA --labels RUN`
FIT_IMAGES = 20_000  # training images whose features fit the class means and covariance of the `unknown` score


@dataclass
class RunContext:
    """What scoring a run's model needs, read back from its folder (config.yaml and model.json)."""

    run_dir: Path
    scoring: Scoring
    accept: float

    @classmethod
    def of(cls, run_dir: Path, meta: RunMeta, *, progress: bool) -> RunContext:
        """Always fp32, whatever the run trained in: what is fitted here (the temperature, the `unknown` score's
        statistics and threshold, the set limits) and the test metrics describe the model as it is deployed, and
        every runtime that uses them (ONNX, the server, `load`) computes in fp32."""
        cfg = read_config(run_dir)
        scoring = Scoring(
            meta.preprocess, pick_device(cfg.get("device", "auto")), None, cfg.get("workers"), progress=progress
        )
        return cls(run_dir, scoring, cfg.get("accept", calibration.DEFAULT_ACCEPT))


def after_training(run_dir: Path, splits: DataSplits, *, progress: bool = True) -> None:
    """Calibrate the best weights on val, score them on test (else val) with the worst mistakes, look for
    label errors on small data, and write report.html."""
    model, meta = load_model(run_dir)
    ctx = RunContext.of(run_dir, meta, progress=progress)
    cal, unknown = calibrate(model, splits, ctx)
    name = "test" if splits.test is not None else "val" if splits.val is not None else None
    if name is not None:
        score_held_out(model, splits, name, cal, unknown, ctx)
        if splits.input_kind == "audio":  # a sound model is a keyword spotter too: judged as `deepcat listen` runs
            from deepcat.evaluation.spotting import false_alarms_on_held_out, spotting_on_held_out

            if splits.val is not None:  # thresholds for a false-alarm rate, chosen on val's non-word clips
                false_alarms_on_held_out(run_dir, splits.val, splits.classes)
            spotting_on_held_out(run_dir, cast(Samples, splits.split(name)), splits.classes)
    total = sum(len(part) for part in (splits.train, splits.val, splits.test) if part is not None)
    if total <= LABEL_CHECK_MAX_IMAGES:
        try:
            check_labels(run_dir, splits, progress=progress, report=False)
        except DeepcatError as e:
            print(f"label errors not checked: {e}", file=sys.stderr)
    print(f"report: {write_report(run_dir)}", file=sys.stderr)


def calibrate(model: nn.Module, splits: DataSplits, ctx: RunContext) -> tuple[calibration.Calibration, UnknownScore]:
    """Temperature, the `unknown` score (fitted on training features) with its threshold, and the conformal
    set limits, fitted on val and saved in model.json (none without a val split)."""
    if splits.val is None:
        return calibration.Calibration(), UnknownScore("energy")
    classes = len(splits.classes)
    head, stages = classifier_layer(model, classes=classes), stage_names(model)
    kind = DEFAULT_SCORE if stages else "mahalanobis" if head is not None else "energy"
    tapped = WithFeatures(model, head, stages)
    features, logits, labels = features_of(
        model, splits.val, ctx.scoring, classes=classes, desc="calibrate", tapped=tapped
    )
    unknown = UnknownScore(kind)
    if kind in FEATURE_SCORES:  # a bounded sample of training images' features is what the score compares with
        size = bank_size(features.shape[1]) if kind == "knn" else FIT_IMAGES  # knn carries its sample
        sample = np.random.default_rng(0).permutation(len(splits.train))[:size]
        train_features, _, train_labels = features_of(
            model,
            splits.train.subset(np.sort(sample)),
            ctx.scoring,
            classes=classes,
            desc="training features",
            quiet=True,
            tapped=tapped,
        )
        unknown = fit_score(
            kind, torch.from_numpy(train_features), torch.from_numpy(train_labels), stages=stages, sizes=tapped.sizes
        )
        save_score(unknown, ctx.run_dir)
    scores = unknown_scores(unknown, features, logits)
    cal = calibration.fit(logits, labels, scores, score=kind, accept=ctx.accept)
    probabilities = torch.softmax(torch.from_numpy(logits) / cal.temperature, 1).numpy()
    cal = dataclasses.replace(cal, reference=reference_of(probabilities, scores, labels, threshold=cal.threshold))
    if cal.note:
        print(f"calibration: {cal.note}", file=sys.stderr)
    update_model_json(ctx.run_dir, calibration=cal)
    return cal, unknown


def unknown_scores(unknown: UnknownScore, features: np.ndarray, logits: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """The score of every row, `chunk` rows at a time (the class-conditional distances hold B x C x D floats)."""
    with torch.no_grad():
        return np.concatenate(
            [
                unknown(torch.from_numpy(features[i : i + chunk]), torch.from_numpy(logits[i : i + chunk])).numpy()
                for i in range(0, len(logits), chunk)
            ]
        )


def score_held_out(
    model: nn.Module,
    splits: DataSplits,
    name: str,
    cal: calibration.Calibration,
    unknown: UnknownScore,
    ctx: RunContext,
) -> Evaluation:
    """Metrics, calibration report (with prediction-set coverage) and the most confident mistakes on `name`."""
    from deepcat.evaluation.explain import worst_mistakes
    from deepcat.evaluation.plots import plot_rejection, plot_reliability

    run_dir, samples = ctx.run_dir, splits.split(name)
    if samples is None:
        raise DeepcatError(f"{splits.name} has no {name} split to score")
    features, logits, labels = features_of(
        model, samples, ctx.scoring, classes=len(splits.classes), tapped=WithFeatures.for_score(model, unknown)
    )
    metrics = score(
        logits,
        labels,
        classes=splits.classes,
        temperature=cal.temperature,
        data=splits.name,
        split=name,
        json_path=run_dir / f"{name}_metrics.json",
    )
    cal_report = {
        "split": name,
        **calibration.report(logits, labels, unknown_scores(unknown, features, logits), cal, fitted_on=name == "val"),
    }
    (run_dir / "calibration.json").write_text(json.dumps(cal_report, indent=2))
    plot_reliability(cal_report, run_dir / "reliability.png")
    plot_rejection(cal_report, run_dir / "rejection.png")
    print(
        f"{name} accuracy {metrics.accuracy:.4f} (best weights); calibration error (ECE) "
        f"{cal_report['ece_before']:.4f} -> {cal_report['ece_after']:.4f} at temperature "
        f"{cal.temperature:.2f}",
        file=sys.stderr,
    )
    if len(labels) == len(samples):  # no unreadable images: rows line up with samples
        mistakes = worst_mistakes(
            model.cpu(),
            samples,
            calibration.softmax(logits, cal.temperature),
            labels,
            splits.classes,
            ctx.scoring.pre,
            run_dir / "mistakes.png",
        )
        (run_dir / "mistakes.json").write_text(json.dumps(mistakes, indent=2))
    return metrics


def check_labels(run_dir: str | Path, splits: DataSplits, *, progress: bool = True, report: bool = True) -> LabelErrors:
    """Suspected label errors of `splits` with the run's network, saved in the run folder (JSON and a grid)."""
    from deepcat.evaluation.label_errors import find_label_errors, save

    found = find_label_errors(run_dir, splits, progress=progress)
    save(found, Path(run_dir))
    if report:
        write_report(run_dir)
    return found


def after_export(run_dir: str | Path) -> Path:
    """The report's export section lists every exported file's size and check."""
    return write_report(run_dir)


def write_report(run_dir: str | Path) -> Path:
    from deepcat.evaluation.report import write_report as write

    return write(run_dir)
