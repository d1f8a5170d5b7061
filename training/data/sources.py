"""Items to predict, streamed from the same inputs training reads, without labels: image folders (any depth; label
folders allowed), image manifests (a path column), text tables (CSV, TSV, JSONL, Parquet; gzip-compressed ones too)
and folders of text files (one text per file, any depth).

Nothing is read whole: tables are parsed row by row (Parquet in record batches) and images are yielded as paths, read
by whoever scores them. Items are named as ``quarantine.csv`` names them (the path relative to the folder, ``line N:
path`` in a manifest, ``line N`` / ``row N`` in a table), so a prediction can be joined back to its input. A row that
cannot be an item (too few fields, broken JSON, a missing file) is an Item with an error, never the end of the job.

    >>> items = iter_items("text", Path("new_texts.csv"))  # doctest: +SKIP
    >>> next(items)  # doctest: +SKIP
    Item(name='line 2', payload='the parcel was late', error=None)
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from serving.batch import Item
from training.data.dataset import DataError
from training.data.ingest import (
    IMAGE_EXTENSIONS,
    JSONL_SUFFIXES,
    PARQUET_SUFFIXES,
    PATH_ALIASES,
    READ_ERRORS,
    TEXT_ALIASES,
    UnreadableText,
    cell_text,
    check_text,
    decode_bytes,
    is_json_array,
    json_array_rows,
    json_line_rows,
    open_file,
    read_text_file,
    resolve_column,
    sniff_delimiter,
    table_suffix,
    walk_files,
)

T = TypeVar("T")
SNIFF_BYTES = 1 << 20  # encoding and delimiter are judged on the first MiB
PARQUET_BATCH = 4096
FIELD_SAMPLE = 1000  # JSON objects whose keys choose the text (or path) field, as in training


def iter_items(task: str, data: Path, text_column: str | None = None, header: bool = True) -> Iterator[Item]:
    """Every item of ``data`` for a ``task`` model, in a stable order. Raises DataError when ``data`` cannot be
    read at all (missing, not a table, no usable column); a single bad item is an Item with an error."""
    if not data.exists():
        raise DataError(f"--data {data} does not exist")
    if task == "image":
        if data.is_dir():
            return image_folder_items(data)
        if data.suffix.lower() in IMAGE_EXTENSIONS:
            return iter([Item(data.name, str(data))])
        return manifest_items(data, header)
    if data.is_dir():
        if text_column is not None:
            raise DataError(f"--data {data} is a folder: each file is one text, so --text-column does not apply")
        return text_folder_items(data)
    return table_items(data, text_column, header, TEXT_ALIASES, "text")


def image_folder_items(root: Path) -> Iterator[Item]:
    """Every image file under ``root`` at any depth (label folders are allowed and ignored), sorted by path;
    hidden files and folders and files of other types are skipped."""
    found = False
    for rel, _ in walk_files(root):
        if Path(rel).suffix.lower() in IMAGE_EXTENSIONS:
            found = True
            yield Item(rel, str(root / rel))
    if not found:
        raise DataError(
            f"image folder {root} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}), at any depth"
        )


def text_folder_items(root: Path) -> Iterator[Item]:
    """Every file under ``root`` at any depth as one text (label folders are allowed and ignored), sorted by path,
    read as training reads a text folder's files; a binary file is an error row. Hidden files are skipped."""
    found = False
    for rel, _ in walk_files(root):
        found = True
        try:
            yield Item(rel, read_text_file(root / rel)[0])
        except UnreadableText as exc:
            yield Item(rel, "", str(exc))
    if not found:
        raise DataError(f"text folder {root} holds no files, at any depth; give a folder of text files or a table")


def manifest_items(path: Path, header: bool = True) -> Iterator[Item]:
    """Images listed in a manifest's path column; relative paths are read from the manifest's folder."""
    for item in table_items(path, None, header, PATH_ALIASES, "path"):
        name = item.payload.strip()
        shown = f"{item.name}: {name}"
        if item.error:
            yield item
        elif not name:
            yield Item(item.name, "", "the path is empty")
        else:
            image = Path(name) if Path(name).is_absolute() else path.parent / name
            yield Item(shown, str(image), None if image.is_file() else f"file not found ({image})")


def table_items(path: Path, column: str | None, header: bool, aliases: tuple[str, ...], what: str) -> Iterator[Item]:
    """One item per row of a CSV/TSV/JSONL/Parquet table: the chosen column's text as the payload."""
    if not path.is_file():
        raise DataError(f"--data {path} is not a file; expected a CSV, TSV, JSONL or Parquet file")
    suffix = table_suffix(path)
    if suffix in PARQUET_SUFFIXES:
        return _parquet_items(path, column, aliases, what)
    encoding, sample = _sniff(path)
    if suffix in JSONL_SUFFIXES:
        return _jsonl_items(path, encoding, column, aliases, what, is_json_array(sample))
    return _csv_items(path, encoding, sniff_delimiter(path, sample), column, header, aliases, what)


def _sniff(path: Path) -> tuple[str, str]:
    """The codec to stream the file with (judged on its first MiB as training judges a whole file) and that
    MiB decoded."""
    try:
        with open_file(path) as fh:
            head = fh.read(SNIFF_BYTES)
    except READ_ERRORS as exc:
        raise DataError(f"{path} cannot be read ({exc}); check the file") from None
    check_text(path, head)
    if not head.strip():
        raise DataError(f"{path} is empty; expected rows of {path.suffix.lstrip('.') or 'text'}")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", head.decode("utf-16", errors="replace")
    for cut in range(4):  # the MiB may end inside a multi-byte character
        try:
            return "utf-8-sig", head[: len(head) - cut].decode("utf-8-sig")
        except UnicodeDecodeError:
            continue
    text, found = decode_bytes(head)
    return ("utf-8-sig" if found.startswith("utf-8") else found), text


