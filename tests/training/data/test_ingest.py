"""Every input format users hand over, and the one-line stop for each kind of unusable input."""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import make_image_folder, make_texts, png_bytes, write_csv
from training.data.clean import clean_images, clean_texts
from training.data.dataset import DataError

# ---------------------------------------------------------------- image manifests


def _manifest_rows(root: Path, relative_to: Path | None) -> list[tuple[str, str]]:
    rows = []
    for path in sorted(root.glob("*/*")):
        shown = path.relative_to(relative_to) if relative_to else path.resolve()
        rows.append((str(shown), path.parent.name))
    return rows


def test_csv_manifest_with_relative_paths_and_missing_files(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "images", per_class=10)
    rows = _manifest_rows(root, tmp_path) + [("images/gone.png", "vertical"), ("", "vertical")]
    manifest = write_csv(tmp_path / "manifest.csv", rows, header=("path", "label"))
    ds = clean_images(manifest)
    r = ds.report.to_dict()
    assert r["rows_kept"] == 30 and r["classes"] == {"diagonal": 10, "horizontal": 10, "vertical": 10}
    assert r["missing_file_skipped"] == 2 and r["rows_read"] == 32
    missing = [q for q in ds.report.quarantine if q.kind == "missing_file_skipped"]
    assert "images/gone.png" in missing[0].item and "file not found" in missing[0].reason


def test_jsonl_manifest_with_absolute_paths_and_label_whitespace(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "images", per_class=8)
    manifest = tmp_path / "elsewhere" / "manifest.jsonl"
    manifest.parent.mkdir()
    lines = [json.dumps({"path": p, "label": f"  {label} "}) for p, label in _manifest_rows(root, None)]
    manifest.write_text("\n".join(lines) + "\n{broken\n")
    ds = clean_images(manifest)
    assert set(ds.label_names) == {"diagonal", "horizontal", "vertical"}  # trimmed, otherwise as given
    assert ds.report.rows_kept == 24 and ds.report.malformed_skipped == 1


def test_manifest_whose_files_are_all_missing_stops(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [("a.png", "x"), ("b.png", "y")], header=("file", "class"))
    with pytest.raises(DataError, match=r"none of the 2 files listed .* exist"):
        clean_images(manifest)


def test_empty_folder_and_folder_without_images_stop(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        clean_images(tmp_path / "empty")
    (tmp_path / "docs" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "a" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no image files in label folders"):
        clean_images(tmp_path / "docs")


def test_folder_of_only_corrupt_images_stops(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="none of the 1 image files .* could be decoded"):
        clean_images(tmp_path / "imgs")


def test_tiff_and_sixteen_bit_images_are_read(tmp_path: Path) -> None:
    (tmp_path / "i" / "a").mkdir(parents=True)
    (tmp_path / "i" / "b").mkdir(parents=True)
    Image.new("I;16", (10, 10), 3000).save(tmp_path / "i" / "a" / "x.tif")
    (tmp_path / "i" / "b" / "y.png").write_bytes(png_bytes())
    ds = clean_images(tmp_path / "i")
    assert ds.report.rows_kept == 2 and ds.modes[0].startswith("I")


# ---------------------------------------------------------------- text tables


def test_jsonl_texts_with_fields_by_name_and_broken_lines(tmp_path: Path) -> None:
    rows = make_texts(5)
    lines = [json.dumps({"id": i, "body": t, "tag": label}) for i, (t, label) in enumerate(rows)]
    lines.insert(3, "{not json")
    lines.insert(5, "[1, 2]")
    lines.append(json.dumps({"id": 99, "body": "no tag here"}))
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = clean_texts(path, text_column="body", label_column="tag")
    r = ds.report.to_dict()
    assert r["rows_kept"] == 15 and r["malformed_skipped"] == 3 and r["rows_read"] == 18
    reasons = {q.item: q.reason for q in ds.report.quarantine}
    assert "not valid JSON" in reasons["line 4"] and "not an object" in reasons["line 6"]
    assert "no field 'tag'" in reasons["line 18"]


def test_jsonl_numeric_labels_become_text(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"item {w}", "label": i % 2}) for i, w in enumerate("abcdef")))
    ds = clean_texts(path)
    assert ds.label_names == ("0", "1")


