"""Decode, validate and de-duplicate raw items into a Dataset, counting and quarantining everything skipped.

Each image is decoded once here (in worker processes for large sets): the decode checks it, and the
same decoded picture gives its byte and pixel digests, perceptual hash, size and mode. Duplicates
follow one rule for both tasks (``training.data.duplicates.resolve_duplicates``).

>>> ds = load_dataset("image", Path("data/images"))  # doctest: +SKIP
>>> ds.report.to_dict()["unreadable_skipped"]  # doctest: +SKIP
3
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.preprocess import InvalidImage, decode_image, is_colour, pixel_digest, standardize
from training.config import DataConfig
from training.data.dataset import DataError, DataReport, Dataset, Source
from training.data.duplicates import (
    Nodes,
    SamePictures,
    colour_signature,
    image_nodes,
    phash64,
    pixel_thumbnail,
    resolve_duplicates,
    text_near_key,
    text_nodes,
)
from training.data.ingest import LabelledFile, find_images, read_table, read_text_folder
from training.kinds import UnknownTask, kind_of

log = logging.getLogger(__name__)

# Below this many files, worker start-up costs more than it saves.
PARALLEL_FROM = 1000
PROGRESS_EVERY = 5000


@dataclass(frozen=True)
class ImageFacts:
    """What one decode of an image file tells the cleaning stage."""

    sha256: str
    pixels: str
    phash: int
    colours: np.ndarray
    thumbnail: np.ndarray  # 16x16 RGB, for the same-picture test
    width: int
    height: int
    mode: str
    colour: bool


def examine_image(path: Path) -> ImageFacts | str:
    """Decode one file and describe it, or return why it cannot be used (runs in worker processes)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or exc})"
    try:
        image = decode_image(data)
        return ImageFacts(
            sha256=hashlib.sha256(data).hexdigest(),
            pixels=pixel_digest(image),
            phash=phash64(image),
            colours=colour_signature(image),
            thumbnail=pixel_thumbnail(image),
            width=image.width,
            height=image.height,
            mode=image.mode,
            colour=is_colour(image),
        )
    except InvalidImage as exc:
        return str(exc)
    except Exception as exc:  # a decodable file in a mode Pillow cannot convert (LAB, CMYK TIFF variants, ...)
        return f"cannot convert the image for training ({type(exc).__name__}: {exc})"


def _examine_all(items: list[LabelledFile], workers: int) -> Iterator[ImageFacts | str]:
    paths = [item.path for item in items]
    if workers <= 1 or len(paths) < PARALLEL_FROM:
        yield from map(examine_image, paths)
        return
    # spawn, not fork: the caller may have TensorFlow's threads running, which fork would copy half-alive.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(examine_image, paths, chunksize=64)


def clean_images(data: Path, cfg: DataConfig | None = None, workers: int | None = None) -> Dataset:
    """Image folders or a manifest -> Dataset. Unreadable files are skipped; duplicates resolved."""
    cfg = cfg or DataConfig()
    report = DataReport(source=str(data))
    items = find_images(data, report)
    workers = workers or min(os.cpu_count() or 1, 8)
    started = time.perf_counter()
    facts: list[ImageFacts] = []
    usable: list[LabelledFile] = []
    for n, (item, result) in enumerate(zip(items, _examine_all(items, workers), strict=True), 1):
        if isinstance(result, str):
            report.skip("unreadable_skipped", item.name, result)
        else:
            facts.append(result)
            usable.append(item)
        if n % PROGRESS_EVERY == 0:
            log.info("checked %d/%d image files (%.0f/s)", n, len(items), n / (time.perf_counter() - started))
    if not usable and report.unreadable_skipped:
        first = next(q for q in report.quarantine if q.kind == "unreadable_skipped")
        raise DataError(
            f"none of the {report.unreadable_skipped} image files in {data} could be decoded "
            f"(first: {first.item}: {first.reason}); check the files"
        )
    hashes = np.array([f.phash for f in facts], dtype=np.uint64)
    colours = np.stack([f.colours for f in facts]) if facts else np.zeros((0, 48), np.uint8)

    def same_as(i: int, j: int) -> str:
        return "same bytes as" if facts[i].sha256 == facts[j].sha256 else "same pixels as"

    def find_nodes(survivors: list[int]) -> Nodes:
        return image_nodes(hashes[survivors], colours[survivors], cfg.image_hash_distance, cfg.image_colour_tolerance)

    resolution = resolve_duplicates(
        [item.name for item in usable],
        [item.label for item in usable],
        [f.pixels for f in facts],
        find_nodes,
        same_as,
        SamePictures(np.stack([f.thumbnail for f in facts]) if facts else np.zeros((0, 768), np.uint8)),
    )
    for i, counter, reason in resolution.dropped:
        report.skip(counter, usable[i].name, reason)
    report.near_duplicates = resolution.near_duplicates
    keep = resolution.keep
    elapsed = time.perf_counter() - started
    report.details["cleaning"] = {"seconds": round(elapsed, 2), "images_per_s": round(len(items) / elapsed, 1)}
    dataset = Dataset(
        "image",
        [usable[i].path for i in keep],
        [usable[i].label for i in keep],
        resolution.groups,
        report,
        keys=[facts[i].pixels for i in keep],
        colour=any(facts[i].colour for i in keep),
        hashes=hashes[keep],
        colours=colours[keep],
        sizes=[(facts[i].width, facts[i].height) for i in keep],
        modes=[facts[i].mode for i in keep],
        names=[usable[i].name for i in keep],
    )
    _log_summary(report)
    return dataset


