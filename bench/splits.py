"""The quality benchmark's fixed train and test files (DESIGN.md contract 6, the user protocol of issue 17).

Every data set gets one train file (or folder) and one test file (or folder), written once under a cache folder
and reused by every later run:

- where the data set has an official split, its own files: the training file, plus a separate development file
  if there is one (users hand over everything labelled they have), and the official test file;
- otherwise a seeded (42), stratified 80/20 split of the one file or folder. Exact duplicates (the same text once
  standardised as Kiln reads it, or the same image file bytes) form one group that goes to one side, so a test item
  never also sits in the train file.

Texts are written as ``train.csv`` / ``test.csv`` (header ``text,label``, rows in source order); images as
``train/<label>/<file>`` and ``test/<label>/<file>`` symlinks to the source files. ``split.json`` beside them says
how the split was made, from what (a fingerprint of the sources: a changed source gets a new split, an unchanged one
never does), and how many items of each label each side holds. Kiln's own internal split never plays a part here.

This module imports nothing heavy (the tests use it on small generated data).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 42
TEST_FRACTION = 0.2
SPLIT_VERSION = 1  # bump when the way splits are made changes: cached splits of another version are rewritten
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class SplitSource:
    """Where a data set's items come from. ``test`` None: split ``train[0]`` (stratified 80/20); else the
    official split, ``train`` being the training file and any development file, all of which go into train."""

    name: str
    task: str  # "text" or "image"
    train: tuple[Path, ...]
    test: Path | None = None

    @property
    def official(self) -> bool:
        return self.test is not None


@dataclass(frozen=True)
class Split:
    """A written split: the train and test paths to hand over, and split.json's content."""

    name: str
    task: str
    train: Path
    test: Path
    meta: dict[str, Any]


# ---------------------------------------------------------------------------------------------- reading


def read_text_rows(path: Path) -> list[tuple[str, str]]:
    """(text, label) for every data row of a CSV with a header; the ``text`` and ``label`` columns by name, else
    the first two. Rows are kept as they are (empty texts, empty labels, duplicates): that is the user's file."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        ti = header.index("text") if "text" in header else 0
        li = header.index("label") if "label" in header else 1
        rows = []
        for row in reader:
            if not row:
                continue
            text = row[ti] if ti < len(row) else ""
            label = row[li] if li < len(row) else ""
            rows.append((text, label))
    return rows


def image_items(folder: Path) -> list[tuple[Path, str]]:
    """(file, label) for every image file under ``folder/<label>/``, sorted; hidden names are left out."""
    items = []
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or len(rel.parts) < 2:
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            items.append((path, rel.parts[0]))
    return items


def text_key(text: str) -> str:
    """Two texts are the same item when Kiln reads them the same (serving.preprocess.standardize), under the word
    rules the splits were first made with (tokenizer 1), so a later tokenizer does not move items between sides."""
    from serving.preprocess import standardize  # numpy + Pillow only

    return standardize(text, tokenizer=1)


def file_key(path: Path) -> str:
    """Two image files are the same item when their bytes are equal."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ the split


