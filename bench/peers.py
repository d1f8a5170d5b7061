"""The two servers `make bench` measures `kiln serve` against, on the same store, routes and payloads:

- ``onnx_app``: the ceiling - a bare Starlette app on ONNX Runtime (the production version's served variant,
  Kiln's own preprocessing, the session settings `kiln serve` defaults to, one uvicorn process, no checks beyond
  parsing);
- ``keras_app``: where users start - a FastAPI app calling the trained Keras model's ``predict``.

    $ KILN_PEER_STORE=.kiln/bench/store python -m uvicorn bench.peers:onnx_app --factory --port 8001
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI, File, UploadFile
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.client import free_port
from serving.preprocess import ImageSpec, TextSpec, preprocess_image_bytes
from serving.runtime import Classifier
from serving.settings import Settings
from serving.store import TASKS, ModelStore


class PeerServer:
    """Runs one peer app under uvicorn (one process, access log off) on localhost until the block ends."""

    def __init__(self, factory: str, store: Path, log_path: Path, startup_timeout: float = 180.0):
        self.factory, self.store, self.log_path = factory, store, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PeerServer:
        cmd = [sys.executable, "-m", "uvicorn", f"bench.peers:{self.factory}", "--factory"]
        cmd += ["--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        env = {**os.environ, "KILN_PEER_STORE": str(self.store)}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.factory} exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.url + "/livez", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"{self.factory} did not start in {self.startup_timeout:.0f} s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()


def _store() -> ModelStore:
    return ModelStore(os.environ["KILN_PEER_STORE"])


def _decode(labels: list[str], probs: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "label": labels[int(np.argmax(p))],
            "score": float(np.max(p)),
            "scores": dict(zip(labels, map(float, p), strict=True)),
        }
        for p in probs
    ]


def onnx_app() -> Starlette:
    store = _store()
    # the session settings kiln serve loads with (KILN_ORT_THREADS, KILN_ORT_SPINNING): the ceiling gets everything
    # Kiln gets
    settings = Settings()
    models = {
        t: Classifier.from_version(v, device="cpu", threads=settings.ort_threads, spinning=settings.ort_spinning)
        for t in TASKS
        if (v := store.production_version(t))
    }

    async def image(request: Request) -> JSONResponse:
        form = await request.form()
        model = models["image"]
        data = await form["image"].read()  # type: ignore[union-attr]
        return JSONResponse(model.classify(model.prepare_images([data]))[0])

    async def text(request: Request) -> JSONResponse:
        model = models["text"]
        texts = (await request.json())["texts"]
        return JSONResponse({"predictions": model.classify(model.prepare_texts(texts))})

    async def livez(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [Route("/classify_image", image, methods=["POST"]), Route("/classify_text", text, methods=["POST"])]
    return Starlette(routes=[*routes, Route("/livez", livez)])


def keras_app() -> Any:
    import training.models.layers  # noqa: F401 - registers Kiln's custom layers for loading
    from serving.preprocess import encode_texts, spec_from_dict
    from training.tf_env import keras

    store = _store()
    loaded = {}
    for task in TASKS:
        version = store.production_version(task)
        if version is not None:
            model = keras.models.load_model(version.path / "keras" / "model.keras", compile=False)
            loaded[task] = (model, spec_from_dict(version.manifest["spec"]))
    app = FastAPI()

    @app.post("/classify_image")
    async def image(image: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI's idiom
        model, spec = loaded["image"]
        assert isinstance(spec, ImageSpec)
        batch = preprocess_image_bytes(await image.read(), spec)[None]
        return _decode(list(spec.labels), model.predict(batch, verbose=0))[0]

    @app.post("/classify_text")
    async def text(body: dict[str, list[str]]) -> dict[str, Any]:
        model, spec = loaded["text"]
        assert isinstance(spec, TextSpec)
        probs = model.predict(encode_texts(body["texts"], spec), verbose=0)
        return {"predictions": _decode(list(spec.labels), probs)}

    @app.get("/livez")
    async def livez() -> dict[str, bool]:
        return {"ok": True}

    return app
