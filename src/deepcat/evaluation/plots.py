"""PNG plots of a run: learning curves, confusion matrix, reliability diagram (matplotlib, imported when used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_confusion", "plot_curves", "plot_image_grid", "plot_lr_find", "plot_rejection", "plot_reliability"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        if all(key in h for h in history):
            ax_loss.plot(epochs, [h[key] for h in history], marker="o", label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "val")):
        if all(key in h for h in history):
            ax_acc.plot(epochs, [h[key] for h in history], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str = "Confusion matrix") -> None:
    plt = _pyplot()
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(5, 0.6 * len(classes) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_lr_find(lrs: list[float], losses: list[float], suggestion: float, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="red", linestyle="--", label=f"suggested {suggestion:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed loss", title="Learning-rate finder")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(report: dict[str, Any], path: Path) -> None:
    """Reliability diagram before and after temperature scaling: accuracy against confidence per bin."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    after = f"After (T = {report['temperature']:.2f})"
    for ax, key, title in ((axes[0], "before", "Before"), (axes[1], "after", after)):
        bins = report[f"reliability_{key}"]
        n = len(bins["count"])
        centres = (np.arange(n) + 0.5) / n
        filled = np.asarray(bins["count"]) > 0
        ax.bar(
            centres[filled],
            np.asarray(bins["accuracy"])[filled],
            width=1 / n,
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ax.plot(
            np.asarray(bins["confidence"])[filled],
            np.asarray(bins["accuracy"])[filled],
            "o",
            color="red",
            markersize=3,
            label="mean confidence",
        )
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"{title}: ECE {report[f'ece_{key}']:.3f}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_image_grid(images: list[Any], titles: list[str], path: Path, *, title: str = "", columns: int = 8) -> None:
    """Images (PIL or arrays) in a grid, each with a short caption."""
    plt = _pyplot()
    columns = max(1, min(columns, len(images)))
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray" if np.ndim(image) == 2 else None)
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_rejection(report: dict[str, Any], path: Path) -> None:
    """Share of known images accepted and accuracy on them, against the rejection threshold."""
    plt = _pyplot()
    curve = report["tradeoff"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["threshold"], curve["accepted"], label="known images accepted")
    ax.plot(curve["threshold"], curve["accuracy"], label="accuracy on accepted")
    if report.get("threshold") is not None:
        ax.axvline(
            report["threshold"],
            color="red",
            linestyle="--",
            label=f"threshold {report['threshold']:.3f} (accepts {report['accepted']:.1%})",
        )
    ax.set(
        xlabel=f"threshold on the `unknown` score ({report.get('score', 'energy')})",
        ylabel="share",
        ylim=(0, 1.02),
        title="Rejecting 'unknown': the trade-off",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
