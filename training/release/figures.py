"""Figures of a finished run: learning curves, the test confusion matrix and the reliability diagram
(matplotlib, headless)."""

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


MAX_CONFUSION_INCHES = 24.0


def confusion_plot(matrix: np.ndarray, labels: tuple[str, ...], path: Path) -> Path:
    """The test confusion matrix, counts in the cells, rows true and columns predicted."""
    # Grows with the classes up to MAX_CONFUSION_INCHES (150 classes at 0.45 in each drew a 5,560-pixel square
    # that took 1.1 GiB); beyond that the cells and their tick labels shrink instead.
    size = min(MAX_CONFUSION_INCHES, max(4.0, 0.45 * len(labels) + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(labels))
    points = min(10.0, 0.7 * 72 * (size - 2) / max(1, len(labels)))  # a tick label no taller than its cell
    ax.set_xticks(ticks, labels, rotation=60 if len(labels) > 6 else 0, fontsize=points)
    ax.set_yticks(ticks, labels, fontsize=points)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if n > threshold else "black")
    ax.set_title("Confusion matrix (test split, served variant)")
    return save(fig, path)


def reliability_plot(curves: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """Accuracy against confidence per bin (compression.compress reliability: the served variant on the test
    split, with its calibration map and without): a calibrated model lies on the diagonal."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for (name, curve), style in zip(curves.items(), ("o-", "s--"), strict=False):
        ax.plot(curve["confidence"], curve["accuracy"], style, label=name, markersize=4)
        counts.bar(curve["confidence"], curve["count"], width=1 / 30, alpha=0.5, label=name)
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (test split, served variant)")
    ax.legend(fontsize=8)
    counts.set_xlabel("confidence (top-1 score)")
    counts.set_ylabel("items")
    counts.set_yscale("log")
    return save(fig, path)


def draw_training(
    history: dict[str, list[float]],
    matrix: np.ndarray,
    labels: tuple[str, ...],
    out: Path,
    reliability: dict[str, dict[str, list[float]]] | None = None,
) -> dict[str, Path]:
    """Learning curves, the confusion matrix and (given its curves) the reliability diagram, under ``out``."""
    figures = {
        "learning curves": learning_curves(history, out / "learning_curves.png"),
        "confusion matrix": confusion_plot(matrix, labels, out / "confusion_matrix.png"),
    }
    if reliability:
        figures["reliability diagram"] = reliability_plot(reliability, out / "reliability.png")
    return figures
