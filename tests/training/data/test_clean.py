"""Ingest and cleaning on messy data: corrupt files, duplicates, odd CSV layouts, untrainable sets."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import add_dirt, make_image_folder, make_texts, write_csv
from training.config import DataConfig
from training.data.clean import clean_images, clean_texts, load_dataset
from training.data.dataset import DataError, check_trainable


def test_dirty_image_folder_is_cleaned_and_every_file_counted(image_folder: Path) -> None:
    dirt = add_dirt(image_folder)
    ds = clean_images(image_folder)
    report = ds.report.to_dict()
    for key, count in dirt.items():
        assert report[key] == count, key
    assert report["classes"] == {"diagonal": 30, "horizontal": 30, "vertical": 30}
    assert report["rows_kept"] == 90
    # every non-hidden file read is either kept or in exactly one skip count
    skipped = sum(report[k] for k in ("unreadable_skipped", "duplicates_removed", "missing_label_skipped"))
    assert report["rows_read"] == report["rows_kept"] + skipped
    reasons = " ".join(s["reason"] for s in report["skipped_examples"])
    assert "empty" in reasons and "truncated" in reasons and "same bytes" in reasons and "same pixels" in reasons
    assert ds.colour  # some fixture images are in colour
    assert not any(".hidden" in str(p) or "DS_Store" in str(p) for p in ds.inputs)


def test_missing_or_file_image_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        clean_images(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="single image.*one sub-folder per label"):
        clean_images(tmp_path / "file.png")


def test_csv_with_dirt_reports_counts(tmp_path: Path) -> None:
    rows = make_texts(10)
    dirty = rows + rows[:3] + [("", "sports"), ("  !! ", "food"), ("has no label", ""), ("short row",)]
    ds = clean_texts(write_csv(tmp_path / "t.csv", dirty))
    r = ds.report.to_dict()
    assert r["rows_read"] == len(dirty)
    assert (r["duplicates_removed"], r["empty_skipped"], r["missing_label_skipped"], r["malformed_skipped"]) == (
        3,
        2,
        1,
        1,
    )
    assert r["rows_kept"] == 30 and set(r["classes"]) == {"sports", "weather", "food"}


def test_latin1_semicolon_file_with_extra_columns_and_aliases(tmp_path: Path) -> None:
    rows = [(str(i), f"café crème numéro {'abcdefghijkl'[i]}", "x" if i % 2 else "y", "ignored") for i in range(12)]
    path = write_csv(
        tmp_path / "t.csv", rows, header=("id", "Review", "Sentiment", "notes"), delimiter=";", encoding="latin-1"
    )
    ds = clean_texts(path)
    read = ds.report.details["format"]
    assert read["encoding"] == "cp1252" and read["delimiter"] == ";"  # Windows-1252 covers latin-1 text
    assert read["columns"] == ["Review", "Sentiment"]
    assert ds.inputs[0] == "café crème numéro a"
    assert ds.report.rows_kept == 12


def test_common_column_names_are_found_whatever_their_case_and_spacing(tmp_path: Path) -> None:
    rows = [(str(i), f"comment number {'abcdefghijkl'[i]}", "joy" if i % 2 else "anger") for i in range(12)]
    path = write_csv(tmp_path / "t.csv", rows, header=("ID", "Comment Text", "Emotion"))
    ds = clean_texts(path)
    assert ds.report.details["format"]["columns"] == ["Comment Text", "Emotion"]
    assert ds.inputs[0] == "comment number a" and ds.labels[:2] == ["anger", "joy"]


def test_tsv_without_header_by_column_index(tmp_path: Path) -> None:
    rows = [("a", f"text number {'abcdefghij'[i]}", "pos" if i % 2 else "neg") for i in range(10)]
    path = write_csv(tmp_path / "t.tsv", rows, header=None, delimiter="\t")
    ds = clean_texts(path, text_column="1", label_column="2", header=False)
    assert ds.inputs[0] == "text number a" and ds.labels[:2] == ["neg", "pos"]


def test_utf8_bom_and_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffbody,kind\nhello there,a\nbye now,b\n".encode())
    ds = clean_texts(path, text_column="body", label_column="kind")
    assert ds.inputs == ["hello there", "bye now"]


def test_unknown_column_names_the_header_and_the_fix(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [("x", "y")], header=("words", "tag"))
    with pytest.raises(DataError, match=r"no text column .*--text-column"):
        clean_texts(path)
    with pytest.raises(DataError, match="'nope'"):
        clean_texts(path, text_column="nope", label_column="tag")
    with pytest.raises(DataError, match="'-1'"):  # not a Python index from the end
        clean_texts(path, text_column="-1", label_column="tag")


def test_groups_keep_texts_that_standardise_alike_together(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [("Hello there!", "a"), ("hello there", "a"), ("other", "b")])
    ds = clean_texts(path)
    assert len(ds.inputs) == 3  # different raw texts are kept...
    assert ds.groups[0] == ds.groups[1] != ds.groups[2]  # ...but never split apart


def test_untrainable_data_stops_with_the_fix(tmp_path: Path) -> None:
    one_class = clean_texts(write_csv(tmp_path / "one.csv", [(f"t {i}", "only") for i in range(20)]))
    with pytest.raises(DataError, match=r"only one class \('only', 20 examples\).*another class"):
        check_trainable(one_class, 5)
    rows = [(f"t {i}", "big") for i in range(20)] + [("r 1", "rare"), ("r 2", "rare")]
    small = clean_texts(write_csv(tmp_path / "small.csv", rows))
    with pytest.raises(DataError, match=r"1 of 2 classes have fewer than 5 examples.*'rare' \(2\).*Add examples"):
        check_trainable(small, 5)
    names = [chr(97 + c // 26) + chr(97 + c % 26) for c in range(30)]  # digits would make the texts near copies
    many = rows + [(f"{names[c]} {'xyz'[k]}", f"class {c:02d}") for c in range(30) for k in range(1 + c % 3)]
    with pytest.raises(DataError) as stopped:  # 31 small classes: the 10 smallest are named, the rest counted
        check_trainable(clean_texts(write_csv(tmp_path / "many.csv", many)), 5)
    message = str(stopped.value)
    assert "31 of 32 classes" in message and "'class 00' (1)" in message and "and 21 more" in message
    assert "'class 02'" not in message  # 3 examples: larger than the ten named
    empty = clean_texts(write_csv(tmp_path / "empty.csv", [("", "a")]))
    with pytest.raises(DataError, match="no usable examples"):
        check_trainable(empty, 5)


def test_unknown_task_is_rejected(texts_csv: Path) -> None:
    with pytest.raises(DataError, match="unknown task 'audio'"):
        load_dataset("audio", texts_csv)


def test_near_duplicate_images_grouped_and_conflicts_dropped(image_folder: Path) -> None:
    originals = sorted((image_folder / "horizontal").glob("*.png"))
    first, second = Image.open(originals[0]), Image.open(originals[1])
    # the same picture re-encoded as a larger RGB JPEG, under the same label: kept, grouped
    first.convert("RGB").resize((first.width * 4, first.height * 4)).save(image_folder / "horizontal" / "big.jpg")
    # the same picture under another label (one pixel touched, saved anew): both copies dropped as conflicting
    touched = second.convert("RGB")
    touched.putpixel((0, 0), (255, 0, 0))
    touched.save(image_folder / "vertical" / "oops.png")
    ds = clean_images(image_folder)
    r = ds.report.to_dict()
    assert r["conflicting_labels"] == 2 and r["duplicates_removed"] == 0
    names = {Path(p).name for p in ds.inputs}
    assert "big.jpg" in names and originals[0].name in names
    assert originals[1].name not in names and "oops.png" not in names
    big = [str(p) for p in ds.inputs].index(str(image_folder / "horizontal" / "big.jpg"))
    orig = [str(p) for p in ds.inputs].index(str(originals[0]))
    assert ds.groups[big] == ds.groups[orig] and r["near_duplicates"] >= 2
    conflicts = {q.item: q.reason for q in ds.report.quarantine if q.kind == "conflicting_labels"}
    assert "labelled 'vertical'" in conflicts[f"horizontal/{originals[1].name}"]


def test_differently_coloured_images_of_one_shape_are_not_duplicates(tmp_path: Path) -> None:
    for label, colour in (("red", (220, 20, 20)), ("green", (20, 220, 20))):
        (tmp_path / "lights" / label).mkdir(parents=True)
        for k in range(3):
            image = Image.new("RGB", (32, 32), (0, 0, 0))
            image.paste(colour, (8 + k, 8, 24 + k, 24))
            image.save(tmp_path / "lights" / label / f"{k}.png")
    ds = clean_images(tmp_path / "lights")
    assert ds.report.conflicting_labels == 0 and ds.report.rows_kept == 6


def test_text_near_duplicates_and_conflicts(tmp_path: Path) -> None:
    rows = [
        ("The parcel arrived LATE, again!", "complaint"),
        ("the parcel arrived late again", "complaint"),  # near: case and punctuation
        ("Order 1234 shipped", "info"),
        ("order 98 shipped.", "info"),  # near: digits
        ("great service", "praise"),
        ("Great service!!", "complaint"),  # near, other label: both dropped
        ("exactly this", "info"),
        ("exactly this", "praise"),  # exact, other label: both dropped
        ("something else entirely", "info"),
    ]
    ds = clean_texts(write_csv(tmp_path / "t.csv", rows))
    r = ds.report.to_dict()
    assert r["conflicting_labels"] == 4 and r["near_duplicates"] == 4 and r["rows_kept"] == 5
    assert ds.groups[0] == ds.groups[1] and ds.groups[2] == ds.groups[3] and ds.groups[0] != ds.groups[2]


def test_quarantine_lists_every_skipped_item(tmp_path: Path) -> None:
    rows = make_texts(10) + [("", "food")] * 120 + [("x y", "")] * 3
    ds = clean_texts(write_csv(tmp_path / "t.csv", rows))
    path = ds.report.write_quarantine(tmp_path / "run" / "quarantine.csv")
    with path.open() as fh:
        listed = list(csv.DictReader(fh))
    assert len(listed) == 123 == ds.report.to_dict()["quarantined"]
    assert len(ds.report.to_dict()["skipped_examples"]) == 50  # report.json stays small
    assert {row["kind"] for row in listed} == {"empty_skipped", "missing_label_skipped"}
    assert listed[0]["item"] == "line 32" and listed[-1]["reason"] == "label is empty"


def test_label_change_names_new_and_vanished_labels() -> None:
    from training.data.dataset import check_label_change

    assert check_label_change(None, ("a", "b"), allow=False) == {"added": [], "removed": []}
    assert check_label_change(("a", "b"), ("a", "b"), allow=False) == {"added": [], "removed": []}
    with pytest.raises(DataError, match=r"new label\(s\) \['c'\] and vanished label\(s\) \['b'\]"):
        check_label_change(("a", "b"), ("a", "c"), allow=False)
    assert check_label_change(("a", "b"), ("a", "c"), allow=True) == {"added": ["c"], "removed": ["b"]}


def test_look_alikes_are_kept_and_only_the_same_picture_under_another_label_is_dropped(tmp_path: Path) -> None:
    """With the near search opened wide, every image is every other's perceptual-hash neighbour: still only the
    pictures that are the same item (identical after decode, or a few pixels apart) under two labels go."""
    root = make_image_folder(tmp_path / "images", per_class=10)
    distinct = len(list(root.rglob("*.*")))
    same = sorted((root / "horizontal").glob("*.png"))
    Image.open(same[0]).save(root / "vertical" / "same_pixels.bmp")  # identical after decode
    near = Image.open(same[1]).convert("RGB")
    near.putpixel((1, 1), (0, 0, 0))
    near.save(root / "diagonal" / "one_pixel_apart.png")  # near-identical by the pixel measure
    ds = clean_images(root, DataConfig(image_hash_distance=63, image_colour_tolerance=255))
    r = ds.report.to_dict()
    assert r["conflicting_labels"] == 4 and r["duplicates_removed"] == 0
    assert r["rows_kept"] == distinct - 2
    kept = {Path(p).name for p in ds.inputs}
    assert same[0].name not in kept and same[1].name not in kept
    assert not {"same_pixels.bmp", "one_pixel_apart.png"} & kept
