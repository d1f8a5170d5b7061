"""Stratified train/validation/test split with a fixed seed, by group.

Items in one group (the same model input) always land in the same split, so a test score never
rewards memorising a training item. Every class with at least three groups appears in every split.

    >>> s = stratified_split(["a"] * 10 + ["b"] * 10, [str(i) for i in range(20)], 0.2, 0.2, seed=0)
    >>> len(s.train), len(s.val), len(s.test)
    (12, 4, 4)
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass

from training.config import DataConfig
from training.data import Dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    train: list[int]
    val: list[int]
    test: list[int]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.val), "test": len(self.test)}


def _counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(validation, test) group counts for a class of n groups; training keeps at least one."""
    if n < 3:
        return 0, n - 1
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    while n - n_test - n_val < 1:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def stratified_split(
    labels: list[str], groups: list[str], val_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Indices of each split. A group takes the label of its first item."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_class: dict[str, list[str]] = defaultdict(list)
    for g, idx in members.items():
        by_class[labels[idx[0]]].append(g)
    rng = random.Random(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for label in sorted(by_class):
        class_groups = sorted(by_class[label])
        rng.shuffle(class_groups)
        n_val, n_test = _counts(len(class_groups), val_fraction, test_fraction)
        for k, g in enumerate(class_groups):
            target = test if k < n_test else val if k < n_test + n_val else train
            target.extend(members[g])
    return Split(sorted(train), sorted(val), sorted(test))


def split_dataset(dataset: Dataset, cfg: DataConfig) -> tuple[Dataset, Dataset, Dataset]:
    """(train, validation, test) Datasets of ``dataset`` split by ``cfg``; sizes go into its report."""
    s = stratified_split(dataset.labels, dataset.groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    dataset.report.details["split"] = s.sizes()
    log.info("split: %s", s.sizes())
    return dataset.subset(s.train), dataset.subset(s.val), dataset.subset(s.test)
