"""Items to predict: streamed from tables and folders, named as quarantine.csv names them, bad rows as errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.batch import Item, RowWriter, output_format
from training.data.dataset import DataError
from training.data.sources import iter_items


def test_csv_rows_are_named_by_the_line_they_start_on(tmp_path: Path) -> None:
    data = tmp_path / "t.csv"
    data.write_text('label,text\npos,good film\n\nneg,"two\nlines"\nshort\nneg,caf\u00e9\n', encoding="utf-8")
    items = list(iter_items("text", data))
    assert items == [
        Item("line 2", "good film"),
        Item("line 4", "two\nlines"),
        Item("line 6", "", "1 field(s), the text is field 2"),
        Item("line 7", "caf\u00e9"),
    ]


def test_headerless_tables_single_columns_and_other_encodings(tmp_path: Path) -> None:
    data = tmp_path / "t.tsv"
    data.write_bytes("x\tna\u00efve\ny\tr\u00e9sum\u00e9\n".encode("cp1252"))
    assert [i.payload for i in iter_items("text", data, text_column="1", header=False)] == [
        "na\u00efve",
        "r\u00e9sum\u00e9",
    ]
    single = tmp_path / "one.csv"
    single.write_text("whatever\nfirst\nsecond\n")
    assert [i.payload for i in iter_items("text", single)] == ["first", "second"]
    with pytest.raises(DataError, match="no text column 'body'"):
        list(iter_items("text", data, text_column="body"))


def test_jsonl_and_parquet(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"id": 1, "message": "hi"}) + "\n{broken\n[1]\n" + json.dumps({"id": 2}) + "\n")
    items = list(iter_items("text", data))
    assert items[0] == Item("line 1", "hi")
    assert [i.error is not None for i in items[1:]] == [True, True, True]
    assert "not valid JSON" in str(items[1].error) and "no field 'message'" in str(items[3].error)
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"label": ["a", "b"], "text": ["one", None]}), table)
    assert list(iter_items("text", table)) == [Item("row 1", "one"), Item("row 2", "")]


def test_compressed_tables_stream_and_a_damaged_one_stops_with_where(tmp_path: Path) -> None:
    rows = "".join(f"row {k},{'pos' if k % 2 else 'neg'}\n" for k in range(120_000))  # past the sniffed MiB
    packed = tmp_path / "t.csv.gz"
    packed.write_bytes(gzip.compress(f"text,label\n{rows}".encode()))
    items = list(iter_items("text", packed))
    assert len(items) == 120_000 and items[0] == Item("line 2", "row 0") and items[-1].name == "line 120001"
    lines = tmp_path / "t.jsonl.gz"
    lines.write_bytes(gzip.compress(b'{"text": "hi"}\n{"text": "there"}\n'))
    assert [i.payload for i in iter_items("text", lines)] == ["hi", "there"]
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(packed.read_bytes()[:-200])  # damaged near its end: the rows before it come first
    with pytest.raises(DataError, match="cannot be decompressed after line"):
        list(iter_items("text", cut))


def test_a_folder_of_text_files_is_a_text_per_file_at_any_depth(tmp_path: Path) -> None:
    root = tmp_path / "posts"
    (root / "sport").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "sport" / "101").write_text("late goal\nwins the cup")
    (root / "sport" / "102.txt.gz").write_bytes(gzip.compress("caf\u00e9 match".encode("cp1252")))
    (root / "top.txt").write_text("a text outside any folder")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (root / ".cache" / "x").write_text("hidden")
    assert list(iter_items("text", root)) == [
        Item("logo.png", "", "not a text file (binary content)"),
        Item("sport/101", "late goal\nwins the cup"),
        Item("sport/102.txt.gz", "caf\u00e9 match"),
        Item("top.txt", "a text outside any folder"),
    ]
    with pytest.raises(DataError, match="--text-column does not apply"):
        list(iter_items("text", root, text_column="body"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        list(iter_items("text", tmp_path / "empty"))


def test_a_json_array_is_read_as_training_reads_it(tmp_path: Path) -> None:
    data = tmp_path / "export.json"
    data.write_text(json.dumps([{"id": 1, "text": "hi"}, "stray", {"id": 2}], indent=1))
    assert list(iter_items("text", data)) == [
        Item("line 2", "hi"),
        Item("line 6", "", "a JSON str, not an object"),
        Item("line 7", "", "no field 'text'"),
    ]
    data.write_text('[{"text": "hi"} {"text": "there"}]')
    with pytest.raises(DataError, match="expected ',' or ']'"):
        list(iter_items("text", data))
    packed = tmp_path / "big.json.gz"  # damaged past the first MiB, which the encoding was judged on
    whole = gzip.compress(json.dumps([{"text": f"item {k}"} for k in range(150_000)]).encode())
    packed.write_bytes(whole[:-100])
    with pytest.raises(DataError, match="cannot be read whole"):
        list(iter_items("text", packed))


def test_image_folders_at_any_depth_and_manifests(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "a" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for path in ("top.png", "a/x.jpg", "a/deeper/y.webp", ".hidden/z.png", "a/notes.txt"):
        (root / path).write_bytes(b"")
    assert [i.name for i in iter_items("image", root)] == ["a/deeper/y.webp", "a/x.jpg", "top.png"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "images/top.png"}\n{"image": "images/gone.png"}\n{"image": ""}\n')
    items = list(iter_items("image", manifest))
    assert items[0] == Item("line 1: images/top.png", str(tmp_path / "images/top.png"))
    assert "file not found" in str(items[1].error) and items[2].error == "the path is empty"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        list(iter_items("image", tmp_path / "empty"))
    with pytest.raises(DataError, match="not a text table"):
        list(iter_items("text", _png(tmp_path)))


def test_an_image_folder_streams_in_sorted_path_order(tmp_path: Path) -> None:
    """The folder is walked one folder at a time, yet in the order of sorting every path: a folder's files
    and subfolders interleave by name (a/ before a-b.png before a.png before b/)."""
    root = tmp_path / "images"
    names = ["a.png", "a-b.png", "a/z.png", "a/b/c.png", "a/B.png", "b/a.png", "Z.png", "b/__MACOSX/x.png", "b/.x.png"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "far.png").write_bytes(b"")
    (root / "link").symlink_to(tmp_path / "elsewhere")  # a link to a folder is not entered
    (root / "c").mkdir()
    (root / "c" / "notes.txt").write_text("not an image")
    expected = ["Z.png", "a/B.png", "a/b/c.png", "a/z.png", "a-b.png", "a.png", "b/a.png"]
    assert [i.name for i in iter_items("image", root)] == expected
    assert expected == sorted(expected, key=lambda name: Path(name).parts)  # what sorting the paths gives
    assert [i.payload for i in iter_items("image", root)] == [str(root / name) for name in expected]


def _png(tmp_path: Path) -> Path:
    path = tmp_path / "picture.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return path


def test_the_writer_replaces_the_output_whole_and_counts(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    out.write_text("old results\n")
    writer = RowWriter(out)
    rows = [
        {
            "item": "line 2",
            "label": "pos",
            "score": 0.9,
            "abstained": False,
            "top_k": [{"label": "pos", "score": 0.9}],
            "error": None,
        },
        {"item": "line 3", "label": None, "score": None, "abstained": False, "top_k": [], "error": "broken"},
    ]
    writer.write(rows)
    assert out.read_text() == "old results\n"  # nothing replaced until the job finishes
    writer.close()
    assert out.read_text().splitlines() == [
        "item,label,score,abstained,top_k,error",
        'line 2,pos,0.9,False,"[[""pos"", 0.9]]",',
        "line 3,,,False,[],broken",
    ]
    assert writer.summary() | {"out": ""} == {
        "out": "",
        "items": 2,
        "scored": 1,
        "errors": 1,
        "abstained": 0,
        "labels": {"pos": 1},
    }
    assert list(tmp_path.iterdir()) == [out]
    with pytest.raises(ValueError, match="suffix must be one of"):
        output_format(tmp_path / "scores.parquet")


def test_fields_are_chosen_over_many_rows_and_shifted_rows_are_errors(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text('{"id": 1}\n{"id": 2, "text": "hi"}\n"just a string"\n')
    assert list(iter_items("text", data)) == [
        Item("line 1", "", "no field 'text'"),
        Item("line 2", "hi"),
        Item("line 3", "", "a JSON str, not an object"),
    ]
    table = tmp_path / "t.csv"
    table.write_text("id,text\n1,hello, world\n2,fine\n")
    items = list(iter_items("text", table))
    assert items[0].error is not None and "3 fields, the header has 2" in items[0].error
    assert items[1] == Item("line 3", "fine")
    table.write_text("id,text\n")
    with pytest.raises(DataError, match="header but no data rows"):
        list(iter_items("text", table))


def test_a_record_the_csv_module_cannot_read_ends_the_table_with_an_error_row(tmp_path: Path) -> None:
    data = tmp_path / "t.csv"
    data.write_text("text\nfine\n" + "x" * ((1 << 24) + 1) + "\nnever read\n")
    items = list(iter_items("text", data))
    assert items[0] == Item("line 2", "fine")
    assert len(items) == 2 and items[1].name == "line 3" and "the rest of the file is not read" in str(items[1].error)
