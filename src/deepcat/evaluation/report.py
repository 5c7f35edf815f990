"""report.html: one self-contained page (images inlined) that says what a run learned and how far to trust it.

Built only from the files in the run folder, so it can be rebuilt at any time
(`deepcat report RUN`); training, `export` and `check --labels` rebuild it.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from pathlib import Path
from typing import Any

from deepcat.inputs import Words
from deepcat.run_folder import read_model_json
from deepcat.run_meta import RunMeta

__all__ = ["CSS", "SCORE_NAMES", "write_report"]

CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
.lead { color: #555; margin-top: .2rem; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: .6rem 1rem; min-width: 150px; }
.card b { display: block; font-size: 1.5rem; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #ddd; padding: .25rem .6rem; }
th { background: #f6f6f6; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; } .warn { color: #b00; font-weight: 600; } .muted { color: #777; }
"""


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="muted">({html.escape(path.name)} not available)</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f'<td class="n">{v:.4f}</td>'
        if isinstance(v, int):
            return f'<td class="n">{v}</td>'
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _card(title: str, value: str) -> str:
    return f'<div class="card">{html.escape(title)}<b>{html.escape(value)}</b></div>'


def _data_section(run_dir: Path, cfg: dict[str, Any], audit: dict[str, Any] | None) -> str:
    out = [f"<h2>Data</h2><p>{html.escape(str(cfg.get('data')))}</p>"]
    if audit is None:
        return out[0] + '<p class="muted">No audit (trained with --no-audit). Run <code>deepcat check DATA</code>.</p>'
    out.append(_table(["class", "images"], [[c, n] for c, n in audit["classes"].items()]))
    out.append(
        f"<p>Split: {', '.join(f'{k} {v}' for k, v in audit['splits'].items())}; "
        f"class imbalance (largest / smallest) {audit['imbalance']:.1f}; "
        f"sizes {audit['sizes'].get('summary', '')}"
        f".</p>"
    )
    counts = audit["counts"]
    rows = [
        ["unreadable or truncated", len(audit["unreadable"])],
        ["leaks across train/val/test (groups)", counts["leak"]],
        ["same image with different labels (groups)", counts["label_conflict"]],
        ["duplicates within a class (groups)", counts["duplicate"]],
        *([audit["flag_labels"].get(key, key), n] for key, n in audit["flag_counts"].items()),
    ]
    out.append("<h3>Audit</h3>" + _table(["finding", "count"], rows))
    if counts["leak"]:
        out.append(
            f'<p class="warn">{counts["leak"]} groups of identical or near-identical images sit in more than '
            f"one split: test accuracy is optimistic. <code>deepcat check DATA --fix</code> writes a clean "
            f"split.</p>"
        )
    examples = [g for g in audit["duplicates"] if g["kind"] != "duplicate"][:10]
    if examples:
        out.append(
            _table(
                ["kind", "images (label, split)"],
                [
                    [g["kind"], "; ".join(f"{m['item']} ({m['label']}, {m['split']})" for m in g["members"][:4])]
                    for g in examples
                ],
            )
        )
    return "".join(out)


def _evaluation_section(run_dir: Path) -> str:
    name, metrics = next(
        (
            (n, _read_json(run_dir / f"{n}_metrics.json"))
            for n in ("test", "val")
            if (run_dir / f"{n}_metrics.json").is_file()
        ),
        (None, None),
    )
    if metrics is None:
        return "<h2>Evaluation</h2><p class='muted'>No held-out split was scored.</p>"
    rows = [[c, m["precision"], m["recall"], m["f1"], m["support"]] for c, m in metrics["per_class"].items()]
    return (
        f"<h2>Evaluation ({name} split, {metrics['images']} images)</h2>"
        + _table(["class", "precision", "recall", "F1", "images"], rows)
        + _img(run_dir / "confusion_matrix.png", "confusion matrix")
    )


SCORE_NAMES = {
    "layers": "relative Mahalanobis distances of the model's last two stages' features, summed",
    "knn": "distance to the nearest training images' features (k-nearest neighbours)",
    "mahalanobis": "Mahalanobis distance to the class means of the training features",
    "energy": "energy score (logsumexp of the logits)",
    "msp": "largest softmax probability",
}


