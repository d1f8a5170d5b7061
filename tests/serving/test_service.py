"""The service in-process (BentoML's ASGI app) with real ONNX models in a real store."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.conftest import IMAGE_LABELS, TEXT_LABELS, png_bytes


@functools.cache
def _app():
    """One ASGI app per session (BentoML registers its metrics per app); each TestClient context
    runs a new lifespan, which builds a new service instance that reads KILN_STORE afresh."""
    from serving.service import Kiln

    return Kiln.to_asgi()


def _client(store: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("KILN_STORE", str(store))
    return TestClient(_app())


@pytest.fixture()
def client(onnx_store: Path, monkeypatch: pytest.MonkeyPatch):
    with _client(onnx_store, monkeypatch) as c:
        yield c


def test_classify_image_returns_label_scores_and_model(client: TestClient) -> None:
    r = client.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in IMAGE_LABELS
    assert set(body["scores"]) == set(IMAGE_LABELS)
    assert body["score"] == max(body["scores"].values())
    assert abs(sum(body["scores"].values()) - 1) < 1e-4
    assert body["model"] == {"name": "kiln-image", "version": "v0001", "variant": "fp32"}


@pytest.mark.parametrize("mode,size", [("L", (5, 300)), ("RGBA", (64, 64)), ("P", (9, 9)), ("CMYK", (30, 20))])
def test_classify_image_accepts_any_size_and_mode(client: TestClient, mode: str, size: tuple[int, int]) -> None:
    buf = io.BytesIO()
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    Image.new(mode, size).save(buf, format=fmt)
    r = client.post("/classify_image", files={"image": ("x", buf.getvalue(), "application/octet-stream")})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "files,data,fragment",
    [
        ({"picture": ("a.png", png_bytes(), "image/png")}, None, "missing file field 'image'"),
        ({"image": ("a.png", b"", "image/png")}, None, "empty"),
        ({"image": ("a.png", b"GIF89a but not really", "image/gif")}, None, "not a recognised image format"),
        ({"image": ("a.png", png_bytes((200, 200))[:120], "image/png")}, None, "truncated or corrupt"),
        ({"image": (None, "/etc/passwd")}, None, "file upload"),  # a text field is never read as a path
    ],
)
def test_classify_image_bad_input_gets_400_with_message(client: TestClient, files, data, fragment: str) -> None:
    r = client.post("/classify_image", files=files, data=data)
    assert r.status_code == 400, r.text
    assert fragment in r.text
    assert client.get("/livez").status_code == 200  # still up


def test_classify_image_json_body_gets_415(client: TestClient) -> None:
    r = client.post("/classify_image", json={"image": "abc"})
    assert r.status_code == 415
    assert "multipart/form-data" in r.json()["error"]


def test_oversized_upload_gets_413(onnx_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 10 * 1024 * 1024  # the default, KILN_MAX_UPLOAD_BYTES
    with _client(onnx_store, monkeypatch) as c:
        r = c.post("/classify_image", files={"image": ("big.png", b"x" * (limit + 1), "image/png")})
        assert r.status_code == 413
        assert "KILN_MAX_UPLOAD_BYTES" in r.json()["error"]

        def chunks():  # no Content-Length: the guard must count the streamed body
            for _ in range(11):
                yield b" " * (1024 * 1024)

        r = c.post("/classify_text", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/classify_text", json={"texts": ["good film"]}).status_code == 200


# What the fixture's text model (tests/conftest.py onnx_text_model, seeded) answers for each text alone: only
# a text of unknown words comes out "neg", and the "pos" texts all have different scores.
ORDER_TEXTS = {
    "bad bad bad": "pos",
    "unknown words only": "neg",
    "good good good": "pos",
    "bad bad film": "pos",
    "good film": "pos",
}


def test_classify_text_predicts_in_order(client: TestClient) -> None:
    texts = list(ORDER_TEXTS)
    alone = []
    for text in texts:
        r = client.post("/classify_text", json={"texts": [text]})
        assert r.status_code == 200, r.text
        alone.append(r.json()["predictions"][0])
    assert [p["label"] for p in alone] == list(ORDER_TEXTS.values())
    assert len({p["score"] for p in alone}) == len(texts)  # every item is recognisable by its scores

    for batch in (texts, texts[::-1]):
        r = client.post("/classify_text", json={"texts": batch})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [p["label"] for p in body["predictions"]] == [ORDER_TEXTS[t] for t in batch]
        for text, prediction in zip(batch, body["predictions"], strict=True):  # the i-th answer is the i-th text's
            assert prediction == alone[texts.index(text)], text
            assert set(prediction["scores"]) == set(TEXT_LABELS)
        assert body["model"]["version"] == "v0001"


def test_requests_answered_together_keep_their_own_answers_and_errors(client: TestClient) -> None:
    """Under load the guard answers waiting requests together (one model run per model): each still gets what it
    gets alone, and a broken one among them only its own error."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from serving.service import RequestGuard

    texts = list(ORDER_TEXTS)
    alone = {t: client.post("/classify_text", json={"texts": [t, t[::-1]]}).json()["predictions"] for t in texts}
    image = client.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")}).json()
    handlers = RequestGuard.handlers
    assert handlers is not None
    sizes: list[int] = []
    first = threading.Event()
    answer_all = handlers.answer_all

    def slow_first(requests):  # type: ignore[no-untyped-def]
        sizes.append(len(requests))
        if not first.is_set():  # the first batch waits, so the others queue up behind it
            first.set()
            time.sleep(0.3)
        return answer_all(requests)

    def send(i: int):  # type: ignore[no-untyped-def]
        if i % 3 == 0:
            text = texts[i % len(texts)]
            return "text", text, client.post("/classify_text", json={"texts": [text, text[::-1]]})
        data = png_bytes() if i % 3 == 1 else b"not an image"
        return "image", data, client.post("/classify_image", files={"image": ("a.png", data, "image/png")})

    handlers.answer_all = slow_first  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(send, range(36)))
    finally:
        handlers.answer_all = answer_all  # type: ignore[method-assign]
    assert max(sizes) > 1, sizes  # some requests were answered together
    for kind, sent, r in answers:
        if kind == "text":
            assert r.status_code == 200 and r.json()["predictions"] == alone[sent], (sent, r.text)
        elif sent == b"not an image":
            assert r.status_code == 400 and "not a usable image" in r.json()["error"], r.text
        else:
            assert r.status_code == 200 and r.json() == image, r.text


