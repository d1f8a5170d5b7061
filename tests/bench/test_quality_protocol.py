"""The quality benchmark's user protocol without training: the split writer (deterministic, stratified, no test item
in train), McNemar's exact test, the win/tie/loss bar, scoring a registered ONNX model on a test file, the peer,
and the measured subprocess."""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

import bench.quality as quality
from bench.protocol import bar_points, compare, discordant, mcnemar_p, verdict
from bench.splits import (
    SplitSource,
    file_key,
    image_items,
    prepare_split,
    read_text_rows,
    stratified_split,
    text_key,
)

# ------------------------------------------------------------------------------------------------ the data


def _texts(seed: int = 3) -> list[tuple[str, str]]:
    """Three imbalanced classes with exact and near-exact duplicates (case, punctuation) and one conflict."""
    rng = random.Random(seed)
    rows = []
    for label, n in (("pos", 50), ("neg", 30), ("meh", 11)):
        for i in range(n):
            rows.append((f"{label} review number {i} {rng.choice(['fine', 'ok', 'so so'])}", label))
    rows += [("Pos review number 1 fine!", "pos"), ("pos REVIEW number 1 fine", "pos")]  # same text once standardised
    rows += [("the same words", "pos"), ("the same words", "neg"), ("", "pos"), ("no label", "")]
    rng.shuffle(rows)
    return rows


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _png(value: int, size: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), color=value).save(buf, format="PNG")
    return buf.getvalue()


def _image_folder(root: Path) -> Path:
    """Images in three label folders (20, 12, 8 files); some files are byte-identical copies of another."""
    value = 0
    for label, n in (("cat", 20), ("dog", 12), ("owl", 8)):
        for i in range(n):
            (root / label).mkdir(parents=True, exist_ok=True)
            (root / label / f"{i}.png").write_bytes(_png(value))
            value += 3
    (root / "cat" / "copy-of-0.png").write_bytes((root / "cat" / "0.png").read_bytes())
    (root / "cat" / "copy-of-1.png").write_bytes((root / "cat" / "1.png").read_bytes())
    (root / "dog" / "same-as-a-cat.png").write_bytes((root / "cat" / "2.png").read_bytes())
    (root / ".hidden.png").write_bytes(_png(1))
    return root


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ split writer


def test_stratified_split_keeps_groups_whole_and_ignores_input_order() -> None:
    rows = _texts()
    keys, labels = [text_key(t) for t, _ in rows], [lab for _, lab in rows]
    is_test = stratified_split(keys, labels)
    test_keys = {k for k, t in zip(keys, is_test, strict=True) if t}
    train_keys = {k for k, t in zip(keys, is_test, strict=True) if not t}
    assert not test_keys & train_keys  # a duplicate never sits on both sides
    # the same items in another order: the same items go to test
    order = list(range(len(rows)))
    random.Random(9).shuffle(order)
    again = stratified_split([keys[i] for i in order], [labels[i] for i in order])
    assert {rows[i] for i, t in zip(order, again, strict=True) if t} == {
        r for r, t in zip(rows, is_test, strict=True) if t
    }
    # another seed: another split
    assert stratified_split(keys, labels, seed=7) != is_test


def test_text_split_is_deterministic_stratified_and_never_leaks(tmp_path: Path) -> None:
    rows = _texts()
    source = SplitSource("toy", "text", (_write_csv(tmp_path / "toy" / "data.csv", rows),))
    split = prepare_split(source, tmp_path / "cache")
    train, test = read_text_rows(split.train), read_text_rows(split.test)
    assert split.train == tmp_path / "cache" / "toy" / "train.csv" and split.test.name == "test.csv"
    # every row once, dirt included (Kiln gets the user's file as it is)
    assert Counter(train + test) == Counter(rows)
    # no test item in train, even written differently
    assert not {text_key(t) for t, _ in test} & {text_key(t) for t, _ in train}
    assert split.meta["test_in_train"] == 0
    # stratified: about 20% of each class's items
    for label, n in (("pos", 50), ("neg", 30), ("meh", 11)):
        in_test = sum(lab == label for _, lab in test)
        assert abs(in_test - 0.2 * n) <= 2, (label, in_test)
    meta = json.loads((tmp_path / "cache" / "toy" / "split.json").read_text())
    assert meta["method"] == "stratified" and meta["seed"] == 42 and meta["test_items"] == len(test)
    # written once: a second call reuses the files; a fresh cache gets the very same bytes
    mtime = split.train.stat().st_mtime_ns
    assert prepare_split(source, tmp_path / "cache").meta == split.meta
    assert split.train.stat().st_mtime_ns == mtime
    fresh = prepare_split(source, tmp_path / "other")
    assert fresh.train.read_bytes() == split.train.read_bytes() and fresh.test.read_bytes() == split.test.read_bytes()
    # a changed source is split anew
    _write_csv(tmp_path / "toy" / "data.csv", [*rows, ("one more pos text", "pos")])
    assert prepare_split(source, tmp_path / "cache").meta["fingerprint"] != split.meta["fingerprint"]