def clean_texts(
    path: Path,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
) -> Dataset:
    """CSV/TSV/JSONL/Parquet (or a folder of text files, one sub-folder per label) -> Dataset. Empty texts and
    missing labels are skipped; duplicates resolved.

    Texts equal after whitespace collapsing are exact copies; texts equal after ``text_near_key``
    (case, punctuation, digits ignored) are near copies.
    """
    report = DataReport(source=str(path))
    if path.is_dir():
        if text_column is not None or label_column is not None:
            raise DataError(
                f"{path} is a folder: each file is one text and its sub-folder its label, so --text-column and "
                "--label-column do not apply; drop them, or give a table"
            )
        table = read_text_folder(path, report)
    else:
        table = read_table(path, report, text_column, label_column, header)
    report.details["format"] = {
        "format": table.format,
        "encoding": table.encoding,
        "delimiter": table.delimiter,
        "columns": list(table.columns),
    }
    names: list[str] = []
    texts: list[str] = []
    labels: list[str] = []
    for where, raw_text, raw_label in table.rows:
        text, label = " ".join(raw_text.split()), raw_label.strip()
        if not standardize(text):
            report.skip("empty_skipped", where, "text is empty or only punctuation")
        elif not label:
            report.skip("missing_label_skipped", where, "label is empty")
        else:
            names.append(where)
            texts.append(text)
            labels.append(label)
    near = [text_near_key(t) for t in texts]

    def find_nodes(survivors: list[int]) -> Nodes:
        return text_nodes([near[i] for i in survivors])

    resolution = resolve_duplicates(names, labels, texts, find_nodes, lambda i, j: "same text as")
    for i, counter, reason in resolution.dropped:
        report.skip(counter, names[i], reason)
    report.near_duplicates = resolution.near_duplicates
    keep = resolution.keep
    dataset = Dataset(
        "text",
        [texts[i] for i in keep],
        [labels[i] for i in keep],
        resolution.groups,
        report,
        keys=[near[i] for i in keep],
        names=[names[i] for i in keep],
    )
    _log_summary(report)
    return dataset


def load_dataset(
    task: str,
    path: Path,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
    cfg: DataConfig | None = None,
) -> Dataset:
    """Ingest and clean the data for ``task`` (a name in training.kinds.KINDS) as its TaskKind reads it."""
    try:
        kind = kind_of(task)
    except UnknownTask as exc:
        raise DataError(str(exc)) from None
    return kind.load(Path(path), text_column, label_column, header, cfg)


def load_source(task: str, source: Source, cfg: DataConfig | None = None) -> Dataset:
    """``load_dataset`` for a Source: what the flows read."""
    return load_dataset(task, Path(source.data), source.text_column, source.label_column, source.header, cfg)


def _log_summary(report: DataReport) -> None:
    r = report.to_dict()
    log.info(
        "data: %d read, %d kept in %d classes (%d with a near duplicate); skipped %d duplicates, "
        "%d conflicting labels, %d unreadable, %d missing files, %d empty, %d missing labels, %d malformed",
        r["rows_read"],
        r["rows_kept"],
        len(r["classes"]),
        r["near_duplicates"],
        r["duplicates_removed"],
        r["conflicting_labels"],
        r["unreadable_skipped"],
        r["missing_file_skipped"],
        r["empty_skipped"],
        r["missing_label_skipped"],
        r["malformed_skipped"],
    )