def _read_lines(path: Path, encoding: str, newline: str) -> Iterator[str]:
    """The file's lines; a compressed file damaged part-way ends the job with a DataError saying where (its end
    cannot be found, as with a field the csv module cannot read)."""
    read = 0  # lines: where a damaged file broke off
    try:
        with open_file(path, encoding, newline=newline) as fh:
            for text in fh:
                read += 1
                yield text
    except READ_ERRORS as exc:
        raise DataError(f"{path} cannot be decompressed after line {read:,} ({exc}); check the file") from None


def _lines(path: Path, encoding: str) -> Iterator[str]:
    for line in _read_lines(path, encoding, ""):
        yield line.replace("\x00", "")  # stray NUL bytes make the csv module raise mid-file


def _csv_items(
    path: Path,
    encoding: str,
    delimiter: str,
    column: str | None,
    header: bool,
    aliases: tuple[str, ...],
    what: str,
) -> Iterator[Item]:
    csv.field_size_limit(1 << 24)
    reader = csv.reader(_lines(path, encoding), delimiter=delimiter)
    records = _records(reader)
    first = next(records, None)
    if first is None:
        raise DataError(f"{path} holds no rows")
    head = first[1] if header else None
    if header:
        second = next(records, None)
        if second is None:
            raise DataError(f"{path} has a header but no data rows (or give --no-header)")
        pending = _chain(second, rest=records)
    else:
        pending = _chain(first, rest=records)
    sample = first[1]
    width = len(sample)
    index = 0 if width == 1 and column is None else resolve_column(column, head, width, aliases, what, 0, sample)
    for line, row in pending:
        if isinstance(row, csv.Error):
            yield Item(f"line {line}", "", f"{row}; the rest of the file is not read")
        elif index >= len(row):
            yield Item(f"line {line}", "", f"{len(row)} field(s), the {what} is field {index + 1}")
        elif head is not None and len(row) > len(head) and any(cell.strip() for cell in row[len(head) :]):
            # As training: an unquoted delimiter inside a field shifts every later column.
            why = f"{len(row)} fields, the header has {len(head)} (an unquoted {delimiter!r} inside a field?)"
            yield Item(f"line {line}", "", why)
        else:
            yield Item(f"line {line}", row[index])


def _records(reader: Any) -> Iterator[tuple[int, Any]]:
    """Non-blank records (lists of fields) with the line each starts on (a quoted field may span lines). A record
    the csv module cannot read (a field over 16 MiB) ends the table with its csv.Error: its end cannot be found."""
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, exc
            return
        if row and any(cell.strip() for cell in row):
            yield start, row
        start = reader.line_num + 1


def _chain(*first: T, rest: Iterator[T]) -> Iterator[T]:
    """``first``, then ``rest``: rows read ahead to look at, put back in front."""
    yield from first
    yield from rest


def _jsonl_items(
    path: Path, encoding: str, column: str | None, aliases: tuple[str, ...], what: str, array: bool = False
) -> Iterator[Item]:
    """Objects, one per line (or, ``array``, the elements of one JSON array, read whole: a JSON array has no
    lines to stream). The field is chosen from the keys of the first FIELD_SAMPLE objects, as training chooses it;
    an object without it, a broken line or a non-object is an error row."""
    lines = _json_array(path, encoding) if array else _json_lines(path, encoding)
    head = list(islice(lines, FIELD_SAMPLE))
    objects = [value for _, value, _ in head if isinstance(value, dict)]
    if not objects:
        raise DataError(f"no line among the first {len(head):,} of {path} is a JSON object; expected one per line")
    fields = list(dict.fromkeys(key for obj in objects for key in obj))
    if column is not None and column in fields:
        field = column
    elif len(fields) == 1 and column is None:
        field = fields[0]
    else:
        field = fields[resolve_column(column, fields, len(fields), aliases, what, 0, objects[0])]
    for number, value, error in _chain(*head, rest=lines):
        if error is not None:
            yield Item(f"line {number}", "", error)
        elif not isinstance(value, dict):
            yield Item(f"line {number}", "", f"a JSON {type(value).__name__}, not an object")
        elif field in value:
            yield Item(f"line {number}", cell_text(value[field]))
        else:
            yield Item(f"line {number}", "", f"no field {field!r}")


def _json_array(path: Path, encoding: str) -> Iterator[tuple[int, Any, str | None]]:
    try:
        with open_file(path, encoding, newline="") as fh:
            content = fh.read()
    except READ_ERRORS as exc:
        raise DataError(f"{path} cannot be read whole ({exc}); check the file") from None
    yield from json_array_rows(content, path)


def _json_lines(path: Path, encoding: str) -> Iterator[tuple[int, Any, str | None]]:
    """json_line_rows over the file's lines, streamed (split on newlines only)."""
    return json_line_rows(_read_lines(path, encoding, "\n"))


def _parquet_items(path: Path, column: str | None, aliases: tuple[str, ...], what: str) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} is not a readable Parquet file ({exc})") from None
    fields = list(table.schema_arrow.names)
    single = len(fields) == 1 and column is None
    field = fields[0] if single else fields[resolve_column(column, fields, len(fields), aliases, what, 0, fields)]
    row = 0
    for batch in table.iter_batches(batch_size=PARQUET_BATCH, columns=[field]):
        for value in batch.column(0).to_pylist():
            row += 1
            yield Item(f"row {row}", cell_text(value))
