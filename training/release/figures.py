"""Figures of a finished run: learning curves and the test confusion matrix (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.plots import plt, save


def learning_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and accuracy per epoch (training and validation), and the learning rate."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    panels = [("loss", "loss"), ("accuracy", "accuracy"), ("lr", "learning rate")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if history.get(name):
                ax.plot(epochs[: len(history[name])], history[name], style, label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if key == "lr":
            ax.set_yscale("log")
        elif ax.lines:
            ax.legend()
    return save(fig, path)


def confusion_plot(matrix: np.ndarray, labels: tuple[str, ...], path: Path) -> Path:
    """The test confusion matrix, counts in the cells, rows true and columns predicted."""
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=60 if len(labels) > 6 else 0)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if n > threshold else "black")
    ax.set_title("Confusion matrix (test split, served variant)")
    return save(fig, path)


def draw_training(
    history: dict[str, list[float]], matrix: np.ndarray, labels: tuple[str, ...], out: Path
) -> dict[str, Path]:
    """Learning curves and the confusion matrix of a finished run, under ``out``."""
    return {
        "learning curves": learning_curves(history, out / "learning_curves.png"),
        "confusion matrix": confusion_plot(matrix, labels, out / "confusion_matrix.png"),
    }