def test_a_batch_that_fails_is_answered_request_by_request(client: TestClient) -> None:
    """A failure in a shared model run must not fail every request in it: each is run again alone."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from serving.service import RequestGuard

    handlers = RequestGuard.handlers
    assert handlers is not None
    results = handlers.results
    batched: list[int] = []

    def fails_when_shared(jobs):  # type: ignore[no-untyped-def]
        if len(jobs) > 1:
            batched.append(len(jobs))
            raise RuntimeError("a shared run failed")
        if not batched:
            time.sleep(0.05)  # requests queue up behind the first ones
        return results(jobs)

    texts = list(ORDER_TEXTS)
    handlers.results = fails_when_shared  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda t: client.post("/classify_text", json={"texts": [t]}), texts * 8))
    finally:
        handlers.results = results  # type: ignore[method-assign]
    assert batched, "no requests were answered together"
    assert [r.status_code for r in answers] == [200] * len(answers)
    assert [r.json()["predictions"][0]["label"] for r in answers] == [ORDER_TEXTS[t] for t in texts * 8]


@pytest.mark.parametrize(
    "body,fragment",
    [
        (b'{"texts": []}', "at least 1"),
        (b'{"texts": ' + str(["a"] * 257).replace("'", '"').encode() + b"}", "at most 256"),
        (b'{"texts": [1, 2]}', "valid string"),
        (b'{"texts": "good film"}', "valid array"),
        (b'{"text": ["good"]}', "Field required"),
        (b"this is not json", "Invalid JSON"),
        (b'{"texts": ["good", "   "]}', "have no words"),
        (b'{"texts": ["good", "?!  ..."]}', "texts[1] have no words"),  # blank once standardised, as in training
    ],
)
def test_classify_text_bad_input_gets_400_with_message(client: TestClient, body: bytes, fragment: str) -> None:
    r = client.post("/classify_text", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert fragment in r.text


def test_task_without_production_model_gets_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.preprocess import TextSpec
    from tests.conftest import onnx_text_model, register_onnx

    spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "good"), max_length=4)
    register_onnx(tmp_path / "store", "text", onnx_text_model(TEXT_LABELS, 3, 4), spec.to_dict())
    with _client(tmp_path / "store", monkeypatch) as c:
        r = c.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")})
        assert r.status_code == 503
        assert "kiln run --task image" in r.json()["error"]
        assert c.post("/classify_text", json={"texts": ["good"]}).status_code == 200


def test_empty_store_starts_and_picks_up_a_first_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.preprocess import TextSpec
    from tests.conftest import onnx_text_model, register_onnx

    monkeypatch.setenv("KILN_RELOAD_INTERVAL", "0.2")
    monkeypatch.setenv("KILN_TASKS", "text")  # this server must serve texts before it is ready
    with _client(tmp_path / "store", monkeypatch) as c:
        assert c.get("/livez").status_code == 200
        assert c.get("/readyz").status_code == 503
        assert c.post("/classify_text", json={"texts": ["good"]}).status_code == 503
        spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "good"), max_length=4)
        register_onnx(tmp_path / "store", "text", onnx_text_model(TEXT_LABELS, 3, 4), spec.to_dict())
        _wait_for(lambda: c.get("/readyz").status_code == 200)
        r = c.post("/classify_text", json={"texts": ["good"]})
        assert r.status_code == 200 and r.json()["model"]["version"] == "v0001"


def _wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_promotion_and_rollback_reach_a_running_server(onnx_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.preprocess import TextSpec
    from serving.store import ModelStore
    from tests.conftest import onnx_text_model, register_onnx

    monkeypatch.setenv("KILN_RELOAD_INTERVAL", "0.2")
    store = ModelStore(onnx_store)
    spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", "good", "bad", "film"), max_length=6)
    register_onnx(onnx_store, "text", onnx_text_model(TEXT_LABELS, 5, 6), spec.to_dict(), promote=False)

    def served() -> str:
        r = c.post("/classify_text", json={"texts": ["good film"]})
        assert r.status_code == 200, r.text
        return str(r.json()["model"]["version"])

    with _client(onnx_store, monkeypatch) as c:
        assert served() == "v0001"
        store.promote("text", "v0002")
        _wait_for(lambda: served() == "v0002")
        store.rollback("text")
        _wait_for(lambda: served() == "v0001")
        # a version whose file changed after registration is refused; v0001 keeps serving
        v2 = store.get("text", "v0002")
        v2.variant_path().write_bytes(v2.variant_path().read_bytes() + b"tampered")
        store._set_production("text", "v0002")  # the pointer moved behind the CLI's checks
        import time

        time.sleep(1.0)
        assert served() == "v0001"


def test_broken_production_at_start_serves_the_previous_version(
    onnx_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.preprocess import ImageSpec
    from tests.conftest import onnx_image_model, register_onnx

    spec = ImageSpec(labels=IMAGE_LABELS, height=8, width=8, channels=1)
    register_onnx(onnx_store, "image", onnx_image_model(IMAGE_LABELS), spec.to_dict())  # v0002, production
    onnx_file = onnx_store / "image" / "versions" / "v0002" / "variants" / "fp32.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"tampered")
    with _client(onnx_store, monkeypatch) as c:
        r = c.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")})
        assert r.status_code == 200 and r.json()["model"]["version"] == "v0001"


def test_tampered_only_version_is_not_served(onnx_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx_file = next((onnx_store / "image" / "versions" / "v0001" / "variants").glob("*.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes() + b"tampered")
    with _client(onnx_store, monkeypatch) as c:
        assert c.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")}).status_code == 503
        assert c.get("/readyz").status_code == 503  # it has a production pointer and nothing loaded


def test_limits_answer_4xx_before_decoding_and_long_texts_are_read(
    onnx_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_MAX_IMAGE_PIXELS", "10000")
    with _client(onnx_store, monkeypatch) as c:
        big = png_bytes((200, 200))
        r = c.post("/classify_image", files={"image": ("big.png", big, "image/png")})
        assert r.status_code == 400 and "(40,000 pixels); the limit is 10,000" in r.text
        # a long document is read as training reads it, not refused: only the body size limit answers 413
        long_text = "good film " * 2_200  # 22,000 characters
        r = c.post("/classify_text", json={"texts": ["bad", *[long_text] * 63]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 64
        psd = b"8BPS" + b"\x00" * 40  # Photoshop header: Pillow has a plugin, the server never opens it
        r = c.post("/classify_image", files={"image": ("x.psd", psd, "image/vnd.adobe.photoshop")})
        assert r.status_code == 400 and "not a recognised image format" in r.text


def test_overload_gets_503_with_retry_after() -> None:
    import asyncio

    from serving.service import RequestGuard

    release = asyncio.Event()

    async def slow_app(scope, receive, send):  # type: ignore[no-untyped-def]
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = RequestGuard(slow_app, max_bytes=1000, max_concurrency=1)
    scope = {"type": "http", "method": "POST", "path": "/some_slow_route", "headers": []}

    async def call() -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await guard(scope, receive, send)
        return sent

    async def main() -> tuple[list[dict], list[dict]]:
        first = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        second = await call()  # the first is still in flight
        release.set()
        return await first, second

    first, second = asyncio.run(main())
    assert first[0]["status"] == 200
    assert second[0]["status"] == 503 and (b"retry-after", b"1") in second[0]["headers"]


def test_health_and_docs_routes(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/docs.json").json()
    assert "/classify_image" in spec["paths"] and "/classify_text" in spec["paths"]


def test_classify_text_non_json_body_gets_415(client: TestClient) -> None:
    r = client.post("/classify_text", content=b"good film", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_large_jpeg_is_decoded_at_reduced_size(client: TestClient) -> None:
    from serving.preprocess import decode_image

    buf = io.BytesIO()
    Image.new("L", (4000, 3000), 128).save(buf, format="JPEG")
    # draft mode: DCT scaling keeps at least 4x the model's 8x8 input, far less than 12 megapixels
    decoded = decode_image(buf.getvalue(), draft=(8, 8))
    assert decoded.size[0] < 4000 and decoded.size[0] >= 32 and decoded.size[1] >= 32
    assert client.post("/classify_image", files={"image": ("big.jpg", buf.getvalue(), "image/jpeg")}).status_code == 200


# Modes that need more than Pillow's plain convert("L"): flatten_alpha takes LAB and CMYK through RGB and rescales
# 16-bit and float greyscale to 8 bits, so every one of them is served. The grey each blank image becomes, where
# Kiln's code (not Pillow's colour maths) decides it: no ink is white; a flat 16-bit or float image is black.
ODD_MODES = {("LAB", "TIFF"): None, ("CMYK", "TIFF"): 255, ("I;16", "PNG"): 0, ("F", "TIFF"): 0, ("1", "BMP"): 0}


def _odd_image(mode: str, fmt: str) -> bytes:
    odd = io.BytesIO()
    Image.new(mode, (12, 12)).save(odd, format=fmt)
    return odd.getvalue()


@pytest.mark.parametrize("mode,fmt", list(ODD_MODES))
def test_odd_image_modes_are_converted_and_served(client: TestClient, mode: str, fmt: str) -> None:
    r = client.post("/classify_image", files={"image": (f"x.{fmt.lower()}", _odd_image(mode, fmt), "image/tiff")})
    assert r.status_code == 200, (mode, r.text)
    body = r.json()
    assert body["label"] in IMAGE_LABELS and body["score"] == max(body["scores"].values())
    grey = ODD_MODES[(mode, fmt)]
    if grey is not None:  # answered exactly as the same picture sent as a plain greyscale PNG
        plain = io.BytesIO()
        Image.new("L", (12, 12), grey).save(plain, format="PNG")
        same = client.post("/classify_image", files={"image": ("plain.png", plain.getvalue(), "image/png")})
        assert body == same.json(), mode


def test_image_pillow_cannot_convert_gets_a_clear_400(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.preprocess as preprocess

    original = preprocess.flatten_alpha

    def pillow_without_lab(image: Image.Image) -> Image.Image:  # as some Pillow builds fail on LAB/CMYK TIFFs
        if image.mode == "LAB":
            raise ValueError("conversion from LAB to RGB not supported")
        return original(image)

    monkeypatch.setattr(preprocess, "flatten_alpha", pillow_without_lab)
    r = client.post("/classify_image", files={"image": ("x.tiff", _odd_image("LAB", "TIFF"), "image/tiff")})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "field 'image' is not a usable image: cannot convert a LAB image to L "
        "(conversion from LAB to RGB not supported); send PNG or JPEG"
    )
    assert client.get("/livez").status_code == 200
    r = client.post("/classify_image", files={"image": ("x.tiff", _odd_image("CMYK", "TIFF"), "image/tiff")})
    assert r.status_code == 200, r.text  # other modes still convert


def test_a_failed_reload_is_retried_and_the_stale_gauge_moves(
    onnx_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving import metrics
    from serving.preprocess import ImageSpec
    from serving.store import ModelStore
    from tests.conftest import onnx_image_model, register_onnx

    monkeypatch.setenv("KILN_RELOAD_INTERVAL", "0.1")
    store = ModelStore(onnx_store)
    stale = metrics.STALE.labels(task="image")._value  # the gauges as /metrics exports them
    stale_since = metrics.STALE_SINCE.labels(task="image")._value
    spec = ImageSpec(labels=IMAGE_LABELS, height=8, width=8, channels=1).to_dict()
    with _client(onnx_store, monkeypatch) as c:
        version = register_onnx(onnx_store, "image", onnx_image_model(IMAGE_LABELS, 8, 1), spec, promote=False)
        served = store.get("image", version).variant_path()
        good = served.read_bytes()
        served.write_bytes(b"still being copied")  # the load fails until the file is whole
        store._set_production("image", version)  # the pointer moves before the file is whole (no check)
        _wait_for(lambda: c.get("/readyz").json()["tasks"]["image"].get("failed_loads", 0) >= 1)
        assert stale.get() == 1.0 and stale_since.get() > 0
        r = c.get("/readyz")
        assert r.status_code == 200  # it still serves the earlier version
        status = r.json()["tasks"]["image"]
        assert status["serving"] == "v0001" and status["production"] == version
        assert status["failed_loads"] >= 1 and "does not match" in status["error"] and status["stale_since"]
        served.write_bytes(good)  # healed: the next retry loads it
        _wait_for(lambda: c.get("/readyz").json()["tasks"]["image"]["serving"] == version)
        assert stale.get() == 0.0 and stale_since.get() == 0.0
        r = c.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")})
        assert r.json()["model"]["version"] == version


def test_the_openapi_page_describes_what_is_served(client: TestClient) -> None:
    from serving.service import MAX_TEXTS

    paths = client.get("/docs.json").json()["paths"]
    text = paths["/classify_text"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert text["required"] == ["texts"]
    texts = text["properties"]["texts"]
    assert (texts["minItems"], texts["maxItems"], texts["items"]["type"]) == (1, MAX_TEXTS, "string")
    assert client.post("/classify_text", json={"texts": ["good"] * MAX_TEXTS}).status_code == 200
    assert client.post("/classify_text", json={"texts": ["good"] * (MAX_TEXTS + 1)}).status_code == 400
    assert client.post("/classify_text", json={"texts": []}).status_code == 400
    image = paths["/classify_image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert image["required"] == ["image"] and image["properties"]["image"]["format"] == "binary"
    r = client.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 200


def test_answers_are_exactly_the_documented_responses(client: TestClient) -> None:
    """Each route's 200 body validates against the response model its OpenAPI entry documents, which forbids
    fields it does not list: the served and the documented answer cannot drift apart."""
    from serving.service import ImageAnswer, TextAnswer

    spec = client.get("/docs.json").json()

    def documented(route: str) -> set[str]:
        schema = spec["paths"][route]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        while "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return set(schema["properties"])

    image = client.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")})
    text = client.post("/classify_text", json={"texts": ["good film", "bad"]})
    assert documented("/classify_image") == set(ImageAnswer.model_fields) == set(image.json())
    assert documented("/classify_text") == set(TextAnswer.model_fields) == set(text.json())
    ImageAnswer.model_validate(image.json())
    assert len(TextAnswer.model_validate(text.json()).predictions) == 2


def test_a_score_below_the_tasks_min_confidence_abstains(onnx_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KILN_MIN_CONFIDENCE per task: below it the answer keeps its scores, with label null and abstained true;
    a task without one never abstains; the metrics count the abstention under its own label."""
    from serving import metrics

    monkeypatch.setenv("KILN_MIN_CONFIDENCE", '{"image": 1.0}')
    abstained = metrics.PREDICTIONS.labels(task="image", label=metrics.ABSTAINED, version="v0001")._value
    counted = abstained.get()
    with _client(onnx_store, monkeypatch) as client:
        image = client.post("/classify_image", files={"image": ("a.png", png_bytes(), "image/png")}).json()
        text = client.post("/classify_text", json={"texts": ["good film"]}).json()
    assert image["label"] is None and image["abstained"] is True
    assert image["score"] == max(image["scores"].values()) < 1.0
    assert text["predictions"][0]["abstained"] is False and text["predictions"][0]["label"] in TEXT_LABELS
    assert abstained.get() == counted + 1


def test_a_malformed_min_confidence_stops_the_server_with_the_setting_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from serving.settings import Settings

    monkeypatch.setenv("KILN_MIN_CONFIDENCE", '{"images": 0.5}')
    with pytest.raises(ValidationError, match="min_confidence"):
        Settings()


def test_the_reload_thread_ends_with_the_app(onnx_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    def watchers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "kiln-model-watcher" and t.is_alive()]

    before = set(watchers())
    with _client(onnx_store, monkeypatch) as c:
        assert c.get("/readyz").status_code == 200
        started = set(watchers()) - before
        assert started
    deadline = time.monotonic() + 10
    while set(watchers()) & started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(watchers()) & started