def test_official_text_split_puts_the_dev_file_into_train(tmp_path: Path) -> None:
    train_rows = [(f"train text {i}", "a" if i % 2 else "b") for i in range(10)]
    dev_rows = [("dev text one", "a"), ("dev text two", "b")]
    test_rows = [("test text", "a"), ("Train text 3!", "a")]  # the second one is also in train
    folder = tmp_path / "set"
    source = SplitSource(
        "set",
        "text",
        (_write_csv(folder / "train.csv", train_rows), _write_csv(folder / "dev.csv", dev_rows)),
        _write_csv(folder / "test.csv", test_rows),
    )
    split = prepare_split(source, tmp_path / "cache")
    assert read_text_rows(split.train) == train_rows + dev_rows
    assert read_text_rows(split.test) == test_rows
    assert split.meta["method"] == "official" and split.meta["described"] == "train.csv + dev.csv / test.csv"
    assert split.meta["test_in_train"] == 1  # reported, not hidden: the official split is the data's own


def test_image_split_is_deterministic_stratified_and_never_leaks(tmp_path: Path) -> None:
    source_dir = _image_folder(tmp_path / "images")
    source = SplitSource("pics", "image", (source_dir,))
    split = prepare_split(source, tmp_path / "cache")
    train, test = image_items(split.train), image_items(split.test)
    assert len(train) + len(test) == len(image_items(source_dir)) == 43  # the hidden file is no item
    assert all(f.is_symlink() and f.resolve().parent.parent == source_dir.resolve() for f, _ in train + test)
    assert all(f.resolve().parent.name == label for f, label in train + test)
    assert not {file_key(f) for f, _ in test} & {file_key(f) for f, _ in train}  # copies stay on one side
    counts = Counter(label for _, label in test)
    assert abs(counts["cat"] - 22 * 0.2) <= 2 and abs(counts["dog"] - 13 * 0.2) <= 2 and counts["owl"] in (1, 2, 3)
    assert split.meta["test_in_train"] == 0 and split.meta["train"] == "train"
    fresh = prepare_split(source, tmp_path / "other")
    assert _tree(fresh.train) == _tree(split.train) and _tree(fresh.test) == _tree(split.test)


def test_official_image_split_counts_test_files_also_in_train(tmp_path: Path) -> None:
    train_dir, test_dir = tmp_path / "set" / "train", tmp_path / "set" / "test"
    for folder, values in ((train_dir, (0, 10, 20)), (test_dir, (30, 20))):
        for v in values:
            (folder / "x").mkdir(parents=True, exist_ok=True)
            (folder / "x" / f"{v}.png").write_bytes(_png(v))
    split = prepare_split(SplitSource("set", "image", (train_dir,), test_dir), tmp_path / "cache")
    assert len(image_items(split.train)) == 3 and len(image_items(split.test)) == 2
    assert split.meta["method"] == "official" and split.meta["test_in_train"] == 1


# ------------------------------------------------------------------------------------------------ judging


def test_mcnemar_exact_p_on_known_cases() -> None:
    # b = 10, c = 2: 2 * P(X <= 2 | n = 12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_p(10, 2) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_p(2, 10) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(5, 5) == pytest.approx(1.0)
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64)
    kiln = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    peer = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    assert discordant(kiln, peer) == (10, 2)
    found = compare(kiln, peer)
    assert found["difference_points"] == 40.0 and found["verdict"] == "win"
    assert found["mcnemar_p"] == pytest.approx(2 * 79 / 4096)
    with pytest.raises(ValueError, match="same items"):
        discordant([True], [True, False])


@pytest.mark.parametrize(
    ("kiln", "peer", "expected"),
    [
        (0.905, 0.900, "win"),  # exactly 0.5 points ahead (40% of the peer's 10-point error is 4)
        (0.904, 0.900, "tie"),  # 0.4 points: under the bar
        (0.994, 0.990, "win"),  # peer error 1 point: 40% of it (0.4) is the smaller bar
        (0.993, 0.990, "tie"),
        (0.895, 0.900, "loss"),  # the reverse: 0.5 points behind
        (0.896, 0.900, "tie"),
        (0.989, 0.990, "tie"),  # behind by 0.1; Kiln's error 1.1 -> bar 0.44
        (0.990, 0.9945, "loss"),  # behind by 0.45 >= 40% of Kiln's 1-point error (0.4)
        (0.988, 0.9915, "tie"),  # behind by 0.35 < 40% of Kiln's 1.2-point error (the loss bar is Kiln's)
        (1.0, 1.0, "tie"),  # a perfect peer cannot be beaten, only tied
        (0.999, 1.0, "loss"),  # behind a perfect peer by 0.1 >= 40% of 0.1
        (0.5, 0.5, "tie"),
    ],
)
def test_win_tie_loss_bar(kiln: float, peer: float, expected: str) -> None:
    assert verdict(kiln, peer) == expected