def test_jsonl_with_every_line_broken_stops(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("{a\n{b\n")
    with pytest.raises(DataError, match=r"no line of .* is a JSON object \(2 broken line\(s\), first: line 1"):
        clean_texts(path)


def test_parquet_texts(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_texts(4)
    table = pa.table({"review": [t for t, _ in rows] + [None], "stars": [lab for _, lab in rows] + ["food"]})
    pq.write_table(table, tmp_path / "t.parquet")
    ds = clean_texts(tmp_path / "t.parquet", label_column="stars")
    assert ds.report.rows_kept == 12 and ds.report.empty_skipped == 1
    assert ds.report.quarantine[0].item == "row 13"


def test_quoted_newlines_bom_and_mixed_line_endings(tmp_path: Path) -> None:
    body = '\ufefftext,label\r\n"first line\nsecond line",a\n"plain, with comma",b\r\nthird,a\rfourth,b\n'
    path = tmp_path / "t.csv"
    path.write_bytes(body.encode("utf-8"))
    ds = clean_texts(path)
    assert ds.inputs[0] == "first line second line"
    assert ds.inputs[1] == "plain, with comma"
    assert ds.labels == ["a", "b", "a", "b"]


def test_utf16_file_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\nnaïve café,a\nzürich,b\n".encode("utf-16"))
    assert clean_texts(path).inputs == ["naïve café", "zürich"]


def test_column_that_does_not_exist_lists_columns_and_a_sample_row(tmp_path: Path) -> None:
    rows = [(str(i), f"text {w}", "a", "x", "y") for i, w in enumerate("abc")]
    path = write_csv(tmp_path / "t.csv", rows, header=("id", "text", "label", "c3", "c4"))
    with pytest.raises(DataError, match=r"no text column '9'; columns found: \['id', 'text', 'label', 'c3', 'c4'\]"):
        clean_texts(path, text_column="9")
    with pytest.raises(DataError, match=r"first row: .*'text': 'text a'"):
        clean_texts(path, label_column="nope")
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"body": "x", "label": "a"}) + "\n")
    with pytest.raises(DataError, match=r"no text column 'text'; columns found: \['body', 'label'\]"):
        clean_texts(jsonl, text_column="text")


def test_binary_file_is_not_a_text_table(tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(png_bytes())
    with pytest.raises(DataError, match="not a text table"):
        clean_texts(path)
    noise = tmp_path / "noise.tsv"
    noise.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DataError, match="not a text table"):
        clean_texts(noise)
    workbook = tmp_path / "labels.xlsx"  # a zip of XML parts, as a spreadsheet program writes it
    with zipfile.ZipFile(workbook, "w") as book:
        book.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(DataError, match=r"spreadsheet workbook: export its sheet as CSV"):
        clean_texts(workbook)


def test_header_only_and_empty_files_stop(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="header but no data rows"):
        clean_texts(tmp_path / "h.csv")
    (tmp_path / "e.csv").write_text("  \n")
    with pytest.raises(DataError, match="is empty"):
        clean_texts(tmp_path / "e.csv")


def test_label_whitespace_trimmed_but_case_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([("text", "label"), ("one thing", " Pos "), ("other thing", "pos")])
    assert clean_texts(path).labels == ["Pos", "pos"]


