"""Find raw training items: image files under label folders, rows of a CSV/TSV text table.

Ingest only locates and parses; decoding, validation and de-duplication happen in ``clean``.

    >>> table = read_table(Path("texts.csv"))  # doctest: +SKIP
    >>> table.rows[0]  # doctest: +SKIP
    (2, 'the parcel was late', 'complaint')
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from training.data import DataError, DataReport

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
TEXT_ALIASES = ("text", "sentence", "review", "content", "document", "message", "body")
LABEL_ALIASES = ("label", "class", "category", "target", "sentiment", "intent", "y")


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def find_images(root: Path, report: DataReport) -> list[tuple[Path, str]]:
    """(path, label) for every file under ``root/<label>/`` (sorted, so runs are reproducible).

    Hidden files and folders are ignored; files directly in ``root`` have no label and are skipped.
    Files with other extensions are counted as unreadable, since the user put them there.
    """
    if not root.exists():
        raise DataError(f"image data path {root} does not exist")
    if not root.is_dir():
        raise DataError(f"image data must be a folder with one sub-folder per label; {root} is a file")
    found: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(_hidden(part) for part in rel.parts):
            report.hidden_ignored += path.is_file()
            continue
        if not path.is_file():
            continue
        report.rows_read += 1
        if len(rel.parts) < 2:
            report.skip("missing_label_skipped", str(rel), "file is not inside a label folder")
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            report.skip("unreadable_skipped", str(rel), f"not an image type ({path.suffix or 'no extension'})")
        else:
            found.append((path, rel.parts[0]))
    return found


@dataclass
class Table:
    """Rows of (line number, text, label) with raw strings, plus how the file was read."""

    rows: list[tuple[int, str, str]] = field(default_factory=list)
    encoding: str = "utf-8"
    delimiter: str = ","
    columns: tuple[str, str] = ("text", "label")


def _decode(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        # latin-1 maps every byte, so legacy-encoded files still load (accents may be off).
        return raw.decode("latin-1"), "latin-1"


def _delimiter(path: Path, sample: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    try:
        return csv.Sniffer().sniff(sample[:65536], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _resolve(spec: str | None, header: list[str] | None, aliases: tuple[str, ...], what: str) -> int:
    """Column index from a name, a 0-based index, or (if None) the first alias found in the header."""
    if spec is not None and spec.strip().isdigit():
        return int(spec)
    if header is None:
        if spec is not None:
            raise DataError(f"--{what}-column {spec!r} is a name, but the file has no header; give a 0-based index")
        return 0 if what == "text" else 1
    normalised = [h.strip().lower() for h in header]
    for name in [spec] if spec is not None else list(aliases):
        if name.strip().lower() in normalised:
            return normalised.index(name.strip().lower())
    wanted = repr(spec) if spec is not None else f"any of {', '.join(aliases)}"
    raise DataError(
        f"no {what} column {wanted} in header {header}; pass --{what}-column with a header name or 0-based index"
    )


def read_table(
    path: Path,
    report: DataReport | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
) -> Table:
    """Parse a CSV/TSV of texts and labels. Rows too short for both columns are skipped as malformed."""
    report = report or DataReport(source=str(path))
    if not path.is_file():
        raise DataError(f"text data path {path} is not a file; expected a CSV or TSV with text and label columns")
    content, encoding = _decode(path.read_bytes())
    content = content.replace("\x00", "")  # NUL bytes make the csv module raise mid-file
    delimiter = _delimiter(path, content)
    csv.field_size_limit(1 << 24)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    head = next(reader, None) if header else None
    if header and head is None:
        raise DataError(f"{path} is empty; expected a header row and data rows")
    ti = _resolve(text_column, head, TEXT_ALIASES, "text")
    li = _resolve(label_column, head, LABEL_ALIASES, "label")
    if ti == li:
        raise DataError(f"text and label columns are the same column ({ti}); pass --text-column and --label-column")
    table = Table(encoding=encoding, delimiter=delimiter)
    table.columns = (head[ti], head[li]) if head else (str(ti), str(li))
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue  # blank lines are layout, not data
        report.rows_read += 1
        line = reader.line_num
        if max(ti, li) >= len(row):
            report.skip("malformed_skipped", f"line {line}", f"{len(row)} field(s), needs {max(ti, li) + 1}")
            continue
        table.rows.append((line, row[ti], row[li]))
    log.info("read %d rows from %s (%s, delimiter %r)", report.rows_read, path, encoding, delimiter)
    return table
