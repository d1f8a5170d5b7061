"""Data containers shared by the data stages: the cleaned dataset, its report, and the quarantine list.

A Dataset keeps references to the raw items (image paths, text strings), not model tensors, so the
same items can be preprocessed with any model version's spec (the promotion gate does this), and
50,000 images cost a list of paths, not gigabytes of arrays.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# How many quarantined items report.json lists inline; quarantine.csv lists every one of them.
MAX_LISTED_SKIPS = 50
LISTED_CLASSES = 10  # classes too small to train named in the error; the data report lists them all


def first_of(items: Sequence[str], limit: int, form: Callable[[str], str] = repr) -> str:
    """The first ``limit`` of ``items``, each as ``form`` writes it, then how many more: messages and reports name
    a few and count the rest.

    >>> first_of(["a", "b", "c"], 2)
    "'a', 'b' and 1 more"
    """
    shown = ", ".join(form(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


# Said by the console and the data report when labels are several labels at once (inspect.combined_labels).
MULTI_LABEL_ADVICE = (
    "labels that are several labels at once ({shown}) are trained as classes of their own: Kiln trains one label "
    "per item. For multi-label data, train one classifier per label (that label or not), or keep one label per item."
)

# Every item read is kept or lands in exactly one of these counts (a test checks the sum).
SKIP_COUNTERS = (
    "duplicates_removed",
    "conflicting_labels",
    "unreadable_skipped",
    "missing_file_skipped",
    "empty_skipped",
    "missing_label_skipped",
    "malformed_skipped",
    "label_issues_excluded",
)


@dataclass(frozen=True)
class Source:
    """Where a task's data is and how to read it: a folder or manifest of images, or a table of texts whose
    columns are named (or indexed) here. report.json's ``source`` and the stored manifest record it."""

    data: str
    text_column: str | None = None
    label_column: str | None = None
    header: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "text_column": self.text_column, "label_column": self.label_column} | {
            "header": self.header
        }


class DataError(ValueError):
    """The data cannot be read or cannot train a classifier; the message names the fix."""


@dataclass(frozen=True)
class Quarantined:
    """One item that was read and not kept: where it is (file or line), which count it is in, and why."""

    item: str
    kind: str
    reason: str


