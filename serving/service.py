"""The Kiln HTTP service: BentoML in front of ONNX Runtime, one model per task from the store.

    $ KILN_STORE=.kiln/store bentoml serve serving.service:Kiln     # what `kiln serve` runs
    $ curl -F image=@digit.png localhost:3000/classify_image
    $ curl -H 'content-type: application/json' -d '{"texts": ["was it fast"]}' localhost:3000/classify_text

Every malformed request gets a 4xx JSON body ``{"error": "..."}`` that says what to fix; schema
violations (wrong JSON types, missing fields) get BentoML's 400 with pydantic's ``detail`` list.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import bentoml
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse, RedirectResponse

from serving import drift, metrics
from serving.live import LiveModels, describe
from serving.preprocess import InvalidImage, TextSpec, blank_texts
from serving.runtime import Classifier
from serving.settings import Settings
from serving.store import ModelStore
from serving.upload import image_file

log = logging.getLogger("serving")

MAX_TEXTS = 256
# A classify request with this much payload or less, arriving while no other request is in flight, is answered on
# the event loop: its work takes about a millisecond, less than the hop to a worker thread and back. Anything
# larger, or anything while others are in flight, runs in a worker thread, so /livez never waits behind a model.
INLINE_BYTES = 16 * 1024
# Classify requests a worker thread answers together when they are waiting: 16 single images run as one batch of
# 16 (on the notMNIST model 124-162 us per run of one image, 86 us per image in runs of 8).
BATCH_REQUESTS = 16


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Answer(JSONResponse):
    """A classify answer, rendered by orjson: a response for ten scores took about 5 us less than JSONResponse's
    json.dumps. The same values (a number may be spelt differently, 1e-6 for 1e-06). Every value is a Python str,
    float, bool or None (runtime.shown, bool()), which orjson takes as json does."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def busy(message: str) -> JSONResponse:
    """503 with Retry-After: the server sheds this request; the same one later will be answered."""
    response = error(503, message)
    response.headers["Retry-After"] = "1"
    return response