def test_rows_with_extra_fields_are_malformed_but_trailing_empty_fields_are_not(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\ngood one,pos\nmeh, not great, honestly,neg\ntrailing comma,neg,\nfine,pos\n")
    ds = clean_texts(path)
    assert ds.inputs == ["good one", "trailing comma", "fine"]
    (bad,) = ds.report.quarantine
    assert bad.item == "line 3" and "4 fields, the header has 2" in bad.reason


def test_quarantine_names_the_line_a_multiline_record_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"one\ntwo\nthree",a\n"",b\nlast,a\n')
    ds = clean_texts(path)
    assert [q.item for q in ds.report.quarantine] == ["line 5"]


def test_mostly_utf8_file_with_one_bad_byte_keeps_its_accents(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\ncafé crème,a\nnaïve,b\n".encode() + b"bad \xff byte,a\n")
    ds = clean_texts(path)
    assert ds.inputs[:2] == ["café crème", "naïve"]
    assert ds.report.details["format"]["encoding"].startswith("utf-8 (1 invalid")


def test_jsonl_text_with_unicode_line_separator_stays_one_record(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [{"text": "first\u2028still first", "label": "a"}, {"text": "next\u0085one", "label": "b"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    ds = clean_texts(path)
    assert len(ds) == 2 and ds.report.malformed_skipped == 0


def test_parquet_bytes_and_dates_become_text(tmp_path: Path) -> None:
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"text": [b"raw bytes here", b"more bytes"], "label": [datetime.date(2024, 1, 1), None]})
    pq.write_table(table, tmp_path / "t.parquet")
    ds = clean_texts(tmp_path / "t.parquet")
    assert ds.inputs == ["raw bytes here"] and ds.labels == ["2024-01-01"]
    assert ds.report.missing_label_skipped == 1


def test_manifest_rows_without_a_label_are_counted(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "images", per_class=5)
    rows = [(p, "" if k % 5 == 0 else label) for k, (p, label) in enumerate(_manifest_rows(root, tmp_path))]
    ds = clean_images(write_csv(tmp_path / "m.csv", rows, header=("path", "label")))
    assert ds.report.missing_label_skipped == 3 and ds.report.rows_kept == 12 and "" not in ds.labels


def test_lab_image_is_read_and_unexpected_conversion_errors_are_unreadable(tmp_path: Path, monkeypatch) -> None:
    make_image_folder(tmp_path / "images", per_class=5)
    Image.new("LAB", (16, 16), (50, 20, 30)).save(tmp_path / "images" / "vertical" / "lab.tif")
    ds = clean_images(tmp_path / "images")
    assert ds.report.unreadable_skipped == 0 and "LAB" in ds.modes

    def broken(image: Image.Image) -> int:
        raise ValueError("conversion from XYZ not supported")

    monkeypatch.setattr("training.data.clean.phash64", broken)
    with pytest.raises(DataError, match=r"could be decoded .*cannot convert the image for training \(ValueError"):
        clean_images(tmp_path / "images")


# ---------------------------------------------------------------- text folders and compressed tables


def _text_folder(root: Path) -> Path:
    """20 Newsgroups' layout: DIR/<label>/<file>, names without extension, a legacy encoding, and the strays a
    real folder holds (a hidden folder, a file outside the label folders, an image, a compressed file)."""
    for label, words in (("sport", "goal match striker league"), ("tech", "chip software laptop phone")):
        (root / label).mkdir(parents=True)
        for k in range(6):
            (root / label / f"{5000 + k}").write_text(f"{words} story {k}\n" * (k + 1))
    (root / "sport" / "accents.txt").write_bytes("Le caf\xe9 a gagn\xe9 le match".encode("cp1252"))
    (root / "tech" / "packed.txt.gz").write_bytes(gzip.compress(b"chip laptop review"))
    (root / "tech" / "logo.png").write_bytes(png_bytes())
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: main")
    (root / "README").write_text("how this corpus was made")
    return root


def test_a_folder_of_text_files_is_one_text_per_file_labelled_by_its_folder(tmp_path: Path) -> None:
    dataset = clean_texts(_text_folder(tmp_path / "news"))
    named = dict(zip(dataset.names, dataset.labels, strict=True))
    assert named["sport/5000"] == "sport" and named["tech/packed.txt.gz"] == "tech"
    assert len(dataset.inputs) == 14
    texts = dict(zip(dataset.names, dataset.inputs, strict=True))
    assert texts["sport/accents.txt"] == "Le café a gagné le match"  # cp1252, whole file
    assert texts["sport/5002"].count("goal") == 3  # every line of the file, not the first
    report = dataset.report
    assert (report.rows_read, report.hidden_ignored) == (16, 1)
    skipped = {q.item: q.reason for q in report.quarantine}
    assert skipped == {
        "README": "file is not inside a label folder",
        "tech/logo.png": "not a text file (binary content)",
    }
    with pytest.raises(DataError, match="--text-column and --label-column do not apply"):
        clean_texts(tmp_path / "news", text_column="body")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        clean_texts(tmp_path / "empty")


def test_gzip_compressed_tables_are_read_inside(tmp_path: Path) -> None:
    rows = make_texts(4)
    plain = write_csv(tmp_path / "texts.csv", rows)
    packed = tmp_path / "texts.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    tsv = tmp_path / "texts.tsv.gz"
    tsv.write_bytes(gzip.compress(plain.read_text().replace(",", "\t").encode()))
    assert clean_texts(packed).inputs == clean_texts(plain).inputs == clean_texts(tsv).inputs
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(packed.read_bytes()[:20])
    with pytest.raises(DataError, match="gzip-compressed but cannot be decompressed"):
        clean_texts(broken)


@pytest.mark.parametrize("task", ["image", "text"])
def test_a_data_set_root_with_split_folders_is_refused_with_the_training_folder_named(
    tmp_path: Path, task: str
) -> None:
    def write(path: Path, k: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if task == "image":
            Image.new("RGB", (12, 12), (25 * k, 200 - 20 * k, 90)).save(path)  # colours far apart: distinct items
        else:
            path.write_text(f"item {path.parent.name} {k}")

    suffix = ".png" if task == "image" else ".txt"
    for k, (split, label) in enumerate((s, lab) for s in ("train", "test") for lab in ("cat", "dog")):
        write(tmp_path / split / label / f"a{suffix}", k)
    clean = clean_images if task == "image" else clean_texts
    with pytest.raises(DataError, match=r"\(test, train\) are the data set's own split.*--data .*/train"):
        clean(tmp_path)
    write(tmp_path / "train" / "cat" / "session1" / f"b{suffix}", 9)  # a label folder's own sub-folders are fine
    assert set(clean(tmp_path / "train").labels) == {"cat", "dog"}
    flat = tmp_path / "flat"  # split folders with no label folders inside: nothing to learn labels from
    for k, split in enumerate(("train", "val")):
        write(flat / split / f"x{suffix}", k)
    with pytest.raises(DataError, match=r"\(train, val\) are the data set's own split, not labels"):
        clean(flat)


def test_a_json_array_file_is_read_element_by_element_named_by_its_line(tmp_path: Path) -> None:
    records = [{"review": "a fine film", "sentiment": "pos"}, [1, 2], {"review": "dull\nand long", "sentiment": "neg"}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(records, indent=2))  # as tools export it: one array, elements over several lines
    dataset = clean_texts(path)
    assert dataset.inputs == ["a fine film", "dull and long"] and dataset.labels == ["pos", "neg"]
    assert dataset.names == ["line 2", "line 10"]  # where each element starts
    assert [(q.item, q.reason) for q in dataset.report.quarantine] == [("line 6", "a JSON list, not an object")]
    path.write_text('[{"text": "ok", "label": "a"},\n {"text": "broken", "label": }]')
    with pytest.raises(DataError, match="not valid JSON at line 2, column 30"):
        clean_texts(path)


def test_encodings_at_the_edges_read_without_error() -> None:
    from training.data.ingest import decode_bytes

    cut = codecs.BOM_UTF16_LE + "a😍".encode("utf-16-le")[:-1]  # cut inside a surrogate pair, odd length
    assert decode_bytes(cut)[1] == "utf-16"
    excel = codecs.BOM_UTF8 + b"text,label\nplain ascii with one bad \x92 byte,a\n"  # "CSV UTF-8" plus a cp1252 byte
    text, encoding = decode_bytes(excel)
    assert encoding.startswith("utf-8 (1 invalid") and text.startswith("text,label")
    assert decode_bytes(codecs.BOM_UTF8 + b"caf\xe9 " * 3000)[0].startswith("caf\u00e9")  # cp1252, BOM not read


def test_a_json_array_that_is_cut_or_followed_by_more_stops(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text('[{"text": "ok", "label": "a"},\n')
    with pytest.raises(DataError, match="its array is not closed"):
        clean_texts(path)
    path.write_text('[{"text": "ok", "label": "a"}]\n[{"text": "more", "label": "b"}]\n')
    with pytest.raises(DataError, match="more follows the array that ends on line 1"):
        clean_texts(path)