def test_bar_is_the_smaller_of_half_a_point_and_forty_percent_of_the_error() -> None:
    assert bar_points(0.80) == 0.5
    assert bar_points(0.99) == pytest.approx(0.4)
    assert bar_points(1.0) == 0.0


# -------------------------------------------------------------------------------- scoring without training


def test_served_model_scores_a_test_file_with_its_own_preprocessing(onnx_store: Path) -> None:
    from serving.runtime import Classifier
    from serving.store import ModelStore

    version = ModelStore(onnx_store).production_version("image")
    assert version is not None
    images = [_png(v, size=s) for v, s in ((0, 8), (120, 12), (250, 5))]
    items = quality.Items(images, ["cat", "dog", "owl"])
    predicted, info = quality.served_predictions(onnx_store, "image", version.version, items)
    classifier = Classifier.from_version(version)
    assert predicted == [c["label"] for c in classifier.classify(classifier.prepare_images(images))]
    assert info["promoted"] and quality.describe_input(info["spec"]) == "8x8x1"
    text = ModelStore(onnx_store).production_version("text")
    assert text is not None
    texts, _ = quality.served_predictions(
        onnx_store, "text", text.version, quality.Items(["good film", "bad"], ["a", "b"])
    )
    assert len(texts) == 2 and set(texts) <= {"neg", "pos"}


def test_peer_fits_every_candidate_and_keeps_the_best(tmp_path: Path) -> None:
    from serving.preprocess import ImageSpec

    rows = [(f"{w} {w} thing {i}", w) for i in range(30) for w in ("good", "bad")]
    train = quality.Items([t for t, _ in rows], [lab for _, lab in rows])
    test = quality.Items(["good good", "bad bad thing", "good thing"], ["good", "bad", "good"])
    peer, predicted = quality.classic_peer("text", train, test, None, "2026-11-29T10:00:00Z")
    assert [c["name"] for c in peer["candidates"]] == list(quality.TEXT_PEERS)
    assert peer["accuracy"] == max(c["accuracy"] for c in peer["candidates"]) == 1.0
    assert predicted == test.labels and peer["train_items"] == 60
    # images: raw pixels at the model's input size
    pics = [_png(v) for v in range(0, 240, 8)]
    labels = ["dark" if i < 15 else "light" for i in range(len(pics))]
    spec = ImageSpec(labels=("dark", "light"), height=4, width=4, channels=1).to_dict()  # as the manifest holds it
    image_peer, _ = quality.classic_peer(
        "image", quality.Items(pics, labels), quality.Items([_png(5), _png(230)], ["dark", "light"]), spec, "now"
    )
    assert [c["name"] for c in image_peer["candidates"]] == list(quality.IMAGE_PEERS)
    assert image_peer["input"] == "4x4x1 pixels" and image_peer["accuracy"] == 1.0


def test_test_items_without_text_or_label_or_pixels_are_not_scored(tmp_path: Path) -> None:
    rows = [("good", "a"), ("", "a"), ("bad", " "), ("fine", "b ")]
    split = prepare_split(SplitSource("t", "text", (_write_csv(tmp_path / "d.csv", rows * 5),)), tmp_path / "c")
    test = quality.load_items(split, "test")
    assert test.inputs and all(t.strip() for t in test.inputs) and set(test.labels) <= {"a", "b"}
    folder = _image_folder(tmp_path / "pics")
    (folder / "owl" / "broken.png").write_bytes(b"not a png")
    images = prepare_split(SplitSource("p", "image", (folder,)), tmp_path / "c")
    both = [quality.load_items(images, side) for side in ("train", "test")]
    assert sum(x.skipped for x in both) == 1 and sum(len(x.labels) for x in both) == 43


def test_run_measured_reports_exit_code_and_peak_rss(tmp_path: Path) -> None:
    code, seconds, rss = quality.run_measured(
        [sys.executable, "-c", "b = bytearray(80 * 2**20); print('x'); raise SystemExit(3)"], tmp_path / "log.txt"
    )
    assert code == 3 and seconds > 0 and rss >= 80
    assert (tmp_path / "log.txt").read_text().strip() == "x"
