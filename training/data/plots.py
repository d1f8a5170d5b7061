"""PNG plots for the data report (matplotlib, headless): class histogram, image-size or text-length
histogram, sample grids per class, near-duplicate pairs side by side (the training augmentation preview is
training.fit.augment's). Which of them a data set gets is its task kind's choice.

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
from training.data.label_audit import LabelIssue  # noqa: E402
from training.kinds import kind_of  # noqa: E402

log = logging.getLogger(__name__)

SAMPLES_PER_CLASS = 8
MAX_CLASSES_SHOWN = 20


DPI = 80  # every figure's pixels per inch


def save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def class_histogram(dataset: Dataset, path: Path) -> Path:
    counts = Counter(dataset.labels).most_common()
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(counts) + 2), 3.5))
    ax.bar([str(label) for label, _ in counts], [n for _, n in counts], color="#4c72b0")
    ax.set_ylabel("items kept")
    ax.set_title("Examples per class")
    ax.tick_params(axis="x", rotation=60 if len(counts) > 8 else 0)
    return save(fig, path)


def image_sizes(dataset: Dataset, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist([w for w, _ in dataset.sizes], bins=30, alpha=0.6, label="width")
    ax.hist([h for _, h in dataset.sizes], bins=30, alpha=0.6, label="height")
    ax.set_xlabel("pixels")
    ax.legend()
    ax.set_title("Image sizes")
    ax.set_ylabel("items")
    return save(fig, path)


def text_lengths(dataset: Dataset, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(token_counts(dataset.inputs), bins=40, color="#55a868")
    ax.set_xlabel("tokens per text")
    ax.set_title("Text lengths")
    ax.set_ylabel("items")
    return save(fig, path)


def thumbnail(path: Path, size: int = 64) -> np.ndarray:
    spec = ImageSpec(labels=(), height=size, width=size, channels=3)
    return image_to_array(decode_image(Path(path).read_bytes()), spec)


def grid(rows: list[tuple[str, list[np.ndarray]]], title: str, path: Path) -> Path:
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
    return save(fig, path)


def label_issue_grid(issues: list[LabelIssue], path: Path) -> Path:
    """The label audit's top suspects, each titled "given -> suggested", most suspect first."""
    per_row = 4
    rows = [
        (
            "   ".join(f"{i.given}->{i.suggested}" for i in issues[r : r + per_row]),
            [thumbnail(i.content) for i in issues[r : r + per_row]],
        )
        for r in range(0, len(issues), per_row)
    ]
    return grid(rows, "Labels that look wrong (given -> suggested)", path)


def sample_grid(dataset: Dataset, path: Path) -> Path:
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(dataset.labels):
        by_class.setdefault(label, []).append(i)
    rows = [
        (label, [thumbnail(dataset.inputs[i]) for i in idx[:SAMPLES_PER_CLASS]])
        for label, idx in sorted(by_class.items())[:MAX_CLASSES_SHOWN]
    ]
    return grid(rows, "Samples per class", path)


def near_duplicate_grid(dataset: Dataset, pairs: list[tuple[int, int]], path: Path) -> Path | None:
    if not pairs:
        return None
    rows = [
        (
            f"{Path(dataset.inputs[a]).name} ~ {Path(dataset.inputs[b]).name}",
            [thumbnail(dataset.inputs[a]), thumbnail(dataset.inputs[b])],
        )
        for a, b in pairs
    ]
    return grid(rows, "Near duplicates (kept, same split)", path)


def draw_all(
    dataset: Dataset, train: Dataset, cfg: RunConfig, out: Path, pairs: list[tuple[int, int]]
) -> dict[str, Path]:
    """The class histogram and every plot the task's kind draws; returns name -> PNG path."""
    drawn = {"classes": class_histogram(dataset, out / "classes.png")}
    return drawn | kind_of(dataset.task).plots(dataset, train, cfg, out, pairs)
