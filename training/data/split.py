"""Stable, group-aware train/validation/test split, and the leakage check that proves it.

Every item's content key is hashed with the seed to a position in [0, 1); the configured fractions cut
that interval (test, then validation, then train). A group of near copies goes where its most
train-ward member points (the largest position), so:

- adding unrelated data never moves an existing item (its position depends on its own key only);
- a new near copy joining a group can only move that group towards training, so an item that was in
  training never leaves it, and production is never scored on items it trained on;
- large classes land within a few percent of the fractions. Small classes follow the hash, not a
  quota (a class of 20 has a test share with a standard deviation of about 8 points): stability is
  the stronger promise. A class left with no training item is reported, not patched, because any
  patch would move items again as the data grows.

    >>> s = stable_split(["a"] * 10 + ["b"] * 10, [str(i) for i in range(20)], None, 0.2, 0.2, seed=0)
    >>> len(s.train) + len(s.val) + len(s.test)
    20
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from training.config import DataConfig
from training.data.dataset import Dataset
from training.data.duplicates import count_near_reference, text_near_key
from training.data.ingest import listed_path
from training.kinds import kind_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    train: list[int]
    val: list[int]
    test: list[int]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.val), "test": len(self.test)}


def group_position(group: str, seed: int) -> float:
    """Where a group falls in [0, 1): a hash of the seed and the key, independent of everything else."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def stable_split(
    labels: list[str],
    groups: list[str],
    keys: list[str] | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> Split:
    """Indices of each split. ``keys`` (one per item; None: the groups) place each item; a group goes
    where its largest member position points."""
    keys = keys or groups
    position: dict[str, float] = {}
    for g, key in zip(groups, keys, strict=True):
        position[g] = max(position.get(g, 0.0), group_position(key, seed))
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, g in enumerate(groups):
        u = position[g]
        out["test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"].append(i)
    return Split(out["train"], out["val"], out["test"])


def image_leakage(train: Dataset, other: Dataset, cfg: DataConfig) -> int:
    """How many images of ``other`` have an exact or near duplicate under the same label in ``train`` (perceptual
    hash and colour signature), checked independently of the grouping that should make it zero."""
    if train.hashes is None or other.hashes is None or train.colours is None or other.colours is None:
        return 0
    return count_near_reference(
        np.concatenate([train.hashes, other.hashes]),
        np.concatenate([train.colours, other.colours]),
        len(train),
        cfg.image_hash_distance,
        cfg.image_colour_tolerance,
        train.labels + other.labels,
    )


def text_leakage(train: Dataset, other: Dataset, cfg: DataConfig) -> int:
    """How many texts of ``other`` have the same normalised form as a text in ``train``."""
    seen = {text_near_key(t) for t in train.inputs}
    return sum(1 for t in other.inputs if text_near_key(t) in seen)


# A file named "<recording>_<frame number>" (or with "-"): GTSRB's "00012_00029.png", video frames, bursts.
_FRAME_NAME = re.compile(r"^(?P<recording>.+?)[_-]\d+$")
# Names are read as recordings only when every class has at least this many: "digit_0001.png" in every class
# folder is a naming scheme, not one recording per class; and with recordings placed whole, a class of 5 has a
# 0.2% chance (0.3^5) of no training item at the default fractions, one of 3 a 2.7% chance.
MIN_RECORDINGS_PER_CLASS = 5


def recordings(names: list[str], labels: list[str]) -> list[str | None] | None:
    """Per item, the recording its file name says it comes from ("<folder>/<name before the frame number>"), or
    None where the names do not describe recordings: at least half of the items must share a recording with
    another item, and every class must have ``MIN_RECORDINGS_PER_CLASS`` recordings."""
    if not names:
        return None
    keys: list[str | None] = []
    for name in names:
        path = PurePosixPath(listed_path(name))
        found = _FRAME_NAME.match(path.stem)
        keys.append(f"{path.parent}/{found['recording']}" if found else None)
    counts = Counter(k for k in keys if k is not None)
    if 2 * sum(1 for k in keys if k is not None and counts[k] > 1) < len(keys):
        return None
    per_class: dict[str, set[str]] = defaultdict(set)
    for key, label in zip(keys, labels, strict=True):
        per_class[label].update([key] if key is not None else [])
    if min(len(found) for found in per_class.values()) < MIN_RECORDINGS_PER_CLASS:
        return None
    return keys


def with_recordings(dataset: Dataset) -> Dataset:
    """``dataset`` with the frames of one recording in one split group, placed by the recording's name.

    Frames of one recording (30 frames of one traffic sign as the car approaches) are near copies that the
    perceptual hash does not join: split by image, validation sees the signs training learnt from and
    scores 0.99 where new signs score 0.58, so early stopping, every choice made on validation and the
    temperature all read a number that is not there. A group that holds a near copy from another recording
    joins that recording too (its most train-ward member places it, as for near copies).

    Whether the names read as recordings is decided over the whole data set on every run: data added later that
    changes the answer (a class with fewer recordings, files named otherwise) places every item again, the one
    exception to the split's stability."""
    found = recordings(dataset.names, dataset.labels)
    if found is None:
        log.info(
            "data.group_recordings: the file names do not read as recordings (<recording>_<frame>, shared by at "
            "least half of the items, at least %d recordings in every class); split item by item",
            MIN_RECORDINGS_PER_CLASS,
        )
        return dataset
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group, key in zip(dataset.groups, found, strict=True):
        if key is not None:
            parent[root(f"group:{group}")] = root(f"recording:{key}")
    groups = [root(f"group:{g}") for g in dataset.groups]
    keys = [f"recording:{k}" if k is not None else own for k, own in zip(found, dataset.keys, strict=True)]
    count = len({k for k in found if k is not None})
    dataset.report.details["recordings"] = {
        "recordings": count,
        "items": sum(1 for k in found if k is not None),
        "rule": "file names <recording>_<frame>: each recording stays in one split",
    }
    log.info("split groups: %d recordings named by their files (<recording>_<frame>) stay whole", count)
    return dataclasses.replace(dataset, groups=groups, keys=keys)


def split_dataset(dataset: Dataset, cfg: DataConfig) -> tuple[Dataset, Dataset, Dataset]:
    """(train, validation, test) Datasets of ``dataset`` split by ``cfg``; sizes and leakage go into its report.
    With ``cfg.group_recordings``, frames of one recording share a split (``with_recordings``; image files only)."""
    if cfg.group_recordings and dataset.task == "image":
        dataset = with_recordings(dataset)
    s = stable_split(dataset.labels, dataset.groups, dataset.keys, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    train, val, test = dataset.subset(s.train), dataset.subset(s.val), dataset.subset(s.test)
    untrained = sorted(set(dataset.labels) - set(train.labels))
    if untrained:
        log.warning("class(es) %s have no training item after the split; add examples to them", untrained)
    dataset.report.details["classes_without_training_items"] = untrained
    dataset.report.details["split"] = s.sizes()
    dataset.report.details["leakage"] = {
        "test_near_train": kind_of(dataset.task).leakage(train, test, cfg),
        "validation_near_train": kind_of(dataset.task).leakage(train, val, cfg),
    }
    log.info("split: %s; leakage %s", s.sizes(), dataset.report.details["leakage"])
    return train, val, test
