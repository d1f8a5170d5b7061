"""Stable, group-aware splitting: growth never moves items, groups never straddle, classes are stratified."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import make_image_folder, make_texts, write_csv
from training.config import DataConfig
from training.data.clean import clean_images, clean_texts
from training.data.split import split_dataset, stable_split


def _data(n_per_class: int = 300, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    labels = [label for label in ("a", "b", "c") for _ in range(n_per_class)]
    groups = [f"{label}-{rng.getrandbits(64):x}" for label in labels]
    return labels, groups


def _where(labels: list[str], groups: list[str], seed: int = 7) -> dict[str, str]:
    s = stable_split(labels, groups, None, 0.15, 0.15, seed)
    return {groups[i]: name for name, part in (("train", s.train), ("val", s.val), ("test", s.test)) for i in part}


def test_split_covers_every_item_once_and_is_stratified() -> None:
    labels, groups = _data()
    s = stable_split(labels, groups, None, 0.15, 0.15, seed=1)
    assert sorted(s.train + s.val + s.test) == list(range(len(labels)))
    for label in ("a", "b", "c"):
        total = labels.count(label)
        for part, fraction in ((s.test, 0.15), (s.val, 0.15), (s.train, 0.70)):
            share = sum(1 for i in part if labels[i] == label) / total
            assert abs(share - fraction) < 0.05, (label, share, fraction)


def test_adding_20_percent_new_items_never_moves_an_existing_item() -> None:
    labels, groups = _data(300)
    before = _where(labels, groups)
    new_labels, new_groups = _data(60, seed=99)  # 20% more, different keys
    # new items arrive interleaved, so positions in the list change too
    merged = list(zip(labels + new_labels, groups + new_groups, strict=True))
    random.Random(3).shuffle(merged)
    after = _where([m[0] for m in merged], [m[1] for m in merged])
    assert all(after[g] == where for g, where in before.items())
    assert len(after) == len(before) + 180


def test_identical_groups_never_straddle_splits() -> None:
    labels = ["a"] * 100 + ["b"] * 100
    groups = [f"g{i // 4}" for i in range(200)]  # groups of four
    s = stable_split(labels, groups, None, 0.2, 0.2, seed=3)
    where: dict[str, str] = {}
    for name, part in (("train", s.train), ("val", s.val), ("test", s.test)):
        for i in part:
            assert where.setdefault(groups[i], name) == name


def test_split_depends_on_the_seed() -> None:
    labels, groups = _data(50)
    assert stable_split(labels, groups, None, 0.15, 0.15, 7) == stable_split(labels, groups, None, 0.15, 0.15, 7)
    assert stable_split(labels, groups, None, 0.15, 0.15, 7) != stable_split(labels, groups, None, 0.15, 0.15, 8)


def test_a_new_near_copy_never_moves_a_training_item_out_of_training() -> None:
    """Groups go where their most train-ward member points, so growth can only pull a group into training."""
    rng = random.Random(11)
    keys = [f"item-{rng.getrandbits(64):x}" for _ in range(600)]
    groups = [f"g{i // 3}" for i in range(600)]  # groups of three near copies
    labels = ["a"] * 600
    before = stable_split(labels, groups, keys, 0.15, 0.15, 4)
    # every group gains a near copy (a new key); the old items keep their keys
    grown_keys = keys + [f"new-{rng.getrandbits(64):x}" for _ in range(200)]
    grown_groups = groups + [f"g{g}" for g in range(200)]
    after = stable_split(labels + ["a"] * 200, grown_groups, grown_keys, 0.15, 0.15, 4)
    assert set(before.train) <= set(after.train)  # nothing left training
    moved = set(before.test) - set(after.test)
    assert moved and moved <= set(after.train) | set(after.val)  # some groups were pulled train-ward
    assert set(after.val) - set(before.val) <= set(range(600, 800)) | set(before.test)


def test_a_class_without_training_items_is_reported(tmp_path: Path) -> None:
    rows = make_texts(20) + [("unicorn sighting reported", "rare")]
    ds = clean_texts(write_csv(tmp_path / "t.csv", rows))
    # with test+validation at 0.98 almost everything hashes out of training
    split_dataset(ds, DataConfig(val_fraction=0.49, test_fraction=0.49, seed=1))
    missing = ds.report.details["classes_without_training_items"]
    assert "rare" in missing


def test_planted_near_duplicate_images_never_leak(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "images", per_class=40)
    rng = random.Random(5)
    originals = sorted(root.glob("*/*.png"))
    for k, path in enumerate(rng.sample(originals, 20)):
        image = Image.open(path).convert("RGB")
        bigger = image.resize((image.width * 3, image.height * 3))
        bigger.save(path.parent / f"copy_{k}.jpg", quality=70)  # re-encoded, resized, RGB
    ds = clean_images(root)
    assert ds.report.near_duplicates >= 40  # each copy and its original
    assert ds.report.duplicates_removed == 0 and ds.report.conflicting_labels == 0
    train, val, test = split_dataset(ds, DataConfig(val_fraction=0.25, test_fraction=0.25))
    assert ds.report.details["leakage"] == {"test_near_train": 0, "validation_near_train": 0}
    train_groups = set(train.groups)
    assert not train_groups & set(test.groups) and not train_groups & set(val.groups)


def test_leakage_check_counts_planted_leaks(tmp_path: Path) -> None:
    """The check is independent of the grouping: force a near-duplicate pair apart and it is counted."""
    from training.data.split import text_leakage as leakage

    rows = make_texts(20) + [("ZEBRA crossing closed, 12!", "sports"), ("zebra crossing closed 99", "sports")]
    ds = clean_texts(write_csv(tmp_path / "t.csv", rows))
    a, b = len(ds) - 2, len(ds) - 1
    assert ds.groups[a] == ds.groups[b]
    assert leakage(ds.subset([a]), ds.subset([b]), DataConfig()) == 1
    assert leakage(ds.subset([a]), ds.subset([0]), DataConfig()) == (ds.groups[0] == ds.groups[a])


@pytest.mark.parametrize("fractions", [(0.1, 0.1), (0.2, 0.3)])
def test_texts_split_with_configured_fractions(tmp_path: Path, fractions: tuple[float, float]) -> None:
    ds = clean_texts(write_csv(tmp_path / "t.csv", make_texts(100)))
    train, val, test = split_dataset(ds, DataConfig(val_fraction=fractions[0], test_fraction=fractions[1]))
    assert len(train) + len(val) + len(test) == len(ds)
    assert abs(len(test) / len(ds) - fractions[1]) < 0.08


def _named(names: list[str], groups: list[str] | None = None):  # type: ignore[no-untyped-def]
    from training.data.dataset import DataReport, Dataset

    labels = [name.split("/")[0] for name in names]
    return Dataset(
        "image",
        [Path(name) for name in names],
        labels,
        groups or [f"item{i}" for i in range(len(names))],
        DataReport(source="frames"),
        names=names,
    )


def test_frames_of_one_recording_stay_in_one_split_placed_by_the_recording() -> None:
    names = [f"{c}/{track:05d}_{frame:05d}.png" for c in "ab" for track in range(12) for frame in range(30)]
    groups = [f"item{i}" for i in range(len(names))]
    groups[names.index("a/00003_00007.png")] = groups[names.index("a/00004_00000.png")]  # a near copy across two
    dataset = _named(names, groups)
    train, val, test = split_dataset(dataset, DataConfig(seed=5, group_recordings=True))

    where = {name: part for part, ds in (("train", train), ("val", val), ("test", test)) for name in ds.names}
    by_track: dict[str, set[str]] = {}
    for name in names:
        by_track.setdefault(name.rsplit("_", 1)[0], set()).add(where[name])
    assert all(len(parts) == 1 for parts in by_track.values())  # no recording straddles splits
    assert by_track["a/00003"] == by_track["a/00004"]  # joined through the near copy
    assert len(val) and len(test)  # placed by the recording, not by the most train-ward of 30 frames
    assert dataset.report.details["recordings"]["recordings"] == 24
    # a new frame of a recording lands where its recording is
    for frame in ("b/00002_00030.png", "a/00007_00030.png"):
        parts = split_dataset(_named([*names, frame]), DataConfig(seed=5, group_recordings=True))
        now = next(part for part, ds in zip(("train", "val", "test"), parts, strict=True) if frame in ds.names)
        assert now == where[frame.replace("_00030", "_00000")]
    on = _named(names)
    assert split_dataset(on, DataConfig(seed=5))[0].names == train.names  # on by default
    off = _named(names)
    split_dataset(off, DataConfig(seed=5, group_recordings=False))
    assert "recordings" not in off.report.details
    from training.data.dataset import DataReport, Dataset

    labels = [name.split("/")[0] for name in names]  # a table's rows are not files: never read as recordings
    texts = Dataset("text", list(names), labels, list(names), DataReport(source="rows"), names=names)
    split_dataset(texts, DataConfig(seed=5))
    assert "recordings" not in texts.report.details


def test_a_naming_scheme_is_not_read_as_recordings_and_manifests_are_read_by_their_paths() -> None:
    from training.data.split import recordings

    listed = [
        f"line {i + 2}: {c}/{t:03d}-{f:02d}.png"
        for i, (c, t, f) in enumerate((c, t, f) for c in "ab" for t in range(6) for f in range(4))
    ]
    found = recordings(listed, [n.split(": ")[1][0] for n in listed])
    assert found is not None and found[0] == "a/000" and len(set(found)) == 12
    rows = [name.replace("line ", "row ") for name in listed]  # a Parquet manifest names its rows so
    assert recordings(rows, [n.split(": ")[1][0] for n in rows]) == found

    scheme = [f"{c}/{c}_{i:04d}.png" for c in ("digit", "letter") for i in range(50)]  # one "recording" per class
    assert recordings(scheme, [n.split("/")[0] for n in scheme]) is None
    photos = [f"{c}/{i}_{h:x}.jpg" for c in ("rose", "tulip") for i, h in enumerate(range(1000, 1050))]
    assert recordings(photos, [n.split("/")[0] for n in photos]) is None
    plain = _named([f"{c}/{i:05d}.png" for c in "ab" for i in range(40)])
    train, val, test = split_dataset(plain, DataConfig(group_recordings=True))
    assert "recordings" not in plain.report.details and len(train) + len(val) + len(test) == 80
