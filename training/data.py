"""Data containers shared by the data stages: the cleaned dataset and its report.

A Dataset keeps references to the raw items (image paths, text strings), not model tensors, so the
same items can be preprocessed with any model version's spec (the promotion gate does this).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# How many skipped items the report lists by name; the counts always cover all of them.
MAX_LISTED_SKIPS = 50


class DataError(ValueError):
    """The data cannot be read or cannot train a classifier; the message names the fix."""


@dataclass
class DataReport:
    """What ingest and cleaning did. Every item read ends up kept or in exactly one skip count."""

    source: str
    rows_read: int = 0
    duplicates_removed: int = 0
    unreadable_skipped: int = 0
    empty_skipped: int = 0
    missing_label_skipped: int = 0
    malformed_skipped: int = 0
    hidden_ignored: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, counter: str, item: str, reason: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"item": item, "reason": reason})

    @property
    def rows_kept(self) -> int:
        return sum(self.classes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "duplicates_removed": self.duplicates_removed,
            "unreadable_skipped": self.unreadable_skipped,
            "empty_skipped": self.empty_skipped,
            "missing_label_skipped": self.missing_label_skipped,
            "malformed_skipped": self.malformed_skipped,
            "hidden_ignored": self.hidden_ignored,
            "classes": dict(sorted(self.classes.items())),
            **self.details,
            "skipped_examples": self.skipped,
        }


@dataclass
class Dataset:
    """Cleaned items of one task. ``groups[i]`` is equal for items the model would see as identical."""

    task: str
    inputs: list[Any]  # Path per image, str per text
    labels: list[str]
    groups: list[str]
    report: DataReport
    colour: bool = False  # image task: at least one kept image has real colour

    def __post_init__(self) -> None:
        assert len(self.inputs) == len(self.labels) == len(self.groups)
        self.report.classes = dict(Counter(self.labels))

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
            colour=self.colour,
        )


def check_trainable(dataset: Dataset, min_per_class: int) -> None:
    """Stop with a message naming the fix when the data cannot train a classifier."""
    counts = Counter(dataset.labels)
    where = dataset.report.source
    if not counts:
        raise DataError(
            f"no usable examples in {where} (read {dataset.report.rows_read}; "
            f"{dataset.report.unreadable_skipped} unreadable, {dataset.report.empty_skipped} empty, "
            f"{dataset.report.duplicates_removed} duplicates). Check the path and layout: images as "
            "DIR/<label>/<file>, texts as a CSV/TSV with text and label columns"
        )
    if len(counts) < 2:
        ((label, n),) = counts.items()
        raise DataError(
            f"{where} has only one class ({label!r}, {n} examples); a classifier needs at least two. "
            "Add examples of another class"
        )
    small = {label: n for label, n in sorted(counts.items()) if n < min_per_class}
    if small:
        listed = ", ".join(f"{label!r} ({n})" for label, n in small.items())
        raise DataError(
            f"class(es) with fewer than {min_per_class} examples after cleaning: {listed}. "
            "Add examples to them, remove them from the data, or lower data.min_examples_per_class"
        )
