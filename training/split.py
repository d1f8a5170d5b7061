"""Stable, group-aware train/validation/test split, and the leakage check that proves it.

An item's split is a function of its group key and the seed only: the key is hashed to a number in
[0, 1) and the configured fractions cut that interval. Adding data therefore never moves an existing
item to another split, and items in one group (exact or near duplicates) always share a split. Large
classes land within a few percent of the fractions (the hash is uniform); a class whose groups all
hash outside training gets its lowest-ranked group moved into training, so every class can be learnt.

    >>> s = stable_split(["a"] * 10 + ["b"] * 10, [str(i) for i in range(20)], 0.2, 0.2, seed=0)
    >>> len(s.train) + len(s.val) + len(s.test)
    20
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from training.config import DataConfig
from training.data import Dataset
from training.duplicates import count_crossing, near_image_pairs, text_near_key

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


def stable_split(labels: list[str], groups: list[str], val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Indices of each split. Positions below test_fraction go to test, then validation, then train."""
    position = {g: group_position(g, seed) for g in set(groups)}
    parts: dict[str, str] = {}
    for g, u in position.items():
        parts[g] = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
    class_groups: dict[str, set[str]] = defaultdict(set)
    for label, g in zip(labels, groups, strict=True):
        class_groups[label].add(g)
    for label, members in sorted(class_groups.items()):
        if not any(parts[g] == "train" for g in members):
            rescued = max(members, key=lambda g: position[g])
            parts[rescued] = "train"
            log.info("class %r has no training item by hash; its group with the highest position trains", label)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, g in enumerate(groups):
        out[parts[g]].append(i)
    return Split(out["train"], out["val"], out["test"])


def leakage(train: Dataset, other: Dataset, cfg: DataConfig) -> int:
    """How many items of ``other`` have an exact or near duplicate in ``train``.

    Checked independently of the grouping that should make it zero: images by perceptual hash and
    colour signature, texts by their normalised form.
    """
    if train.task == "image":
        if train.hashes is None or other.hashes is None or train.colours is None or other.colours is None:
            return 0
        pairs = near_image_pairs(
            np.concatenate([train.hashes, other.hashes]),
            np.concatenate([train.colours, other.colours]),
            max(cfg.image_hash_distance, 0),
            cfg.image_colour_tolerance,
        )
        return count_crossing(pairs, len(train))
    seen = {text_near_key(t) for t in train.inputs}
    return sum(1 for t in other.inputs if text_near_key(t) in seen)


def split_dataset(dataset: Dataset, cfg: DataConfig) -> tuple[Dataset, Dataset, Dataset]:
    """(train, validation, test) Datasets of ``dataset`` split by ``cfg``; sizes and leakage go into its report."""
    s = stable_split(dataset.labels, dataset.groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    train, val, test = dataset.subset(s.train), dataset.subset(s.val), dataset.subset(s.test)
    dataset.report.details["split"] = s.sizes()
    dataset.report.details["leakage"] = {
        "test_near_train": leakage(train, test, cfg),
        "validation_near_train": leakage(train, val, cfg),
    }
    log.info("split: %s; leakage %s", s.sizes(), dataset.report.details["leakage"])
    return train, val, test