@dataclass
class DataReport:
    """What ingest and cleaning did. Every item read ends up kept or in exactly one skip count."""

    source: str
    rows_read: int = 0
    duplicates_removed: int = 0
    conflicting_labels: int = 0
    unreadable_skipped: int = 0
    missing_file_skipped: int = 0
    empty_skipped: int = 0
    missing_label_skipped: int = 0
    malformed_skipped: int = 0
    label_issues_excluded: int = 0  # kept by cleaning, then left out of fitting by the label audit (exclude)
    hidden_ignored: int = 0
    near_duplicates: int = 0  # kept items that have a near duplicate (grouped, not removed)
    classes: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    quarantine: list[Quarantined] = field(default_factory=list)

    def skip(self, counter: str, item: str, reason: str) -> None:
        assert counter in SKIP_COUNTERS, counter
        setattr(self, counter, getattr(self, counter) + 1)
        self.quarantine.append(Quarantined(item, counter, reason))

    def exclude_label_issue(self, item: str, label: str, reason: str) -> None:
        """An item the label audit leaves out of fitting: quarantined, and no longer counted as kept."""
        self.skip("label_issues_excluded", item, reason)
        self.classes[label] -= 1

    @property
    def rows_kept(self) -> int:
        return sum(self.classes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            **{name: getattr(self, name) for name in SKIP_COUNTERS},
            "hidden_ignored": self.hidden_ignored,
            "near_duplicates": self.near_duplicates,
            "classes": dict(sorted(self.classes.items())),
            **self.details,
            "quarantined": len(self.quarantine),
            "skipped_examples": [vars(q) for q in self.quarantine[:MAX_LISTED_SKIPS]],
        }

    def write_quarantine(self, path: Path) -> Path:
        """Every skipped item with its file or line and the reason, as CSV (header item,kind,reason)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(("item", "kind", "reason"))
            writer.writerows((q.item, q.kind, q.reason) for q in self.quarantine)
        return path


@dataclass
class Dataset:
    """Cleaned items of one task.

    ``groups[i]`` is equal for items that are the same or near-duplicate content: they always share a
    split. ``keys[i]`` is the item's own content key (pixel digest, normalised text), which places it
    in the split (``training.data.split``); it defaults to the group. ``hashes`` holds a 64-bit perceptual
    hash and ``colours`` a colour signature per image (None for texts), kept for the leakage check;
    ``sizes`` and ``modes`` describe each image for the data summary.
    """

    task: str
    inputs: list[Any]  # Path per image, str per text
    labels: list[str]
    groups: list[str]
    report: DataReport
    keys: list[str] = field(default_factory=list)  # per item: the content key its split position hashes
    colour: bool = False  # image task: at least one kept image has real colour
    hashes: np.ndarray | None = None
    colours: np.ndarray | None = None  # (N, 48) uint8 colour signature per image
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) per image
    modes: list[str] = field(default_factory=list)
    # per item: its name in quarantine.csv and label_issues.csv ("line N", or the path inside the data folder)
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert len(self.inputs) == len(self.labels) == len(self.groups)
        self.keys = self.keys or list(self.groups)
        self.report.classes = dict(Counter(self.labels))

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    def subset(self, indices: list[int]) -> Dataset:
        return Dataset(
            task=self.task,
            inputs=[self.inputs[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            groups=[self.groups[i] for i in indices],
            report=DataReport(source=self.report.source),
            keys=[self.keys[i] for i in indices] if self.keys else [],
            colour=self.colour,
            hashes=self.hashes[indices] if self.hashes is not None else None,
            colours=self.colours[indices] if self.colours is not None else None,
            sizes=[self.sizes[i] for i in indices] if self.sizes else [],
            modes=[self.modes[i] for i in indices] if self.modes else [],
            names=[self.names[i] for i in indices] if self.names else [],
        )

    def name(self, i: int) -> str:
        """Item ``i`` as quarantine.csv names it."""
        return self.names[i] if self.names else str(self.inputs[i])


def joined(first: Dataset, second: Dataset) -> Dataset:
    """The items of both, ``first``'s then ``second``'s (training + validation for the shipped model's refit)."""

    def both(a: list[Any], b: list[Any]) -> list[Any]:
        return a + b if a and b else []

    def stacked(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        return np.concatenate([a, b]) if a is not None and b is not None else None

    return Dataset(
        task=first.task,
        inputs=first.inputs + second.inputs,
        labels=first.labels + second.labels,
        groups=first.groups + second.groups,
        report=DataReport(source=first.report.source),
        keys=first.keys + second.keys,
        colour=first.colour or second.colour,
        hashes=stacked(first.hashes, second.hashes),
        colours=stacked(first.colours, second.colours),
        sizes=both(first.sizes, second.sizes),
        modes=both(first.modes, second.modes),
        names=both(first.names, second.names),
    )


def check_trainable(dataset: Dataset, min_per_class: int) -> None:
    """Stop with a message naming the fix when the data cannot train a classifier."""
    counts = Counter(dataset.labels)
    report = dataset.report
    where = report.source
    if not counts:
        raise DataError(
            f"no usable examples in {where} (read {report.rows_read}; {report.unreadable_skipped} unreadable, "
            f"{report.missing_file_skipped} missing, {report.empty_skipped} empty, "
            f"{report.missing_label_skipped} without a label, {report.duplicates_removed} duplicates, "
            f"{report.conflicting_labels} with conflicting labels). Check the path and layout: images as "
            "DIR/<label>/<file> or a path,label manifest, texts as CSV/TSV/JSONL with text and label columns"
        )
    if len(counts) < 2:
        ((label, n),) = counts.items()
        raise DataError(
            f"{where} has only one class ({label!r}, {n} examples); a classifier needs at least two. "
            "Add examples of another class"
        )
    small = {label: n for label, n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])) if n < min_per_class}
    if small:
        listed = first_of([f"{label!r} ({n})" for label, n in small.items()], LISTED_CLASSES, str)
        raise DataError(
            f"{len(small):,} of {len(counts):,} classes have fewer than {min_per_class} examples after cleaning: "
            f"{listed} (the smallest first; the data report lists every class). "
            "Add examples to them, remove them from the data, or lower data.min_examples_per_class"
        )


def check_label_change(previous: tuple[str, ...] | None, current: tuple[str, ...], allow: bool) -> dict[str, Any]:
    """Compare the new data's labels with production's; stop on a change unless ``allow``.

    Returns {"added": [...], "removed": [...]} for the report (empty lists when nothing changed).
    """
    if previous is None:
        return {"added": [], "removed": []}
    added, removed = sorted(set(current) - set(previous)), sorted(set(previous) - set(current))
    if (added or removed) and not allow:
        parts = ([f"new label(s) {added}"] if added else []) + ([f"vanished label(s) {removed}"] if removed else [])
        raise DataError(
            f"the labels differ from the production model's: {' and '.join(parts)}. "
            "Fix the data, or pass --allow-label-change to train a model with the new label set"
        )
    return {"added": added, "removed": removed}
