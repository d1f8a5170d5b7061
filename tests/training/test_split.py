"""Stratified, seeded, group-aware splitting."""

from __future__ import annotations

from collections import Counter

from training.split import stratified_split


def _data():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 6
    groups = [f"g{i // 2}" if i < 20 else f"u{i}" for i in range(len(labels))]  # pairs of identical items
    return labels, groups


def test_split_is_stratified_and_covers_every_item_once() -> None:
    labels, groups = _data()
    s = stratified_split(labels, groups, 0.15, 0.15, seed=1)
    assert sorted(s.train + s.val + s.test) == list(range(len(labels)))
    for part in (s.train, s.val, s.test):
        assert set(Counter(labels[i] for i in part)) == {"a", "b", "c"}  # every class everywhere
    share = Counter(labels[i] for i in s.test)
    assert abs(share["a"] / len(s.test) - 50 / 86) < 0.15


def test_identical_items_never_straddle_splits() -> None:
    labels, groups = _data()
    s = stratified_split(labels, groups, 0.2, 0.2, seed=3)
    where = {}
    for name, part in (("train", s.train), ("val", s.val), ("test", s.test)):
        for i in part:
            assert where.setdefault(groups[i], name) == name


def test_split_is_deterministic_per_seed() -> None:
    labels, groups = _data()
    assert stratified_split(labels, groups, 0.15, 0.15, 7) == stratified_split(labels, groups, 0.15, 0.15, 7)
    assert stratified_split(labels, groups, 0.15, 0.15, 7) != stratified_split(labels, groups, 0.15, 0.15, 8)


def test_tiny_class_keeps_training_examples() -> None:
    s = stratified_split(["a"] * 5 + ["b"] * 2, [str(i) for i in range(7)], 0.15, 0.15, 0)
    assert Counter(["a"] * 5 + ["b"] * 2)["b"] == 2
    assert any(i in s.train for i in (5, 6))
