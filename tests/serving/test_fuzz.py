"""Property-based fuzzing of both routes (hypothesis): random bodies, content types and multipart parts never
get a 5xx, and the server stays up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.conftest import png_bytes
from tests.serving.test_service import _app

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
TEXT_BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(st.text(max_size=80), max_size=8).map(lambda texts: json.dumps({"texts": texts}).encode()),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "multipart/form-data", "multipart/form-data; boundary=x", "", "image/png"]
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory):
    from serving.preprocess import ImageSpec, TextSpec
    from tests.conftest import IMAGE_LABELS, TEXT_LABELS, onnx_image_model, onnx_text_model, register_onnx

    root: Path = tmp_path_factory.mktemp("fuzz") / "store"
    register_onnx(
        root, "image", onnx_image_model(IMAGE_LABELS), ImageSpec(labels=IMAGE_LABELS, height=8, width=8).to_dict()
    )
    text_spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "good", "bad", "film"), max_length=6)
    register_onnx(root, "text", onnx_text_model(TEXT_LABELS, 5, 6), text_spec.to_dict())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KILN_STORE", str(root))
        with TestClient(_app()) as client:
            yield client


@FUZZ
@given(body=TEXT_BODIES, content_type=CONTENT_TYPES)
def test_classify_text_never_answers_5xx(fuzz_client: TestClient, body: bytes, content_type: str) -> None:
    r = fuzz_client.post("/classify_text", content=body, headers={"content-type": content_type})
    assert r.status_code < 500, (r.status_code, r.text[:300])


@FUZZ
@given(
    payload=st.one_of(st.binary(max_size=400), st.just(png_bytes()).map(lambda b: b[: len(b) // 2])),
    field=st.sampled_from(["image", "file", "IMAGE"]),
    filename=st.text(max_size=30),
    part_type=st.text(max_size=30),
)
def test_classify_image_never_answers_5xx(
    fuzz_client: TestClient, payload: bytes, field: str, filename: str, part_type: str
) -> None:
    r = fuzz_client.post("/classify_image", files={field: (filename or "x", payload, part_type or "image/png")})
    assert r.status_code < 500, (r.status_code, r.text[:300])


@FUZZ
@given(body=st.binary(max_size=400), content_type=CONTENT_TYPES)
def test_classify_image_raw_bodies_never_answer_5xx(fuzz_client: TestClient, body: bytes, content_type: str) -> None:
    r = fuzz_client.post("/classify_image", content=body, headers={"content-type": content_type})
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert fuzz_client.get("/livez").status_code == 200
