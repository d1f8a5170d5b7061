"""Find raw training items: image files (label folders or a path,label manifest), text tables (CSV, TSV, JSONL,
Parquet; gzip-compressed ones too) and text files in label folders.

Ingest only locates and parses; decoding, validation and de-duplication happen in ``clean``.

    >>> table = read_table(Path("texts.csv"))  # doctest: +SKIP
    >>> table.rows[0]  # doctest: +SKIP
    ('line 2', 'the parcel was late', 'complaint')
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import os
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.dataset import DataError, DataReport

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
# Column names found without --text-column / --label-column, tried in this order; a header matches whatever its
# case, spaces, dashes and underscores ("Review Text" is review_text).
TEXT_ALIASES = (
    "text",
    "sentence",
    "review",
    "content",
    "document",
    "message",
    "body",
    "comment",
    "comment_text",
    "review_text",
    "tweet",
    "utterance",
    "query",
    "question",
    "sms",
    "abstract",
    "description",
    "headline",
    "title",
)
LABEL_ALIASES = ("label", "class", "category", "target", "sentiment", "intent", "y", "labels", "topic", "emotion")
PATH_ALIASES = ("path", "file", "filename", "image", "filepath", "image_path")
# Magic numbers of files people hand over by mistake instead of a text table.
BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04", b"%PDF", b"\x1f\x8b", b"PAR1", b"\x7fELF")
GZIP_MAGIC = b"\x1f\x8b"
# What reading a file can raise, a gzip-compressed one included (damaged data is zlib.error, a cut one EOFError).
READ_ERRORS = (OSError, EOFError, zlib.error)
# A text file in a label folder is read up to here: serving.preprocess reads a text's first 200,000 characters,
# which UTF-8 holds in at most 800,000 bytes.
MAX_TEXT_FILE_BYTES = 800_000


@dataclass(frozen=True)
class LabelledFile:
    """One image or text file to clean: its path, label, and how quarantine.csv names it."""

    path: Path
    label: str
    name: str


def hidden_part(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def find_images(data: Path, report: DataReport) -> list[LabelledFile]:
    """Image items from a folder of label folders, or from a manifest file (CSV/TSV/JSONL)."""
    if not data.exists():
        raise DataError(f"image data path {data} does not exist")
    if data.is_file():
        if data.suffix.lower() in IMAGE_EXTENSIONS:
            raise DataError(
                f"{data} is a single image; --data takes a folder with one sub-folder per label "
                "(DIR/<label>/<image>) or a manifest file (CSV/TSV with path,label columns, or JSONL)"
            )
        return read_manifest(data, report)
    return find_image_folders(data, report)


def walk_files(folder: Path, hidden: bool = False, prefix: str = "") -> Iterator[tuple[str, bool]]:
    """Every file under ``folder`` as (its path relative to the walk's root, whether it or a folder above it is
    hidden), in the order of sorting their whole paths (a folder's entries by name, each subfolder where its name
    falls), holding only the names of the folders being walked: sorting the whole tree up front kept one Path per
    file for the run (32 MiB for 100,000 images). Hidden files and folders are listed only with ``hidden``.
    Subfolders are entered by their own links only, not symlinks to folders."""
    try:
        with os.scandir(folder) as entries:  # the entries' types come with the listing: no stat per file
            names = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_file()) for e in entries)
    except (PermissionError, FileNotFoundError):
        return
    for name, is_folder, is_file in names:
        concealed = hidden_part(name)
        if concealed and not hidden:
            continue
        if is_folder:
            for rel, inside in walk_files(folder / name, hidden, f"{prefix}{name}/"):
                yield rel, inside or concealed
        elif is_file:
            yield prefix + name, concealed


def find_label_folders(
    root: Path, report: DataReport, what: str, refuse: Callable[[str], str | None] = lambda rel: None
) -> list[LabelledFile]:
    """An item for every file under ``root/<label>/`` (in sorted path order, so runs are reproducible).

    Hidden files and folders are ignored and counted; files directly in ``root`` have no label and are skipped.
    A file ``refuse`` gives a reason for (another type than ``what``) is counted as unreadable, since the user
    put it there.
    """
    found: list[LabelledFile] = []
    for rel, concealed in walk_files(root, hidden=True):
        if concealed:
            report.hidden_ignored += 1
            continue
        report.rows_read += 1
        parts = rel.split("/")
        if len(parts) < 2:
            report.skip("missing_label_skipped", rel, "file is not inside a label folder")
        elif reason := refuse(rel):
            report.skip("unreadable_skipped", rel, reason)
        else:
            found.append(LabelledFile(root / rel, parts[0].strip(), rel))
    if report.rows_read == 0:
        raise DataError(
            f"{what} folder {root} holds no files; expected one sub-folder per label with {what} files inside "
            f"(DIR/<label>/<file>), {'or give a path,label manifest file' if what == 'image' else 'or a table'}"
        )
    _refuse_split_folders(root, found)
    return found


# Folder names of a data set's own split: as label folders they would train a classifier of "train" vs "test".
SPLIT_FOLDERS = {"train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval", "holdout"}


def _refuse_split_folders(root: Path, found: list[LabelledFile]) -> None:
    """Stop when every label folder is a split folder (train/, test/): the user gave the data set's root, not its
    training folder (or a data set without label folders)."""
    labels = {item.label for item in found}
    if len(labels) < 2 or not all(label.lower() in SPLIT_FOLDERS for label in labels):
        return
    listed = ", ".join(sorted(labels))
    train = next((label for label in sorted(labels) if label.lower() in ("train", "training")), None)
    if train and any(item.label == train and item.name.count("/") >= 2 for item in found):
        raise DataError(
            f"{root}'s sub-folders ({listed}) are the data set's own split, each with folders inside, not labels; "
            f"give --data {root / train} (Kiln makes its own validation and test split; score a held-out folder "
            "with kiln predict)"
        )
    raise DataError(
        f"{root}'s sub-folders ({listed}) are the data set's own split, not labels: training needs one folder per "
        "label (DIR/<label>/<file>), or a path,label manifest"
    )


def find_image_folders(root: Path, report: DataReport) -> list[LabelledFile]:
    """Image files under ``root/<label>/`` (find_label_folders); files of other types are unreadable."""

    def refuse(rel: str) -> str | None:
        suffix = os.path.splitext(rel)[1].lower()
        return None if suffix in IMAGE_EXTENSIONS else f"not an image type ({suffix or 'no extension'})"

    found = find_label_folders(root, report, "image", refuse)
    if not found:
        raise DataError(
            f"image folder {root} has no image files in label folders ({report.rows_read} other file(s)); "
            f"expected DIR/<label>/<image> with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    return found


class UnreadableText(ValueError):
    """A file that cannot be one text; the message says why."""


def open_file(path: Path, encoding: str | None = None, newline: str | None = None) -> Any:
    """The file for reading, decompressed as it is read when gzip-compressed: bytes, or text in ``encoding``."""
    with open(path, "rb") as fh:
        packed = fh.read(2) == GZIP_MAGIC
    opener: Any = gzip.open if packed else open
    if encoding is None:
        return opener(path, "rb")
    return opener(path, "rt", encoding=encoding, errors="replace", newline=newline)


def read_text_file(path: Path) -> tuple[str, str]:
    """One file's text and its encoding (decode_bytes), read up to MAX_TEXT_FILE_BYTES (inside a gzip-compressed
    file); UnreadableText for a binary or unreadable file."""
    try:
        with open_file(path) as fh:
            raw = fh.read(MAX_TEXT_FILE_BYTES)
    except READ_ERRORS as exc:
        raise UnreadableText(f"cannot be read ({exc})") from None
    if looks_binary(raw):
        raise UnreadableText("not a text file (binary content)")
    return decode_bytes(raw)


def read_text_folder(root: Path, report: DataReport) -> Table:
    """A Table of the text files under ``root/<label>/`` (any name or extension: 20 Newsgroups' files have none),
    each file one text, named by its path relative to ``root``. Binary files (images, archives, PDFs) are
    unreadable; each file's encoding is found as a table's is (decode_bytes); a gzip-compressed file is read
    inside."""
    table = Table(format="folder", columns=("file", "label folder"))
    encodings: Counter[str] = Counter()
    for item in find_label_folders(root, report, "text"):
        try:
            text, encoding = read_text_file(item.path)
        except UnreadableText as exc:
            report.skip("unreadable_skipped", item.name, str(exc))
            continue
        encodings[encoding.split(" ")[0]] += 1
        table.rows.append((item.name, text, item.label))
    table.encoding = ", ".join(f"{name} ({n} files)" for name, n in encodings.most_common()) or "utf-8"
    table.delimiter = ""
    if not table.rows:
        raise DataError(
            f"text folder {root} has no readable text files in label folders ({report.rows_read} file(s) read); "
            "expected DIR/<label>/<file> with one text per file"
        )
    return table


_LISTED = re.compile(r"^(?:line|row) \d+: ")  # the row of a manifest item's name (manifest_item_name)


def manifest_item_name(where: str, listed: str) -> str:
    """A manifest item's name in quarantine.csv and label_issues.csv: its row ("line N", "row N") and its path
    as the manifest lists it."""
    return f"{where}: {listed}"


def listed_path(name: str) -> str:
    """The path an item's name holds: a folder item's name is its path; a manifest item's drops its row."""
    return _LISTED.sub("", name)


def read_manifest(path: Path, report: DataReport) -> list[LabelledFile]:
    """Items from a manifest with path and label columns (CSV/TSV) or fields (JSONL).

    Relative paths are resolved against the manifest's folder. Missing files are counted and
    quarantined; a manifest whose files are all missing stops.
    """
    table = read_table(path, report, text_column=None, label_column=None, text_aliases=PATH_ALIASES, what="path")
    base = path.parent
    found: list[LabelledFile] = []
    for where, raw_path, label in table.rows:
        name = raw_path.strip()
        if not name:
            report.skip("missing_file_skipped", where, "the path is empty")
            continue
        image = Path(name) if Path(name).is_absolute() else base / name
        if not label.strip():
            report.skip("missing_label_skipped", manifest_item_name(where, name), "label is empty")
            continue
        if not image.is_file():
            report.skip("missing_file_skipped", manifest_item_name(where, name), f"file not found ({image})")
            continue
        found.append(LabelledFile(image, label.strip(), manifest_item_name(where, name)))
    if table.rows and report.missing_file_skipped == len(table.rows):
        raise DataError(
            f"none of the {len(table.rows)} files listed in {path} exist (first: {table.rows[0][1]!r}); "
            f"relative paths are read from the manifest's folder {base.resolve()}"
        )
    return found


@dataclass
class Table:
    """Rows of (where, text, label) with raw strings, plus how the file was read.

    ``where`` names the row for quarantine.csv: "line N" (CSV/TSV/JSONL) or "row N" (Parquet).
    """

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    format: str = "csv"
    encoding: str = "utf-8"
    delimiter: str = ","
    columns: tuple[str, str] = ("text", "label")


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """Text and the encoding used. A UTF-8 file with a few bad bytes among valid accents stays UTF-8 (they become
    U+FFFD) rather than turning every accent into mojibake; other non-UTF-8 files are read as Windows-1252, then
    latin-1 (which maps every byte)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # errors="replace": a file cut inside a surrogate pair, or of an odd length, still reads
        return raw.decode("utf-16", errors="replace"), "utf-16"
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    replaced = raw.decode("utf-8-sig", errors="replace")
    bad = replaced.count("\ufffd")
    # A UTF-8 BOM, or valid multi-byte characters beside the bad bytes, say UTF-8 with a few damaged ones; neither,
    # a legacy encoding (a short cp1252 file with one accent has a single bad byte).
    multibyte = len(replaced) - len(replaced.encode("ascii", "ignore")) - bad
    if (multibyte or raw.startswith(codecs.BOM_UTF8)) and bad <= max(1, len(raw) // 1000):
        return replaced, f"utf-8 ({bad} invalid byte(s) replaced)"
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def looks_binary(raw: bytes) -> bool:
    """Whether bytes are clearly not text (images, archives, executables): a known magic number, or over 5% control
    bytes in the first 8 KiB."""
    head = raw[:8192]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 13))
    return head.startswith(BINARY_MAGIC) or bool(head and control / len(head) > 0.05)


def _gunzip(raw: bytes, path: Path) -> bytes:
    """A gzip-compressed table's content, decompressed from the bytes already read, or a DataError saying it is
    damaged."""
    try:
        return gzip.decompress(raw)
    except READ_ERRORS as exc:
        raise DataError(f"{path} is gzip-compressed but cannot be decompressed ({exc}); check the file") from None


def table_suffix(path: Path) -> str:
    """The suffix that names a table's format, under a ``.gz`` one (``texts.csv.gz`` is a CSV)."""
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[-2] if len(suffixes) > 1 and suffixes[-1] == ".gz" else path.suffix.lower()


# What to do with the binary files people hand over most often instead of a table.
BINARY_HINTS = {
    ".xlsx": "a spreadsheet workbook: export its sheet as CSV (UTF-8)",
    ".xls": "a spreadsheet workbook: export its sheet as CSV (UTF-8)",
    ".ods": "a spreadsheet workbook: export its sheet as CSV (UTF-8)",
    ".zip": "a zip archive: unpack it and give the table, or the folder of label folders, inside",
    ".tar": "a tar archive: unpack it and give the table, or the folder of label folders, inside",
    ".tgz": "a tar archive: unpack it and give the table, or the folder of label folders, inside",
}


def check_text(path: Path, raw: bytes) -> None:
    """Stop on files that are clearly not text (images, archives, executables) instead of parsing noise."""
    if looks_binary(raw):
        hint = BINARY_HINTS.get(path.suffix.lower(), "it looks like a binary file")
        raise DataError(
            f"{path} is not a text table ({hint}); give a CSV, TSV, JSONL or Parquet file of texts and labels"
        )


def sniff_delimiter(path: Path, sample: str) -> str:
    if table_suffix(path) in (".tsv", ".tab"):
        return "\t"
    try:
        return csv.Sniffer().sniff(sample[:65536], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _column_error(spec: str | None, columns: list[str], sample: Any, what: str, aliases: tuple[str, ...]) -> DataError:
    wanted = repr(spec) if spec is not None else f"named any of {', '.join(aliases)}"
    fix = (
        "An image manifest needs a header with a path column (path, file, filename or image) and a label column"
        if what == "path"
        else f"Pass --{what}-column with one of those names or a 0-based index"
    )
    return DataError(f"no {what} column {wanted}; columns found: {columns}; first row: {sample!r}. {fix}")


def resolve_column(
    spec: str | None,
    columns: list[str] | None,
    width: int,
    aliases: tuple[str, ...],
    what: str,
    default: int,
    sample: Any,
) -> int:
    """Column index from a name, a 0-based index, or (if None) the first alias found among the columns.

    ``columns`` is the header (or the JSON/Parquet field names); None for a headerless table. An exact
    name wins over an index, so a column literally named "0" is found by name.
    """
    shown = columns if columns is not None else [str(i) for i in range(width)]
    if spec is not None and columns is not None and spec in columns:
        return columns.index(spec)
    if spec is not None and spec.strip().isdigit():
        if int(spec) >= width:
            raise _column_error(spec, shown, sample, what, aliases)
        return int(spec)
    if columns is None:
        if spec is not None:
            raise DataError(
                f"--{what}-column {spec!r} is a name, but the file has no header; give a 0-based index "
                f"(the first row has {width} column(s): {sample!r})"
            )
        return default
    normalised = [_column_key(c) for c in columns]
    for name in [spec] if spec is not None else list(aliases):
        if _column_key(name) in normalised:
            return normalised.index(_column_key(name))
    raise _column_error(spec, shown, sample, what, aliases)


def _column_key(name: str) -> str:
    """A column name as matched: lower case, without spaces, dashes or underscores."""
    return re.sub(r"[\s_\-]+", "", name.lower())


def _columns(
    text_column: str | None,
    label_column: str | None,
    columns: list[str] | None,
    width: int,
    text_aliases: tuple[str, ...],
    what: str,
    sample: Any,
) -> tuple[int, int]:
    """The (text, label) column indices; they must differ."""
    ti = resolve_column(text_column, columns, width, text_aliases, what, 0, sample)
    li = resolve_column(label_column, columns, width, LABEL_ALIASES, "label", 1, sample)
    if ti == li:
        raise DataError(f"{what} and label columns are the same column ({ti}); pass --{what}-column and --label-column")
    return ti, li


def read_table(
    path: Path,
    report: DataReport | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
    text_aliases: tuple[str, ...] = TEXT_ALIASES,
    what: str = "text",
) -> Table:
    """Parse a table of texts (or, for manifests, paths) and labels; the format follows the suffix.

    Rows too short for both columns and broken JSON lines are skipped as malformed.
    """
    report = report or DataReport(source=str(path))
    if not path.is_file():
        raise DataError(f"{what} data path {path} is not a file; expected a CSV, TSV, JSONL or Parquet file")
    suffix = table_suffix(path)
    if suffix in PARQUET_SUFFIXES:
        table = _read_parquet(path, report, text_column, label_column, text_aliases, what)
    else:
        raw = path.read_bytes()
        if raw.startswith(GZIP_MAGIC):
            raw = _gunzip(raw, path)
        check_text(path, raw)
        content, encoding = decode_bytes(raw)
        content = content.replace("\x00", "")  # stray NUL bytes make the csv module raise mid-file
        if not content.strip():
            raise DataError(f"{path} is empty; expected a header row and data rows")
        if suffix in JSONL_SUFFIXES:
            table = _read_jsonl(path, content, report, text_column, label_column, text_aliases, what)
        else:
            table = _read_csv(path, content, report, text_column, label_column, header, text_aliases, what)
        table.encoding = encoding
    if report.rows_read == 0:
        raise DataError(f"{path} has a header but no data rows; add rows of {what} and label")
    log.info("read %d rows from %s (%s, %s)", report.rows_read, path, table.format, table.encoding)
    return table


def _read_csv(
    path: Path,
    content: str,
    report: DataReport,
    text_column: str | None,
    label_column: str | None,
    header: bool,
    text_aliases: tuple[str, ...],
    what: str,
) -> Table:
    delimiter = sniff_delimiter(path, content)
    csv.field_size_limit(1 << 24)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    start = 1  # a quoted field may span lines: name a record by the line it starts on
    for row in reader:
        if row and any(cell.strip() for cell in row):
            rows.append((start, row))
        start = reader.line_num + 1
    head = rows.pop(0)[1] if header and rows else None
    width = len(head) if head is not None else max((len(r) for _, r in rows[:100]), default=0)
    sample = dict(zip(head, rows[0][1], strict=False)) if head and rows else rows[0][1] if rows else head
    ti, li = _columns(text_column, label_column, head, width, text_aliases, what, sample)
    table = Table(format="tsv" if delimiter == "\t" else "csv", delimiter=delimiter)
    table.columns = (head[ti], head[li]) if head else (str(ti), str(li))
    for line, row in rows:
        report.rows_read += 1
        if max(ti, li) >= len(row):
            report.skip("malformed_skipped", f"line {line}", f"{len(row)} field(s), needs {max(ti, li) + 1}")
        elif head is not None and len(row) > len(head) and any(cell.strip() for cell in row[len(head) :]):
            # An unquoted delimiter inside a field shifts every later column: the label would be wrong.
            reason = f"{len(row)} fields, the header has {len(head)} (an unquoted {delimiter!r} inside a field?)"
            report.skip("malformed_skipped", f"line {line}", reason)
        else:
            table.rows.append((f"line {line}", row[ti], row[li]))
    return table


def cell_text(value: Any) -> str:
    """A JSON or Parquet value as text: None is empty, bytes are decoded, numbers and booleans are written
    as JSON writes them, anything else (dates, decimals) as its string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, bool | int | float | list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _after_space(content: str, pos: int) -> int:
    """The first position from ``pos`` on that is not JSON whitespace."""
    found = _JSON_SPACE.match(content, pos)
    return found.end() if found else pos


def is_json_array(content: str) -> bool:
    """Whether a .json file holds one array (of objects, as many tools export) rather than an object per line."""
    return content.lstrip(" \t\r\n").startswith("[")


def json_array_rows(content: str, path: Path) -> Iterator[tuple[int, Any, None]]:
    """(line, element, None) for each element of a file's top-level JSON array, the line it starts on naming it
    (the shape of json_line_rows' rows, which name JSONL rows by their line), read one at a time. A syntax error
    stops with a DataError saying where: past it the array's elements cannot be found."""
    decoder = json.JSONDecoder()
    pos = _after_space(content, content.index("[") + 1)
    line, counted = 1, 0
    while not content.startswith("]", pos):
        line, counted = line + content.count("\n", counted, pos), pos
        if pos >= len(content):
            raise DataError(f"{path} is not valid JSON: its array is not closed (a cut file?); add the closing ']'")
        try:
            value, end = decoder.raw_decode(content, pos)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); the array cannot be "
                "read past it"
            ) from None
        yield line, value, None
        pos = _after_space(content, end)
        if content.startswith(",", pos):
            pos = _after_space(content, pos + 1)
        elif not content.startswith("]", pos):
            at = line + content.count("\n", counted, pos)
            raise DataError(f"{path} is not valid JSON at line {at}: expected ',' or ']' after an element")
    if content[_after_space(content, pos + 1) :].strip():
        at = 1 + content.count("\n", 0, pos)
        raise DataError(f"{path} is not valid JSON: more follows the array that ends on line {at}")


def json_line_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, value, None) per non-blank JSONL line, or (line number, None, why) for one that is not JSON.
    ``lines`` must be split on newlines only: str.splitlines also breaks at U+2028 and U+0085, which JSON strings
    may hold."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"


