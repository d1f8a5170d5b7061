"""The Kiln HTTP service: BentoML in front of ONNX Runtime, one model per task from the store.

    $ KILN_STORE=.kiln/store bentoml serve serving.service:Kiln     # what `kiln serve` runs
    $ curl -F image=@digit.png localhost:3000/classify_image
    $ curl -H 'content-type: application/json' -d '{"texts": ["was it fast"]}' localhost:3000/classify_text

Every malformed request gets a 4xx JSON body ``{"error": "..."}`` that says what to fix; schema
violations (wrong JSON types, missing fields) get BentoML's 400 with pydantic's ``detail`` list.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from serving.preprocess import InvalidImage
from serving.runtime import Classifier
from serving.settings import Settings
from serving.store import TASKS, ModelStore

log = logging.getLogger("serving")

MAX_TEXTS = 256


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class RequestGuard:
    """ASGI middleware that turns malformed requests into specific 4xx answers before BentoML sees them.

    - bodies over the limit get 413: at once when Content-Length says so, else while streaming, so no
      client can make the server spool an unbounded upload;
    - /classify_image must be multipart/form-data (415) with a *file* in field ``image`` (400);
      BentoML itself would answer a missing or misnamed binary field with a 500.
    - GET /docs redirects to BentoML's API documentation page.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/docs":
            await RedirectResponse("/")(scope, receive, send)
            return
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        problem = await self._check(scope, receive)
        if isinstance(problem, JSONResponse):
            await problem(scope, receive, send)
            return
        await self.app(scope, _replay(problem), send)

    async def _check(self, scope: dict, receive: Any) -> JSONResponse | bytes:
        """The buffered body when the request is acceptable, else the error response."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        too_big = error(
            413,
            f"request body is larger than the {self.max_bytes / 1e6:.1f} MB limit "
            "(server setting KILN_MAX_UPLOAD_BYTES)",
        )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return too_big
        is_image = scope["path"] == "/classify_image"
        if is_image and not headers.get("content-type", "").startswith("multipart/form-data"):
            return error(
                415,
                "send the image as multipart/form-data with the file in field 'image' (curl -F image=@photo.png ...)",
            )
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return too_big
            if not message.get("more_body", False):
                break
        if is_image:
            problem = await _image_field_problem(scope, bytes(body))
            if problem:
                return error(400, problem)
        return bytes(body)


async def _image_field_problem(scope: dict, body: bytes) -> str | None:
    try:
        form = await Request(scope, _replay(body)).form(max_files=8, max_fields=32)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the client's malformed body
        return f"malformed multipart/form-data body: {exc}"
    try:
        value = form.get("image")
        if value is None:
            return (
                f"missing file field 'image' (fields sent: {', '.join(sorted(form.keys())) or 'none'}); "
                "send curl -F image=@photo.png ..."
            )
        if isinstance(value, str):
            return "field 'image' must be a file upload, not a text value (curl -F image=@photo.png ...)"
        return None
    finally:
        await form.close()


def _replay(body: bytes) -> Any:
    """An ASGI receive callable that yields an already-read body once."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


_settings = Settings()


@bentoml.service(name="kiln", workers=_settings.workers, traffic={"timeout": 60})
class Kiln:
    def __init__(self) -> None:
        self.settings = Settings()
        self.store = ModelStore(self.settings.store)
        self.models: dict[str, Classifier] = {}
        self.reload()

    def reload(self) -> None:
        """Load the production version of every task. A later reload loop calls this on pointer changes."""
        for task in TASKS:
            try:
                model = self.store.production_version(task)
                if model is None:
                    log.warning("no production %s model in %s; /classify_%s answers 503", task, self.store.root, task)
                    continue
                served = model.manifest["variants"][model.manifest["served_variant"]]["file"]
                self.store.verify(model, served)
                self.models[task] = Classifier.from_version(
                    model, device=self.settings.device, threads=self.settings.ort_threads
                )
                log.info("serving %s %s %s (%s)", task, model.name, model.version, served)
            except Exception as exc:  # noqa: BLE001 - one bad model must not stop the other task serving
                log.error("cannot load production %s model, not serving it: %s", task, exc)

    def __is_ready__(self) -> bool:
        return bool(self.models)

    def _model(self, task: str) -> Classifier | JSONResponse:
        model = self.models.get(task)
        if model is None:
            return error(
                503,
                f"no {task} model is in production in this server's store; "
                f"train one with `kiln run --task {task}` and restart the service",
            )
        return model

    @bentoml.api(route="/classify_image")
    def classify_image(self, image: Path) -> dict[str, Any]:
        """Classify one image file (multipart field ``image``): label, score, scores per label, model."""
        model = self._model("image")
        if isinstance(model, JSONResponse):
            return model  # type: ignore[return-value]
        data = image.read_bytes()
        if not data:
            return error(400, "the uploaded file in field 'image' is empty (0 bytes)")  # type: ignore[return-value]
        try:
            batch = model.prepare_images([data])
        except InvalidImage as exc:
            return error(400, f"field 'image' is not a usable image: {exc}")  # type: ignore[return-value]
        return {**model.classify(batch)[0], "model": model.info}

    @bentoml.api(route="/classify_text")
    def classify_text(self, texts: Annotated[list[str], Field(min_length=1, max_length=MAX_TEXTS)]) -> dict[str, Any]:
        """Classify 1 to 256 texts: one prediction (label, score, scores) per text, in order."""
        model = self._model("text")
        if isinstance(model, JSONResponse):
            return model  # type: ignore[return-value]
        blank = [i for i, text in enumerate(texts) if not text.strip()]
        if blank:
            return error(400, f"texts{blank[:10]} are empty or whitespace; every text needs content")  # type: ignore[return-value]
        return {"predictions": model.classify(model.prepare_texts(texts)), "model": model.info}


# The decorator returns a bentoml Service, which mypy still sees as the plain class.
Kiln.add_asgi_middleware(RequestGuard, max_bytes=_settings.max_upload_bytes)  # type: ignore[attr-defined]
