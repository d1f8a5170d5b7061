"""Decode, validate and de-duplicate raw items into a Dataset, counting everything skipped.

>>> ds = load_dataset("image", Path("data/images"))  # doctest: +SKIP
>>> ds.report.to_dict()["unreadable_skipped"]  # doctest: +SKIP
3
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from serving.preprocess import (
    ImageSpec,
    InvalidImage,
    decode_image,
    image_to_array,
    is_colour,
    pixel_digest,
    standardize,
)
from training.data import DataError, DataReport, Dataset
from training.ingest import find_images, read_table

log = logging.getLogger(__name__)

# Items that look the same at this size land in one split group, even if their files differ.
GROUP_SPEC = ImageSpec(labels=(), height=32, width=32, channels=3)


def clean_images(root: Path) -> Dataset:
    """Image folders -> Dataset. Unreadable files are skipped; byte- or pixel-identical copies removed."""
    report = DataReport(source=str(root))
    files = find_images(root, report)
    seen: dict[str, str] = {}  # byte or pixel digest -> first file that had it
    inputs: list[Path] = []
    labels: list[str] = []
    groups: list[str] = []
    colour = False
    for n, (path, label) in enumerate(files, 1):
        rel = str(path.relative_to(root))
        data = path.read_bytes()
        try:
            image = decode_image(data)
        except InvalidImage as exc:
            report.skip("unreadable_skipped", rel, str(exc))
            continue
        keys = (hashlib.sha256(data).hexdigest(), pixel_digest(image))
        first = next((seen[k] for k in keys if k in seen), None)
        if first is not None:
            report.skip("duplicates_removed", rel, f"same {'bytes' if keys[0] in seen else 'pixels'} as {first}")
            continue
        seen.update(dict.fromkeys(keys, rel))
        colour = colour or is_colour(image)
        small = (image_to_array(image, GROUP_SPEC) * 255).astype(np.uint8)
        inputs.append(path)
        labels.append(label)
        groups.append(hashlib.sha256(small.tobytes()).hexdigest())
        if n % 2000 == 0:
            log.info("checked %d/%d image files", n, len(files))
    dataset = Dataset("image", inputs, labels, groups, report, colour=colour)
    _log_summary(report)
    return dataset


def clean_texts(
    path: Path, text_column: str | None = None, label_column: str | None = None, header: bool = True
) -> Dataset:
    """CSV/TSV -> Dataset. Empty texts and missing labels are skipped; repeated texts removed."""
    report = DataReport(source=str(path))
    table = read_table(path, report, text_column, label_column, header)
    report.details.update({"encoding": table.encoding, "delimiter": table.delimiter, "columns": list(table.columns)})
    seen: dict[str, tuple[int, str]] = {}
    inputs: list[str] = []
    labels: list[str] = []
    groups: list[str] = []
    for line, raw_text, raw_label in table.rows:
        text, label = " ".join(raw_text.split()), raw_label.strip()
        if not standardize(text):
            report.skip("empty_skipped", f"line {line}", "text is empty or only punctuation")
            continue
        if not label:
            report.skip("missing_label_skipped", f"line {line}", "label is empty")
            continue
        if text in seen:
            first_line, first_label = seen[text]
            clash = "" if first_label == label else f" (label {label!r} vs {first_label!r}; first kept)"
            report.skip("duplicates_removed", f"line {line}", f"same text as line {first_line}{clash}")
            continue
        seen[text] = (line, label)
        inputs.append(text)
        labels.append(label)
        # Texts that standardise alike are one model input: keep them in the same split.
        groups.append(standardize(text))
    dataset = Dataset("text", inputs, labels, groups, report)
    _log_summary(report)
    return dataset


def load_dataset(
    task: str,
    path: Path,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
) -> Dataset:
    """Ingest and clean the data for ``task`` ('image' or 'text')."""
    if task == "image":
        return clean_images(Path(path))
    if task == "text":
        return clean_texts(Path(path), text_column, label_column, header)
    raise DataError(f"unknown task {task!r}; expected 'image' or 'text'")


def _log_summary(report: DataReport) -> None:
    r = report.to_dict()
    log.info(
        "data: %d read, %d kept in %d classes; skipped %d duplicates, %d unreadable, %d empty, "
        "%d missing labels, %d malformed",
        r["rows_read"],
        r["rows_kept"],
        len(r["classes"]),
        r["duplicates_removed"],
        r["unreadable_skipped"],
        r["empty_skipped"],
        r["missing_label_skipped"],
        r["malformed_skipped"],
    )