def _json_rows(content: str, path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """The rows of a JSONL file's content, or of a JSON array file's elements."""
    return json_array_rows(content, path) if is_json_array(content) else json_line_rows(content.split("\n"))


def _read_jsonl(
    path: Path,
    content: str,
    report: DataReport,
    text_column: str | None,
    label_column: str | None,
    text_aliases: tuple[str, ...],
    what: str,
) -> Table:
    objects: list[tuple[int, dict[str, Any]]] = []
    broken: list[tuple[int, str]] = []
    for number, value, error in _json_rows(content, path):
        if error is not None:
            broken.append((number, error))
        elif isinstance(value, dict):
            objects.append((number, value))
        else:
            broken.append((number, f"a JSON {type(value).__name__}, not an object"))
    if not objects:
        raise DataError(
            f"no line of {path} is a JSON object ({len(broken)} broken line(s), first: line {broken[0][0]}: "
            f'{broken[0][1]}); expected one object per line such as {{"{what}": ..., "label": ...}}'
            if broken
            else f"{path} holds no JSON objects"
        )
    fields = list(dict.fromkeys(k for _, obj in objects[:1000] for k in obj))
    sample = objects[0][1]
    ti, li = _columns(text_column, label_column, fields, len(fields), text_aliases, what, sample)
    tf_, lf = fields[ti], fields[li]
    table = Table(format="jsonl", columns=(tf_, lf))
    for number, reason in broken:
        report.rows_read += 1
        report.skip("malformed_skipped", f"line {number}", reason)
    for number, obj in objects:
        report.rows_read += 1
        missing = [f for f in (tf_, lf) if f not in obj]
        if missing:
            report.skip("malformed_skipped", f"line {number}", f"no field {missing[0]!r}")
            continue
        table.rows.append((f"line {number}", cell_text(obj[tf_]), cell_text(obj[lf])))
    return table


def _read_parquet(
    path: Path,
    report: DataReport,
    text_column: str | None,
    label_column: str | None,
    text_aliases: tuple[str, ...],
    what: str,
) -> Table:
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} is not a readable Parquet file ({exc})") from None
    fields = list(data.column_names)
    sample = data.slice(0, 1).to_pylist()[0] if data.num_rows else {}
    ti, li = _columns(text_column, label_column, fields, len(fields), text_aliases, what, sample)
    tf_, lf = fields[ti], fields[li]
    texts, labels = data.column(tf_).to_pylist(), data.column(lf).to_pylist()
    table = Table(format="parquet", encoding="parquet", columns=(tf_, lf))
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        report.rows_read += 1
        table.rows.append((f"row {i + 1}", cell_text(text), cell_text(label)))
    return table
