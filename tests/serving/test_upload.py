"""serving.upload: the image file out of a multipart body, as clients (httpx, curl) build them."""

from __future__ import annotations

import httpx
import pytest

from serving.upload import MAX_PARTS, image_file
from tests.conftest import png_bytes


def _form(files: list | None = None, data: dict | None = None) -> tuple[str, bytes]:
    """The content type and body httpx sends for these parts."""
    request = httpx.Request("POST", "http://kiln/classify_image", files=files, data=data)
    return request.headers["content-type"], request.read()


def test_the_image_part_comes_back_byte_for_byte_among_other_fields() -> None:
    # a file whose bytes hold CRLFs, dashes and a fake boundary line must not be cut
    payload = png_bytes() + b"\r\n--not-the-boundary\r\n\r\n--" + bytes(range(256))
    content_type, body = _form(files=[("note", ("n.txt", b"hello", "text/plain")), ("image", ("a.png", payload))])
    assert image_file(content_type, body) == payload


def test_the_first_image_part_wins() -> None:
    content_type, body = _form(files=[("image", ("a.png", b"first")), ("image", ("b.png", b"second"))])
    assert image_file(content_type, body) == b"first"


def test_a_missing_image_field_names_the_fields_sent() -> None:
    content_type, body = _form(files=[("picture", ("a.png", b"x"))], data={"caption": "cat"})
    answer = image_file(content_type, body)
    assert isinstance(answer, str) and "missing file field 'image'" in answer and "caption, picture" in answer


def test_a_text_value_in_field_image_is_refused() -> None:
    content_type, body = _form(files=[("other", ("o.bin", b"x"))], data={"image": "/etc/passwd"})
    assert image_file(content_type, body) == (
        "field 'image' must be a file upload, not a text value (curl -F image=@photo.png ...)"
    )


@pytest.mark.parametrize(
    "content_type,body,fragment",
    [
        ("multipart/form-data", b"--x\r\n\r\n", "has no boundary"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Type: image/png\r\n\r\nabc\r\n--x--\r\n", "Disposition"),
        ("multipart/form-data; boundary=x", b"garbage that is no form at all", "malformed"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\nab\r\n--x',
            "cut off",
        ),
    ],
)
def test_malformed_forms_say_so(content_type: str, body: bytes, fragment: str) -> None:
    answer = image_file(content_type, body)
    assert isinstance(answer, str) and fragment in answer


def test_a_form_of_too_many_parts_is_refused() -> None:
    fields = {f"f{i}": "x" for i in range(MAX_PARTS)}
    content_type, body = _form(files=[("image", ("a.png", b"png"))], data=fields)
    answer = image_file(content_type, body)
    assert isinstance(answer, str) and f"more than {MAX_PARTS} parts" in answer
    fewer = dict(list(fields.items())[: MAX_PARTS - 1])
    assert image_file(*_form(files=[("image", ("a.png", b"png"))], data=fewer)) == b"png"
