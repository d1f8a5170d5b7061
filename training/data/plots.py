"""PNG plots for the data report (matplotlib, headless): class histogram, image-size or text-length
histogram, sample grids per class, augmented training samples, near-duplicate pairs side by side.

    >>> draw_all(dataset, train, cfg, Path("out/plots"), pairs)  # doctest: +SKIP
    {'classes': PosixPath('out/plots/classes.png'), ...}
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from serving.preprocess import ImageSpec, decode_image, image_to_array  # noqa: E402
from training.config import RunConfig  # noqa: E402
from training.data.dataset import Dataset  # noqa: E402
from training.data.features import token_counts  # noqa: E402

log = logging.getLogger(__name__)

SAMPLES_PER_CLASS = 8
MAX_CLASSES_SHOWN = 20


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def class_histogram(dataset: Dataset, path: Path) -> Path:
    counts = Counter(dataset.labels).most_common()
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(counts) + 2), 3.5))
    ax.bar([str(label) for label, _ in counts], [n for _, n in counts], color="#4c72b0")
    ax.set_ylabel("items kept")
    ax.set_title("Examples per class")
    ax.tick_params(axis="x", rotation=60 if len(counts) > 8 else 0)
    return _save(fig, path)


def size_histogram(dataset: Dataset, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if dataset.task == "image":
        ax.hist([w for w, _ in dataset.sizes], bins=30, alpha=0.6, label="width")
        ax.hist([h for _, h in dataset.sizes], bins=30, alpha=0.6, label="height")
        ax.set_xlabel("pixels")
        ax.legend()
        ax.set_title("Image sizes")
    else:
        ax.hist(token_counts(dataset.inputs), bins=40, color="#55a868")
        ax.set_xlabel("tokens per text")
        ax.set_title("Text lengths")
    ax.set_ylabel("items")
    return _save(fig, path)


def _thumbnail(path: Path, size: int = 64) -> np.ndarray:
    spec = ImageSpec(labels=(), height=size, width=size, channels=3)
    return image_to_array(decode_image(Path(path).read_bytes()), spec)


def _grid(rows: list[tuple[str, list[np.ndarray]]], title: str, path: Path) -> Path:
    cols = max((len(images) for _, images in rows), default=1)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.2 * cols + 1, 1.2 * len(rows) + 0.6), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(np.clip(images[c], 0, 1), cmap="gray" if images[c].shape[-1] == 1 else None)
        axes[r][0].set_title(label, fontsize=8, loc="left")
    fig.suptitle(title)
    return _save(fig, path)


def sample_grid(dataset: Dataset, path: Path) -> Path:
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(dataset.labels):
        by_class.setdefault(label, []).append(i)
    rows = [
        (label, [_thumbnail(dataset.inputs[i]) for i in idx[:SAMPLES_PER_CLASS]])
        for label, idx in sorted(by_class.items())[:MAX_CLASSES_SHOWN]
    ]
    return _grid(rows, "Samples per class", path)


def augmented_grid(train: Dataset, cfg: RunConfig, path: Path) -> Path | None:
    """The same few training images, augmented four times each, as the training pipeline does it."""
    from training.fit.augment import image_augmentation
    from training.fit.tf_env import tf

    augment = image_augmentation(cfg.augment, cfg.train.seed)
    if augment is None or not len(train):
        return None
    picks = np.linspace(0, len(train) - 1, min(6, len(train))).astype(int)
    originals = np.stack([_thumbnail(train.inputs[i]) for i in picks]).astype(np.float32)
    labels = np.eye(len(picks), dtype=np.float32)
    rows = [("original", list(originals))]
    for k in range(4):
        x, _ = augment(tf.constant(originals), tf.constant(labels))
        rows.append((f"augmented {k + 1}", list(np.asarray(x))))
    return _grid(rows, "Training augmentation", path)


def near_duplicate_grid(dataset: Dataset, pairs: list[tuple[int, int]], path: Path) -> Path | None:
    if not pairs:
        return None
    rows = [
        (
            f"{Path(dataset.inputs[a]).name} ~ {Path(dataset.inputs[b]).name}",
            [_thumbnail(dataset.inputs[a]), _thumbnail(dataset.inputs[b])],
        )
        for a, b in pairs
    ]
    return _grid(rows, "Near duplicates (kept, same split)", path)


def draw_all(
    dataset: Dataset, train: Dataset, cfg: RunConfig, out: Path, pairs: list[tuple[int, int]]
) -> dict[str, Path]:
    """Every plot that applies to the task; returns name -> PNG path."""
    drawn: dict[str, Path | None] = {
        "classes": class_histogram(dataset, out / "classes.png"),
        "sizes" if dataset.task == "image" else "lengths": size_histogram(
            dataset, out / ("image_sizes.png" if dataset.task == "image" else "text_lengths.png")
        ),
    }
    if dataset.task == "image" and len(dataset):
        drawn["samples"] = sample_grid(dataset, out / "samples.png")
        drawn["augmented"] = augmented_grid(train, cfg, out / "augmented.png")
        drawn["near_duplicates"] = near_duplicate_grid(dataset, pairs, out / "near_duplicates.png")
    return {name: p for name, p in drawn.items() if p is not None}


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
    return _save(fig, path)


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
    return _save(fig, path)


def draw_training(
    history: dict[str, list[float]], matrix: np.ndarray, labels: tuple[str, ...], out: Path
) -> dict[str, Path]:
    """Learning curves and the confusion matrix of a finished run, under ``out``."""
    return {
        "learning curves": learning_curves(history, out / "learning_curves.png"),
        "confusion matrix": confusion_plot(matrix, labels, out / "confusion_matrix.png"),
    }


def _data_uri(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def inline_images(markdown: str, base: Path) -> str:
    """Markdown whose relative PNG links (``](plots/x.png)``) become data URIs, for Prefect artifacts,
    which cannot read files from the run directory."""
    import re

    def replace(match: re.Match[str]) -> str:
        path = base / match.group(1)
        return f"]({_data_uri(path)})" if path.is_file() else match.group(0)

    return re.sub(r"\]\(([^)\s]+\.png)\)", replace, markdown)


def markdown_with_images(title: str, images: dict[str, Path]) -> str:
    """Markdown with the PNGs inlined as data URIs, for Prefect artifacts (which cannot read local files)."""
    lines = [f"# {title}", ""]
    for name, path in images.items():
        lines += [f"## {name}", "", f"![{name}]({_data_uri(path)})", ""]
    return "\n".join(lines)
