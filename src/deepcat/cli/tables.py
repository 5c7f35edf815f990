"""What the CLI prints: rich tables of the API's results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from deepcat.data.audit import Audit
    from deepcat.evaluation.label_errors import LabelErrors
    from deepcat.evaluation.scores import Evaluation
    from deepcat.inference.answers import Prediction

__all__ = ["print_audit", "print_evaluation", "print_predictions", "print_suspects", "short_names"]


def print_evaluation(metrics: Evaluation, title: str) -> None:
    table = Table(title=title)
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, m in metrics.per_class.items():
        table.add_row(c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    Console().print(table)
    print(
        f"accuracy {metrics.accuracy:.4f}   top{metrics.top_k} accuracy {metrics.top_k_accuracy:.4f}   "
        f"calibration error (ECE) {metrics.ece:.4f}   images {metrics.images}"
    )


def short_names(sources: list[str]) -> list[str]:
    """Each path as its shortest tail that no other path shares (`a/img.png`, `b/img.png`; else just `img.png`),
    so the rows of a folder can be told apart however deep it lies."""
    parts = [Path(s).parts or (s,) for s in sources]
    names = []
    for own in parts:
        for k in range(1, len(own) + 1):
            tail = own[-k:]
            if sum(other[-k:] == tail for other in parts) == 1 or k == len(own):
                names.append(str(Path(*tail)))
                break
    return names


def print_predictions(predictions: list[Prediction], model: str, top_k: int) -> None:
    table = Table(title=f"predictions ({model})")
    table.add_column("input", overflow="fold")
    sets = any(p.set is not None for p in predictions)
    for col in ("label", "probability", f"top {top_k}") + (("set",) if sets else ()):
        table.add_column(col)
    for name, p in zip(short_names([p.source for p in predictions]), predictions):
        if p.error:
            table.add_row(name, "[red]error[/red]", "", p.error)
        else:
            top = ", ".join(f"{lab} {prob:.3f}" for lab, prob in p.top)
            label = (
                f"[yellow]unknown[/yellow] (< {p.threshold:.3f})" if p.label == "unknown" else f"[bold]{p.label}[/bold]"
            )
            shown = () if not sets else ("{" + ", ".join(p.set) + "}" if p.set else "{} (no class is likely enough)",)
            table.add_row(name, label, f"{p.probability:.3f}", top, *shown)
    Console().print(table)


def print_monitor(report: dict[str, Any]) -> None:
    """The monitor's report (`inference/monitor.py`): these inputs against the validation split."""

    def share(value: float | None) -> str:
        return "" if value is None else f"{value:.1%}"

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    table = Table(title=f"monitor: the last {report['answers']} answers against validation")
    for col in ("", "now", "validation"):
        table.add_column(col)
    accuracy, drift = report["accuracy"], report["drift"]
    interval = accuracy["interval"]
    estimate = share(accuracy["estimate"]) + (f" ({interval[0]:.1%} to {interval[1]:.1%})" if interval else "")
    table.add_row("accuracy (estimated, no labels)", estimate, share(accuracy["validation"]))
    table.add_row("mean confidence", number(report["confidence"]["mean"]), number(report["confidence"]["validation"]))
    unknown = report["unknown_share"]
    table.add_row("answered unknown", share(unknown["now"]), share(unknown["validation"]))
    if report["set_size"]["mean"] is not None:
        table.add_row("mean 90% set size", number(report["set_size"]["mean"]), "")
    tests = ", ".join(f"{name} {p:.2g}" for name, p in drift["tests"].items())
    p_value = f"{drift['p_value']:.3g} ({tests})" if drift["p_value"] is not None else drift["why"]
    table.add_row("drift p-value", p_value, "")
    Console().print(table)
    if report["alarm"]:
        Console().print("[bold red]alarm[/bold red]: " + "; ".join(report["reasons"]))
    else:
        Console().print(f"no alarm (drift p-value at least {drift['alpha']})")


def print_audit(found: Audit) -> None:
    table = Table(
        title=f"audit of {found.data}: {found.images} {found.noun}, {len(found.classes)} classes, "
        f"{found.words.sizes} {found.sizes.get('summary', '')}"
    )
    table.add_column("finding")
    table.add_column("count", justify="right")
    table.add_column("example")
    for name, n, example in found.rows():
        table.add_row(name, str(n), example, style="bold red" if n and "leak" in name else None)
    Console().print(table)


def print_suspects(found: LabelErrors, limit: int = 20) -> None:
    table = Table(
        title=f"suspected label errors: {len(found.suspects)} of {found.images} {found.words.plural} "
        f"(out-of-fold accuracy {found.oof_accuracy:.3f})"
    )
    for col in (found.words.noun, "split", "given", "suggested", "p(given)", "p(suggested)"):
        table.add_column(col)
    for s in found.suspects[:limit]:
        table.add_row(
            s.item,
            s.split,
            s.given,
            f"[bold]{s.suggested}[/bold]",
            f"{s.given_probability:.3f}",
            f"{s.suggested_probability:.3f}",
        )
    Console().print(table)
