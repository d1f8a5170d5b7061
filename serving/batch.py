"""Batch prediction: score streams of items through the served model's own path (the preprocessing and ONNX Runtime
session the HTTP service uses), one output row per item, and write the rows as CSV or JSONL.

An item that cannot be scored (an unreadable image, a text with no words, a broken row) becomes a row with its
error and no label; it never stops the job. Scores are the service's, to the same six decimals.

    >>> rows = score_items(classifier, [Item("line 2", "the parcel was late")], top_k=2)  # doctest: +SKIP
    >>> rows[0]["label"], rows[0]["top_k"]  # doctest: +SKIP
    ('complaint', [{'label': 'complaint', 'score': 0.91}, {'label': 'praise', 'score': 0.06}])
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from serving.preprocess import MAX_IMAGE_PIXELS, ImageSpec, InvalidImage, blank_texts, preprocess_image_bytes
from serving.runtime import Classifier

OUTPUT_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
CSV_COLUMNS = ("item", "label", "score", "abstained", "top_k", "error")
MAX_IMAGE_FILE_BYTES = 256 << 20  # one file larger than this is an error row, not a read that fills memory


class Item(NamedTuple):
    """One thing to score: its name (as quarantine.csv names it), the image path or the text, and an error when
    the item is already known to be unusable (a broken row, a missing file)."""

    name: str
    payload: str
    error: str | None = None


class Shard:
    """Items passed to a Prefect task as one opaque value: Prefect walks lists, tuples and dataclasses in task
    parameters looking for futures (0.1 s per 8,192 items), and its Dask runner hands a ``quote()`` over unopened."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Item]):
        self.items = items


def output_format(path: Path) -> str:
    """'csv' or 'jsonl' from the output file's suffix; ValueError names the choices."""
    fmt = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {path}: the suffix must be one of {', '.join(OUTPUT_SUFFIXES)} (CSV or JSON lines)")
    return fmt


def score_items(
    classifier: Classifier,
    items: Sequence[Item],
    top_k: int = 1,
    batch_size: int = 64,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> list[dict[str, Any]]:
    """One row per item, in order: {item, label, score, abstained, top_k, error}."""
    rows: list[dict[str, Any]] = [{} for _ in items]
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        if isinstance(classifier.spec, ImageSpec):
            inputs, errors = _images(classifier, chunk, max_pixels)
        else:
            inputs, errors = _texts(classifier, chunk)
        good = [i for i, e in enumerate(errors) if e is None]
        answers = iter(_answers(classifier, inputs[good], top_k)) if good else iter(())
        for offset, (item, err) in enumerate(zip(chunk, errors, strict=True)):
            rows[start + offset] = _row(item.name, None if err else next(answers), err)
    return rows


def _images(classifier: Classifier, items: Sequence[Item], max_pixels: int) -> tuple[np.ndarray, list[str | None]]:
    """Decoded inputs (a zero tensor where an item failed) and each item's error."""
    spec = classifier.spec
    assert isinstance(spec, ImageSpec)
    batch = np.zeros((len(items), spec.height, spec.width, spec.channels), dtype=np.float32)
    errors: list[str | None] = []
    for i, item in enumerate(items):
        error = item.error
        if error is None:
            try:
                batch[i] = preprocess_image_bytes(_read(Path(item.payload)), spec, max_pixels)
            except (OSError, InvalidImage) as exc:
                error = str(exc) or type(exc).__name__
        errors.append(error)
    return batch, errors


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_IMAGE_FILE_BYTES:
        raise InvalidImage(f"the file is {size:,} bytes; images over {MAX_IMAGE_FILE_BYTES:,} bytes are not read")
    return path.read_bytes()


def _texts(classifier: Classifier, items: Sequence[Item]) -> tuple[np.ndarray, list[str | None]]:
    batch = classifier.prepare_texts([item.payload for item in items])
    blank = set(blank_texts(batch, classifier.spec).tolist())  # type: ignore[arg-type]
    errors = [
        item.error or ("the text has no words (empty, whitespace or punctuation only)" if i in blank else None)
        for i, item in enumerate(items)
    ]
    return batch, errors


def _answers(classifier: Classifier, batch: np.ndarray, top_k: int) -> list[dict[str, Any]]:
    """The service's answers for a prepared batch (its label, score and abstention), each with its top ``top_k``."""
    return classifier.top(classifier.predict(batch), top_k)


def _row(name: str, answer: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    if answer is None:
        return {"item": name, "label": None, "score": None, "abstained": False, "top_k": [], "error": error}
    return {"item": name, **answer, "error": None}


class RowWriter:
    """Writes rows to a temporary file beside ``path`` and renames it into place on ``close``: a reader (or the
    next scheduled run) never sees half a file. Counts labels, abstentions and errors as it goes."""

    def __init__(self, path: Path):
        self.path = path
        self.format = output_format(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._fh = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()/abort()
        self._csv = csv.writer(self._fh) if self.format == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)
        self.labels: Counter[str] = Counter()
        self.errors = 0
        self.abstained = 0
        self.rows = 0

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._count(row)
            if self._csv is not None:
                top = json.dumps([[t["label"], t["score"]] for t in row["top_k"]], ensure_ascii=False)
                score = "" if row["score"] is None else row["score"]
                self._csv.writerow([row["item"], row["label"] or "", score, row["abstained"], top, row["error"] or ""])
            else:
                self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _count(self, row: dict[str, Any]) -> None:
        self.rows += 1
        if row["error"]:
            self.errors += 1
        elif row["abstained"]:
            self.abstained += 1
        else:
            self.labels[row["label"]] += 1

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.path),
            "items": self.rows,
            "scored": self.rows - self.errors,
            "errors": self.errors,
            "abstained": self.abstained,
            "labels": dict(self.labels.most_common()),
        }