def stratified_split(
    keys: Sequence[str], labels: Sequence[str], seed: int = SEED, test_fraction: float = TEST_FRACTION
) -> list[bool]:
    """Which items go to test: about ``test_fraction`` of each label's items, the groups of equal ``keys`` kept
    whole (a group counts under its most common label). Deterministic: the same items in any order give the same
    answer, whatever ``PYTHONHASHSEED`` is."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    by_label: dict[str, list[str]] = {}
    for key, members in groups.items():
        counts = Counter(labels[i] for i in members)
        label = min(counts, key=lambda lab: (-counts[lab], lab))
        by_label.setdefault(label, []).append(key)
    is_test = [False] * len(keys)
    for label in sorted(by_label):
        order = sorted(by_label[label])
        random.Random(f"{seed}:{label}").shuffle(order)  # str seeds hash with SHA-512: stable across runs
        target = int(test_fraction * sum(len(groups[k]) for k in order) + 0.5)
        taken = 0
        for key in order:
            if taken >= target:
                break
            for i in groups[key]:
                is_test[i] = True
            taken += len(groups[key])
    return is_test


def fingerprint(source: SplitSource) -> str:
    """A digest of what the split is made from: file contents for texts, names and sizes for image folders."""
    h = hashlib.sha256(f"v{SPLIT_VERSION} seed {SEED} test {TEST_FRACTION} {source.task}".encode())
    for role, path in [("train", p) for p in source.train] + ([("test", source.test)] if source.test else []):
        h.update(f"\0{role}\0{Path(path).name}\0".encode())
        if source.task == "text":
            h.update(Path(path).read_bytes())
        else:
            for file, label in image_items(path):
                h.update(f"{label}/{file.name}:{file.stat().st_size}\n".encode())
    return h.hexdigest()


def _counts(labels: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(labels).items()))


def _write_csv(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _link_images(folder: Path, items: Sequence[tuple[Path, str]]) -> None:
    for file, label in items:
        target = folder / label / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():  # two source files of one name in one label folder
            target = target.with_name(f"{file.stem}-{hashlib.sha256(str(file).encode()).hexdigest()[:8]}{file.suffix}")
        os.symlink(Path(file).resolve(), target)


def _items_split(
    source: SplitSource, read: Callable[[Path], list[tuple[Any, str]]], key: Callable[[Any], str], suffix: str = ""
) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]], str, str]:
    """(train, test, method, description) of a source's (item, label) pairs: its official files, or a
    stratified split in which items with the same ``key`` go to one side. ``suffix``: after each source's name
    in the description ("/" for folders)."""
    if source.test is not None:
        train = [item for path in source.train for item in read(path)]
        described = " + ".join(f"{p.name}{suffix}" for p in source.train) + f" / {source.test.name}{suffix}"
        return train, read(source.test), "official", described
    items = read(source.train[0])
    is_test = stratified_split([key(item) for item, _ in items], [label for _, label in items])
    train = [item for item, t in zip(items, is_test, strict=True) if not t]
    test = [item for item, t in zip(items, is_test, strict=True) if t]
    described = f"{source.train[0].name}{suffix}, stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {SEED}"
    return train, test, "stratified", described


def _overlap(train: list[tuple[Any, str]], test: list[tuple[Any, str]], key: Callable[[Any], str]) -> int:
    """Test items whose key (standardised text, file bytes) some train item also has."""
    train_keys = {key(item) for item, _ in train}
    return sum(key(item) in train_keys for item, _ in test)


def _text_split(source: SplitSource, dest: Path) -> dict[str, Any]:
    train, test, method, described = _items_split(source, read_text_rows, text_key)
    _write_csv(dest / "train.csv", train)
    _write_csv(dest / "test.csv", test)
    return _summary(method, described, ("train.csv", "test.csv"), train, test, _overlap(train, test, text_key))


def _image_split(source: SplitSource, dest: Path) -> dict[str, Any]:
    train, test, method, described = _items_split(source, image_items, file_key, "/")
    _link_images(dest / "train", train)
    _link_images(dest / "test", test)
    return _summary(method, described, ("train", "test"), train, test, _overlap(train, test, file_key))


def _summary(
    method: str, described: str, names: tuple[str, str], train: list[Any], test: list[Any], overlap: int
) -> dict[str, Any]:
    """split.json: how the split was made, its files, sizes and labels, and test items also in train."""
    return {
        "method": method,
        "described": described,
        "train": names[0],
        "test": names[1],
        "train_items": len(train),
        "test_items": len(test),
        "train_labels": _counts([lab for _, lab in train]),
        "test_labels": _counts([lab for _, lab in test]),
        "test_in_train": overlap,
    }


def prepare_split(source: SplitSource, cache: Path) -> Split:
    """The data set's split under ``cache/<name>/``: reused when split.json's fingerprint matches the sources,
    else written (into a temporary folder first, then renamed into place: a crash leaves no half split)."""
    dest = Path(cache) / source.name
    meta_path = dest / "split.json"
    digest = fingerprint(source)
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("fingerprint") == digest and meta.get("version") == SPLIT_VERSION:
            return Split(source.name, source.task, dest / meta["train"], dest / meta["test"], meta)
        print(f"{source.name}: its sources changed since {meta_path} was written; writing a new split")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{source.name}.", dir=dest.parent))
    try:
        made = _text_split(source, tmp) if source.task == "text" else _image_split(source, tmp)
        meta = {
            "set": source.name,
            "task": source.task,
            "version": SPLIT_VERSION,
            "seed": SEED,
            "test_fraction": None if source.official else TEST_FRACTION,
            "sources": {"train": [str(p) for p in source.train], "test": str(source.test) if source.test else None},
            "fingerprint": digest,
            **made,
        }
        (tmp / "split.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Split(source.name, source.task, dest / meta["train"], dest / meta["test"], meta)