def _calibration_section(run_dir: Path, cal: dict[str, Any] | None) -> str:
    if cal is None or cal.get("threshold") is None:
        return "<h2>Calibration</h2><p class='muted'>Needs a validation split.</p>"
    rejected = 1 - cal["accepted"]
    rests_on = cal.get("calibration_images")
    note = f" <b>{html.escape(cal['note'])}</b>" if cal.get("note") else ""
    return (
        "<h2>Calibration</h2><p>Temperature scaling fitted on the validation split"
        + (f" ({rests_on} images)" if rests_on else "")
        + f": T = {cal['temperature']:.3f}.{note} "
        f"Expected calibration error (15 bins) on the {cal['split']} split: <b>{cal['ece_before']:.4f}</b> before, "
        f"<b>{cal['ece_after']:.4f}</b> after, measured on "
        f"{html.escape(cal.get('ece_after_measured_on', 'the ' + cal['split'] + ' split'))}. "
        f"Top-1 answers do not change.</p>"
        + _img(run_dir / "reliability.png", "reliability diagram")
        + _sets_section(cal)
        + "<h2>Unknown inputs</h2>"
        f"<p>An image whose {SCORE_NAMES.get(cal.get('score', 'energy'), cal.get('score'))} scores below "
        f"<b>{cal['threshold']:.3f}</b> is answered "
        f"<code>unknown</code> (predict, Python API, ONNX graph and metadata, server, web page; "
        f"<code>--no-reject</code> turns it off). The threshold accepts {cal.get('target_accept', 0.95):.0%} of "
        f"known validation images; on the {cal['split']} split it "
        f"accepts {cal['accepted']:.1%} (rejects {rejected:.1%}), and accuracy on the accepted images is "
        f"{(cal['accuracy_accepted'] or 0):.4f} against {cal['accuracy_all']:.4f} on all.</p>"
        + _img(run_dir / "rejection.png", "rejection trade-off")
    )


def _sets_section(cal: dict[str, Any]) -> str:
    rows = [
        [f"{r['coverage']:.0%}", f"{r['measured']:.1%}", f"{r['mean_size']:.2f}", f"{r['empty']:.1%}"]
        for r in cal.get("coverage") or []
    ]
    if not rows:
        return ""
    return (
        "<h2>Prediction sets</h2><p><code>deepcat predict RUN IMAGE --coverage 0.9</code> answers the set of "
        "classes that holds the true class at least 90% of the time (split conformal prediction on the "
        f"validation split). Measured on the {cal['split']} split:</p>"
        + _table(["coverage asked", "coverage measured", "mean set size", "empty sets"], rows)
    )


def _spotting_section(run_dir: Path) -> str:
    found = _read_json(run_dir / "spotting.json")
    if not found:
        return ""
    late = found["median_latency_s"]
    return (
        "<h2>Keyword spotting</h2><p><code>deepcat listen</code>'s detector (a window every "
        f"{found['settings']['hop_ms']:g} ms, {found['settings']['smooth']} smoothed, threshold "
        f"{found['settings']['threshold']:g}) over {found['recording_minutes']:.0f} minutes made of held-out clips: "
        f"{found['keywords_spoken']} keywords with pauses between them and {found['other_clips']} clips of "
        "non-words among them, under noise.</p>"
        + _table(
            ["keywords heard in time", "false activations per hour", "median latency from the word's end"],
            [
                [
                    f"{found['detection_rate']:.1%}",
                    f"{found['false_activations_per_hour']:.0f}",
                    "" if late is None else f"{late:+.2f} s",
                ]
            ],
        )
    )


def _mistakes_section(run_dir: Path, noun: str) -> str:
    mistakes = _read_json(run_dir / "mistakes.json")
    if not mistakes:
        return "<h2>Worst mistakes</h2><p class='muted'>None (or not computed).</p>"
    return (
        "<h2>Worst mistakes</h2><p>The most confident wrong answers, each beside its Grad-CAM heatmap "
        "(where the network looked for the class it said).</p>"
        + _img(run_dir / "mistakes.png", "mistakes")
        + _table(
            [noun, "true", "predicted", "probability"],
            [[m["item"], m["true"], m["predicted"], m["probability"]] for m in mistakes],
        )
    )


def _labels_section(run_dir: Path, words: Words) -> str:
    found = _read_json(run_dir / "label_issues.json")
    if found is None:
        return (
            "<h2>Suspected label errors</h2><p class='muted'>Not computed for this run (large data); "
            "run <code>deepcat check DATA --labels RUN</code>.</p>"
        )
    rows = [
        [s["item"], s["split"], s["given"], s["suggested"], s["suggested_probability"]] for s in found["suspects"][:15]
    ]
    return (
        f"<h2>Suspected label errors</h2><p>{len(found['suspects'])} of {found['images']} {words.plural} look "
        f"mislabelled (confident learning on out-of-fold probabilities; out-of-fold accuracy "
        f"{found['oof_accuracy']:.3f}).</p>"
        + (_img(run_dir / "label_issues.png", "label issues") if rows else "")
        + (_table([words.noun, "split", "given", "suggested", "p(suggested)"], rows) if rows else "")
    )