class RequestGuard:
    """ASGI middleware that turns malformed requests into specific 4xx answers before BentoML sees them.

    - bodies over the limit get 413: at once when Content-Length says so, else while streaming, so no
      client can make the server spool an unbounded upload;
    - /classify_image must be multipart/form-data (415) with a *file* in field ``image`` (400);
      BentoML itself would answer a missing or misnamed binary field with a 500;
    - /classify_text must be JSON (415): BentoML would try a multipart parse of anything else, and a
      multipart type without a boundary is a 500 there.
    - GET /docs redirects to BentoML's API documentation page; GET /readyz answers with what each task serves;
    - more than ``max_concurrency`` requests in flight (uploading, queued or running) get 503 with Retry-After,
      and so does a request whose body would take the bytes buffered by all requests in flight over
      ``max_buffered``: an overload sheds load instead of queueing without bound or running out of memory.

    Having read and checked the body, it answers the two classify routes itself with the service's Handlers
    (the fast path): BentoML would parse the body a second time and spool the upload to a temporary file,
    which costs more than the model. The classify work (parsing, preprocessing, ONNX Runtime) runs in worker
    threads, at most ``threads`` at once, never on the event loop: /livez, /readyz and /metrics answer at once
    however busy the model is; requests waiting for a thread are answered together (``_queued``). Everything
    else (docs, health, metrics) goes on to BentoML.
    """

    handlers: Handlers | None = None  # set by the service instance of this worker process

    def __init__(
        self, app: Any, max_bytes: int, max_concurrency: int = 64, max_buffered: int | None = None, threads: int = 2
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.max_concurrency = max_concurrency
        self.max_buffered = max_buffered if max_buffered is not None else 4 * max_bytes
        self.in_flight = 0
        self.buffered = 0  # request body bytes held by the requests in flight
        # A plain pool: the bound on classify work at once, and a cheaper hop than anyio's to_thread (measured).
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="classify")
        self.idle = threads  # pool threads not draining the queue
        self.waiting: collections.deque[tuple[tuple[str, bytes, str], asyncio.Future[Any]]] = collections.deque()
        self.lock = threading.Lock()  # the queue and the idle count: the event loop and pool threads share them

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/docs":
            await RedirectResponse("/")(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/readyz" and self.handlers:
            await self.handlers.readiness()(scope, receive, send)
            return
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency:
            await busy(f"the server is at its limit of {self.max_concurrency} requests in flight; retry")(
                scope, receive, send
            )
            return
        self.in_flight += 1  # one event loop per worker: no lock needed
        held = [0]  # this request's share of self.buffered
        try:
            checked = await self._check(scope, receive, held)
            if isinstance(checked, JSONResponse):
                await checked(scope, receive, send)
            elif self.handlers is not None and isinstance(checked, tuple):
                if self.in_flight == 1 and len(checked[1]) <= INLINE_BYTES:
                    answer = self.handlers.answer(*checked)  # alone and small: the thread hop would cost more
                else:
                    answer = await self._queued(checked)
                await answer(scope, receive, send)
            else:
                await self.app(scope, _replay(checked[1] if isinstance(checked, tuple) else checked), send)
        finally:
            self.in_flight -= 1
            self.buffered -= held[0]

    async def _queued(self, checked: tuple[str, bytes, str]) -> JSONResponse:
        """The answer to a classify request from the worker threads. A thread that finds requests waiting takes
        up to BATCH_REQUESTS of them and answers them together (one model run per model), so a busy server
        runs fewer, larger batches and hops between threads once per batch, not once per request."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self.lock:
            self.waiting.append((checked, future))
            start = self.idle > 0
            if start:
                self.idle -= 1
        if start:
            self.pool.submit(self._drain)
        return await future

    def _drain(self) -> None:
        """In a pool thread: answer waiting requests, a batch at a time, until none is left. A thread marks
        itself idle under the same lock hold in which it finds the queue empty, so no request is left behind."""
        while True:
            with self.lock:
                taken: list[tuple[tuple[str, bytes, str], asyncio.Future[Any]]] = []
                while self.waiting and len(taken) < BATCH_REQUESTS:
                    entry = self.waiting.popleft()
                    if not entry[1].done():  # a request cancelled while it waited (its client gone) is skipped
                        taken.append(entry)
                if not taken:  # the queue is empty
                    self.idle += 1
                    return
            try:
                self._answer(taken)
            except BaseException:  # never leave this thread counted as busy
                with self.lock:
                    self.idle += 1
                raise

    def _answer(self, taken: list[tuple[tuple[str, bytes, str], asyncio.Future[Any]]]) -> None:
        assert self.handlers is not None
        try:
            answers: list[Any] = self.handlers.answer_all([checked for checked, _ in taken])
        except Exception as exc:  # handed to the requests' own tasks, which raise it
            answers = [exc] * len(taken)
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[asyncio.Future[Any]], list[Any]]] = {}
        for (_, future), answer in zip(taken, answers, strict=True):
            futures, results = by_loop.setdefault(future.get_loop(), ([], []))
            futures.append(future)
            results.append(answer)
        for loop, (futures, results) in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a loop closed at shutdown: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, futures, results)

    def _too_big(self) -> JSONResponse:
        return error(
            413,
            f"request body is larger than the {self.max_bytes / 1e6:.1f} MB limit "
            "(server setting KILN_MAX_UPLOAD_BYTES)",
        )

    def _hold(self, held: list[int], size: int) -> bool:
        """Count ``size`` more buffered bytes for this request, unless that takes all requests over the cap."""
        if self.buffered + size > self.max_buffered:
            return False
        self.buffered += size
        held[0] += size
        return True

    async def _check(self, scope: dict, receive: Any, held: list[int]) -> JSONResponse | bytes | tuple[str, bytes, str]:
        """The error response; or, for the classify routes, (route, body, content type): the form is parsed with
        the rest of the classify work, in a worker thread; else the buffered body."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return self._too_big()
        is_image = scope["path"] == "/classify_image"
        content_type = headers.get("content-type", "")
        if scope["path"] == "/classify_text" and content_type and not content_type.startswith("application/json"):
            return error(415, 'send the texts as JSON: content-type application/json, body {"texts": ["..."]}')
        if is_image and not content_type.startswith("multipart/form-data"):
            return error(
                415,
                "send the image as multipart/form-data with the file in field 'image' (curl -F image=@photo.png ...)",
            )
        body = bytearray()
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            body += chunk
            if len(body) > self.max_bytes:
                return self._too_big()
            if not self._hold(held, len(chunk)):
                return busy(
                    f"the server holds its limit of {self.max_buffered / 1e6:.1f} MB of request bodies in flight "
                    "(server setting KILN_MAX_BUFFERED_BYTES); retry"
                )
            if not message.get("more_body", False):
                break
        if is_image or scope["path"] == "/classify_text":
            return ("image" if is_image else "text", bytes(body), content_type)
        return bytes(body)


Texts = Annotated[list[str], Field(min_length=1, max_length=MAX_TEXTS)]


class TextInput(BaseModel):
    """The body of /classify_text (the guard validates with it; the API method's signature documents it)."""

    texts: Texts


class ModelInfo(BaseModel):
    """Which model answered: its name, stored version and the variant served."""

    model_config = ConfigDict(extra="forbid")  # the documented fields, no more

    name: str
    version: str
    variant: str


class Prediction(BaseModel):
    """One classified item: the most likely label, its probability, and the probability of every label. With
    KILN_MIN_CONFIDENCE set for the task, a top-1 score below it gives label null and abstained true."""

    model_config = ConfigDict(extra="forbid")  # the documented fields, no more

    label: str | None
    score: float
    scores: dict[str, float]
    abstained: bool = False


class ImageAnswer(Prediction):
    """The answer of /classify_image."""

    model: ModelInfo


class TextAnswer(BaseModel):
    """The answer of /classify_text: one prediction per text, in order."""

    model_config = ConfigDict(extra="forbid")  # the documented fields, no more

    predictions: list[Prediction]
    model: ModelInfo


class Prepared(NamedTuple):
    """A classify request checked and preprocessed, waiting for its model run."""

    task: str
    model: Classifier
    batch: np.ndarray
    payload_bytes: int
    signals: dict[str, np.ndarray]


class Handlers:
    """The work of both classify routes, shared by the guard's fast path and the BentoML API methods: limits
    that need the model's task, the model call (timed), metrics, the response body. Requests that arrive
    together can be answered together (``answer_all``): one ONNX Runtime run for all the rows of each model."""

    def __init__(self, live: LiveModels, settings: Settings):
        self.live = live
        self.settings = settings

    def answer(self, route: str, payload: bytes, content_type: str = "") -> JSONResponse:
        """The answer to a checked classify request: ``payload`` is the multipart body (image, of that
        ``content_type``) or the JSON body (text)."""
        answer = self.answer_all([(route, payload, content_type)])[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def answer_all(self, requests: Sequence[tuple[str, bytes, str]]) -> list[JSONResponse | BaseException]:
        """The answers to several checked classify requests, in order; the rows of those that reach the same model
        run together. A request that fails unexpectedly gets its exception, and only it."""
        prepared: list[Prepared | JSONResponse | BaseException] = []
        for request in requests:
            try:
                prepared.append(self.prepare(*request))
            except Exception as exc:  # one broken request must not fail the others it arrived with
                prepared.append(exc)
        jobs = [p for p in prepared if isinstance(p, Prepared)]
        try:
            done: list[dict[str, Any] | BaseException] = list(self.results(jobs))
        except Exception:
            if len(jobs) < 2:
                raise
            # Run alone, the failing request alone gets its error (requests counted in the metrics before the
            # failure are counted again: failures here are bugs, not load).
            done = [self._alone(job) for job in jobs]
        bodies = iter(done)
        return [self._response(next(bodies)) if isinstance(p, Prepared) else p for p in prepared]

    def _alone(self, job: Prepared) -> dict[str, Any] | BaseException:
        try:
            return self.results([job])[0]
        except Exception as exc:
            return exc

    @staticmethod
    def _response(body: dict[str, Any] | BaseException) -> JSONResponse | BaseException:
        return body if isinstance(body, BaseException) else Answer(body)

    def prepare(self, route: str, payload: bytes, content_type: str = "") -> Prepared | JSONResponse:
        if route == "image":
            upload = image_file(content_type, payload)
            return error(400, upload) if isinstance(upload, str) else self.prepare_image(upload)
        try:
            texts = TextInput.model_validate_json(payload).texts
        except ValidationError as exc:
            detail = json.loads(exc.json(include_url=False, include_context=False, include_input=False))
            return JSONResponse({"error": str(exc).splitlines()[0], "detail": detail}, status_code=400)
        return self.prepare_text(texts)

    def readiness(self) -> JSONResponse:
        """/readyz: 200 when every task that must be served has a model, else 503; the body says, per task, what
        is served, what production is and, while they differ, since when and why (a failing load)."""
        ready, why = self.live.ready()
        return JSONResponse(
            {"ready": ready, "why": why, "tasks": self.live.status()}, status_code=200 if ready else 503
        )

    def model(self, task: str) -> Classifier | JSONResponse:
        model = self.live.get(task)
        if model is None:
            return error(
                503,
                f"no {task} model is in production in this server's store yet; train one with "
                f"`kiln run --task {task}` - this server picks it up within {self.settings.reload_interval:g} s",
            )
        return model

    def image(self, data: bytes) -> dict[str, Any] | JSONResponse:
        return self._one(self.prepare_image(data))

    def text(self, texts: list[str]) -> dict[str, Any] | JSONResponse:
        return self._one(self.prepare_text(texts))

    def _one(self, prepared: Prepared | JSONResponse) -> dict[str, Any] | JSONResponse:
        return prepared if isinstance(prepared, JSONResponse) else self.results([prepared])[0]

    def prepare_image(self, data: bytes) -> Prepared | JSONResponse:
        model = self.model("image")
        if isinstance(model, JSONResponse):
            return model
        if not data:
            return error(400, "the uploaded file in field 'image' is empty (0 bytes)")
        try:
            batch = model.prepare_images([data], self.settings.max_image_pixels)
        except InvalidImage as exc:
            return error(400, f"field 'image' is not a usable image: {exc}")
        return Prepared("image", model, batch, len(data), drift.image_signals([data], batch))

    def prepare_text(self, texts: list[str]) -> Prepared | JSONResponse:
        model = self.model("text")
        if isinstance(model, JSONResponse):
            return model
        # A long text is read as training reads it (serving.preprocess.MAX_TEXT_CHARS): only the request body
        # limit refuses a request for its size.
        batch = model.prepare_texts(texts)
        assert isinstance(model.spec, TextSpec)
        blank = blank_texts(batch, model.spec).tolist()  # as training judges a blank text
        if blank:
            return error(400, f"texts{blank[:10]} have no words (empty, whitespace or punctuation only)")
        payload = sum(len(text.encode("utf-8", "replace")) for text in texts)
        return Prepared("text", model, batch, payload, drift.text_signals(texts, batch, model.spec))

    def results(self, jobs: Sequence[Prepared]) -> list[dict[str, Any]]:
        """The response bodies of prepared requests, in order. The rows of the requests of one model run
        together, in runs of at most MAX_TEXTS rows (as large as one request's), so ONNX Runtime's memory stays
        what the largest single request needs."""
        bodies: list[dict[str, Any]] = [{} for _ in jobs]
        by_model: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            by_model.setdefault(id(job.model), []).append(i)
        for members in by_model.values():
            model = jobs[members[0]].model
            rows = [jobs[i].batch for i in members]
            started = time.perf_counter()
            # one request alone: a single run (as large as its rows), without predict_all's join of the parts
            probs = model.predict(rows[0]) if len(rows) == 1 else model.predict_all(np.concatenate(rows), MAX_TEXTS)
            seconds = time.perf_counter() - started
            offset = 0
            for i in members:
                job, n = jobs[i], len(jobs[i].batch)
                predictions = _counted(job, probs[offset : offset + n], seconds)
                offset += n
                if job.task == "image":
                    bodies[i] = {**predictions[0], "model": describe(model)}
                else:
                    bodies[i] = {"predictions": predictions, "model": describe(model)}
        return bodies


def _counted(job: Prepared, probs: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    """A request's predictions from its rows of a model run, counted (metrics are per version) with its drift
    signals; ``seconds``: the run it was part of."""
    model, task = job.model, job.task
    metrics.child(metrics.INFERENCE_SECONDS, task=task).observe(seconds)
    metrics.child(metrics.REQUEST_BYTES, task=task).observe(job.payload_bytes)
    predictions = model.decode(probs)
    version = model.info["version"]
    labels = collections.Counter(metrics.ABSTAINED if p["abstained"] else p["label"] for p in predictions)
    for label, items in labels.items():
        metrics.child(metrics.PREDICTIONS, task=task, label=label, version=version).inc(items)
    counted = drift.count_request(job.signals | {"score": probs.max(axis=1)})
    for signal, counts in counted.items():
        metrics.observe_counted(metrics.child(metrics.SIGNAL_HISTOGRAMS[signal], task=task, version=version), counts)
    if model.drift is not None:
        model.drift.add(counted)
    return predictions


def _settle(futures: list[asyncio.Future[Any]], answers: list[Any]) -> None:
    """On the event loop: each waiting request gets its answer, or its exception (a request whose client went
    away has been cancelled and gets nothing)."""
    for future, answer in zip(futures, answers, strict=True):
        if future.done():
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)


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


# Per-request access logging costs a worker about as much as the model does on small inputs: off unless asked
# for (KILN_ACCESS_LOG=true). Tracing stays available, but the hot routes skip its middleware unless sampled.
@bentoml.service(
    name="kiln",
    workers=_settings.workers,
    traffic={"timeout": 60},
    logging={"access": {"enabled": _settings.access_log}},
    tracing={"excluded_urls": [] if _settings.trace_requests else ["/classify_image", "/classify_text"]},
)
class Kiln:
    def __init__(self) -> None:
        self.settings = Settings()
        self.store = ModelStore(self.settings.store)
        # Loads what is in production now (none is fine: a first deploy must not crash-loop), then follows
        # the production pointers: promotions and rollbacks reach this server without a restart.
        self.live = LiveModels(self.store, self.settings)
        self.live.start()
        self.handlers = Handlers(self.live, self.settings)
        RequestGuard.handlers = self.handlers  # this worker's guard answers the classify routes with them

    @bentoml.on_shutdown
    def stop_watching(self) -> None:
        """The reload thread ends with the worker (an in-process app's too, when its client closes)."""
        self.live.stop()

    def __is_ready__(self) -> bool:
        ready, why = self.live.ready()
        if not ready:
            log.info("not ready: %s", why)
        return ready

    # The documented API: what the OpenAPI page (/docs.json) and BentoML's clients see, request and response
    # typed by the same models the served route uses. Every HTTP request to these routes is answered by
    # RequestGuard with the same Handlers (one path per route); these methods serve in-process callers.
    @bentoml.api(route="/classify_image")
    def classify_image(self, image: Path) -> ImageAnswer:
        """Classify one image file (multipart field ``image``): label, score, scores per label, and the
        model (name, version, variant) that answered."""
        return ImageAnswer.model_validate(_or_raise(self.handlers.image(image.read_bytes())))

    @bentoml.api(route="/classify_text")
    def classify_text(self, texts: Texts) -> TextAnswer:
        """Classify 1 to 256 texts: one prediction (label, score, scores) per text, in order, and the model
        (name, version, variant) that answered."""
        return TextAnswer.model_validate(_or_raise(self.handlers.text(texts)))


class Refused(bentoml.exceptions.BentoMLException):
    """A Handlers refusal (its status and message) raised for an in-process caller of the API methods."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.error_code = HTTPStatus(status)


def _or_raise(result: dict[str, Any] | JSONResponse) -> dict[str, Any]:
    if isinstance(result, JSONResponse):
        raise Refused(result.status_code, json.loads(bytes(result.body))["error"])
    return result


# The decorator returns a bentoml Service, which mypy still sees as the plain class.
Kiln.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard,
    max_bytes=_settings.max_upload_bytes,
    max_concurrency=_settings.max_concurrency,
    max_buffered=_settings.max_buffered_bytes,
    threads=_settings.inference_threads(),
)
