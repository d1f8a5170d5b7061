"""The image file out of a /classify_image body (multipart/form-data), or what is wrong with the form.

python-multipart's streaming parser is driven directly: the request body is already in memory and under the
upload limit, so Starlette's form layer (an UploadFile and a spooled temporary file per part, every part's data
kept) is work the route does not need; it was about 25 us of a 455-byte PNG's answer. Only the data of the first
part named ``image`` is kept; the other parts are counted and named in the error. It runs with the rest of the
classify work (serving.service.Handlers), so a large hostile form never holds up the event loop.

>>> body = b'--b\\r\\nContent-Disposition: form-data; name="image"; filename="a.png"\\r\\n\\r\\nPNG\\r\\n--b--\\r\\n'
>>> image_file("multipart/form-data; boundary=b", body)
b'PNG'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD = "image"
MAX_PARTS = 40  # a form with more parts than this is refused before it is read further
USAGE = "send curl -F image=@photo.png ..."


class _Form:
    """Callbacks for MultipartParser: each part's name and whether it is a file; the data of the image part."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.image: bytes | None = None
        self.image_is_file = False
        self._chunks: list[bytes] = []
        self._keep = False
        self._header = b""
        self._value = b""
        self._disposition = b""
        self.ended = False  # the closing boundary was read

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        if len(self.names) >= MAX_PARTS:
            raise MultipartParseError(f"more than {MAX_PARTS} parts")
        self._disposition = b""
        self._keep = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        if not self._disposition:
            raise MultipartParseError("a part has no Content-Disposition header")
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self.names.append(name)
        self._keep = name == FIELD and self.image is None
        if self._keep:
            self.image_is_file = b"filename" in options
            self._chunks = []

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._keep:
            self._chunks.append(data[start:end])

    def _part_end(self) -> None:
        if self._keep:
            self.image = b"".join(self._chunks)
            self._keep = False

    def _end(self) -> None:
        self.ended = True


def image_file(content_type: str, body: bytes) -> bytes | str:
    """The bytes of the file in field ``image`` (the first such part), or what is wrong with the form."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if not boundary:
        return "malformed multipart/form-data body: the content type has no boundary"
    form = _Form()
    try:
        parser = MultipartParser(boundary, form.callbacks())
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # noqa: BLE001 - any parse failure is the client's malformed body
        return f"malformed multipart/form-data body: {exc}"
    if not form.ended:
        return "malformed multipart/form-data body: it ends before its closing boundary (cut off?)"
    if form.image is None:
        sent = ", ".join(sorted(set(form.names))) or "none"
        return f"missing file field 'image' (fields sent: {sent}); {USAGE}"
    if not form.image_is_file:
        return "field 'image' must be a file upload, not a text value (curl -F image=@photo.png ...)"
    return form.image