def _export_section(run_dir: Path) -> str:
    checks = [_read_json(p) for p in sorted((run_dir / "export").glob("*.check.json"))]
    if not checks:
        return (
            "<h2>Export</h2><p class='muted'>Not exported yet: <code>deepcat export RUN --format onnx</code> "
            "(or onnx-int8, ort, torchscript).</p>"
        )
    rows = [
        [
            c["format"],
            Path(c["path"]).name,
            f"{c['bytes'] / 1e6:.2f} MB",
            f"{c['ms_batch1']:.2f}" if c.get("ms_batch1") else "",
            c["check"]["max_abs_diff"],
            c["check"]["top1_agreement"],
            c["check"]["accuracy_exported"],
        ]
        for c in checks
    ]
    return "<h2>Export</h2>" + _table(
        ["format", "file", "size", "ms per image (batch 1, this machine)", "max |diff|", "top-1 agreement", "accuracy"],
        rows,
    )


def _model_card(cfg: dict[str, Any], meta: RunMeta, cal: dict[str, Any] | None) -> str:
    threshold_note = (
        f"({cal.get('score', 'energy')} threshold {cal['threshold']:.2f})" if cal and cal.get("threshold") else ""
    )
    classes = ", ".join(meta.classes)
    words = meta.kind.words
    noun, source = words.plural, words.source
    return (
        f"<h2>Model card</h2><table>"
        f"<tr><th>Model</th><td>{html.escape(meta.model.name)}, {meta.preprocess.describe()}"
        f"{', ImageNet-pretrained' if cfg.get('pretrained') else ', trained from scratch'}</td></tr>"
        f"<tr><th>Data</th><td>{html.escape(str(cfg.get('data')))}; classes: {html.escape(classes)}</td></tr>"
        f"<tr><th>Intended use</th><td>Sorting {noun} into exactly these classes, on {noun} like the training "
        f"data ({source}).</td></tr>"
        f"<tr><th>Limits</th><td>It knows nothing outside these classes: other inputs are answered "
        f"<code>unknown</code> only when they score low "
        f"{threshold_note}, and a confident wrong answer "
        f"on an unfamiliar input remains possible. Accuracy was measured on the held-out split above, which "
        f"shares the training data's sources and biases. Not for decisions about people.</td></tr></table>"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write (or rewrite) run_dir/report.html from the run folder's files; returns its path."""
    import yaml

    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    meta = read_model_json(run_dir)
    cal = _read_json(run_dir / "calibration.json")
    metrics = next((m for m in (_read_json(run_dir / f"{n}_metrics.json") for n in ("test", "val")) if m), None)
    history = list(csv.DictReader((run_dir / "metrics.csv").open())) if (run_dir / "metrics.csv").is_file() else []
    cards = [
        _card("accuracy", f"{metrics['accuracy']:.2%}") if metrics else "",
        _card("calibration error", f"{cal['ece_after']:.3f}") if cal else "",
        _card("epochs", str(len(history))),
        _card("training time", f"{sum(float(h['seconds']) for h in history):.0f} s") if history else "",
    ]
    body = [
        f"<h1>{html.escape(run_dir.name)}</h1>",
        f"<p class='lead'>{html.escape(meta.model.name)} on {html.escape(str(cfg.get('data')))}, "
        f"{len(meta.classes)} classes. Report written {time.strftime('%Y-%m-%d %H:%M')}.</p>",
        f"<div class='cards'>{''.join(cards)}</div>",
        _data_section(run_dir, cfg, _read_json(run_dir / "audit.json")),
        "<h2>Training</h2>"
        + _img(run_dir / "curves.png", "learning curves")
        + _table(
            ["option", "value"],
            [
                [k, "" if v is None else v]
                for k, v in cfg.items()
                if k
                in (
                    "model",
                    "epochs",
                    "batch_size",
                    "image_size",
                    "lr",
                    "optimizer",
                    "schedule",
                    "label_smoothing",
                    "augment",
                    "amp",
                    "seed",
                )
            ],
        ),
        _evaluation_section(run_dir),
        _calibration_section(run_dir, cal),
        _spotting_section(run_dir),
        _mistakes_section(run_dir, meta.kind.words.noun),
        _labels_section(run_dir, meta.kind.words),
        _export_section(run_dir),
        _model_card(cfg, meta, cal),
    ]
    path = run_dir / "report.html"
    path.write_text(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>deepcat report: "
        f"{html.escape(run_dir.name)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    return path
