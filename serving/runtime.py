"""ONNX Runtime sessions for stored models: provider choice, batching and label decoding.

>>> clf = Classifier.from_version(ModelStore(".kiln/store").production_version("image"))  # doctest: +SKIP
>>> clf.classify(clf.prepare_images([open("digit.png", "rb").read()]))[0]["label"]  # doctest: +SKIP
'7'
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serving.drift import DriftCounts
from serving.preprocess import (
    MAX_IMAGE_PIXELS,
    ImageSpec,
    Spec,
    TextSpec,
    encode_texts,
    preprocess_image_bytes,
    spec_from_dict,
    token_index,
)
from serving.store import ModelVersion

log = logging.getLogger(__name__)


@functools.cache
def gpu_present() -> bool:
    """True when the NVIDIA driver reports at least one device.

    onnxruntime-gpu lists the CUDA provider even on machines without a GPU, and asking for it
    there logs loud errors, so we ask the driver itself.
    """
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return False
    return count.value > 0


def choose_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` ('auto', 'cpu' or 'cuda'); CPU is always the fallback."""
    available = ort.get_available_providers()
    want_cuda = device == "cuda" or (device == "auto" and gpu_present())
    if want_cuda and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        log.warning("device 'cuda' requested but no usable GPU/CUDA provider was found; using CPU")
    return ["CPUExecutionProvider"]


def make_session(
    path: Path | str | bytes, device: str = "auto", threads: int = 0, spinning: bool = True
) -> ort.InferenceSession:
    """An ONNX Runtime session on ``device``; ``threads`` intra-op threads (0: ORT's choice, one per core).
    ``spinning=False`` lets those threads sleep between runs instead of busy-waiting: a server that runs several
    requests at once needs the cores for them and its event loop (measured in Kiln's service on 2 cores: 1.1-1.2x
    the throughput on most routes and concurrencies, the same on the rest)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=options, providers=choose_providers(device))


OFFLINE_BATCH = 64  # rows per ONNX Runtime run when a whole split is scored (evaluation, not requests)


class Classifier:
    """One ONNX model plus its preprocessing spec. Thread-safe: ORT sessions allow concurrent run()."""

    def __init__(
        self, session: ort.InferenceSession, spec: Spec, info: dict[str, str] | None = None, min_confidence: float = 0.0
    ):
        self.session = session
        self.min_confidence = min_confidence  # a top-1 score below it abstains: label None
        self.drift: DriftCounts | None = None  # what the server has seen, against the version's training summary
        self.spec = spec
        self.labels = list(spec.labels)
        self.info = info or {}
        self.input_name = session.get_inputs()[0].name
        # Built once per model, not per request: a 20,000-word vocabulary costs milliseconds to index.
        self.index = token_index(spec) if isinstance(spec, TextSpec) else None

    @classmethod
    def from_version(
        cls,
        model: ModelVersion,
        variant: str | None = None,
        device: str = "auto",
        threads: int = 0,
        spinning: bool = True,
    ) -> Classifier:
        spec = spec_from_dict(model.spec())
        session = make_session(model.variant_path(variant), device=device, threads=threads, spinning=spinning)
        info = {"name": model.name, "version": model.version}
        return cls(session, spec, info)

    def prepare_images(self, images: Sequence[bytes], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
        """Image file bytes -> model input batch. Raises preprocess.InvalidImage."""
        assert isinstance(self.spec, ImageSpec), "prepare_images needs an image model"
        return np.stack([preprocess_image_bytes(data, self.spec, max_pixels) for data in images])

    def prepare_texts(self, texts: Sequence[str]) -> np.ndarray:
        assert isinstance(self.spec, TextSpec), "prepare_texts needs a text model"
        return encode_texts(texts, self.spec, self.index)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Model input batch -> probabilities (N, classes)."""
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])

    def predict_all(self, x: np.ndarray, batch_size: int = OFFLINE_BATCH) -> np.ndarray:
        """Probabilities for a whole split, ``batch_size`` rows per run: ONNX Runtime's arena grows to the
        largest batch it ran and keeps it (535 64x64 photos in one run: +0.8 GiB; in runs of 64: +0.14 GiB)."""
        parts = [self.predict(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), dtype=np.float32)

    def classify(self, batch: np.ndarray) -> list[dict[str, Any]]:
        """Model input batch -> [{"label", "score", "scores": {label: prob}, "abstained"}] per row."""
        return self.decode(self.predict(batch))

    def decode(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """Probabilities (N, classes) -> one {"label", "score", "scores", "abstained"} per row: the label is
        None, and abstained True, where the top-1 score is below ``min_confidence``."""
        return [self._decode(row) for row in probs]

    def _decode(self, probs: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(probs))
        scores = {label: shown(p) for label, p in zip(self.labels, probs, strict=True)}
        abstained = bool(probs[best] < self.min_confidence)
        label = None if abstained else self.labels[best]
        return {"label": label, "score": shown(probs[best]), "scores": scores, "abstained": abstained}

    def top(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        """Probabilities (N, classes) -> per row the answer ``decode`` gives, with the ``k`` best labels and their
        scores ("top_k", best first, ties in label order as argmax breaks them) in place of the full score map:
        what batch prediction writes, without building a dict of every class per row."""
        k = max(1, min(k, probs.shape[1]))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        answers = []
        for row, best in zip(probs, order, strict=True):
            top = [{"label": self.labels[j], "score": shown(row[j])} for j in best]
            abstained = bool(row[best[0]] < self.min_confidence)
            label = None if abstained else top[0]["label"]
            answers.append({"label": label, "score": top[0]["score"], "abstained": abstained, "top_k": top})
        return answers


def shown(probability: float) -> float:
    """A probability as every answer shows it: a float to six decimals."""
    return round(float(probability), 6)


def measure_latency(classifier: Classifier, batch: np.ndarray, runs: int) -> dict[str, float]:
    """p50/p95 milliseconds of ``classifier.predict(batch)`` over ``runs`` calls, after one warm-up."""
    return interleaved_latency({"": classifier}, batch, runs)[""]


def interleaved_latency(classifiers: Mapping[str, Classifier], batch: np.ndarray, runs: int) -> dict[str, dict]:
    """p50/p95 milliseconds of ``predict(batch)`` for each classifier over ``runs`` rounds, after one warm-up
    each. Every round times each classifier once, starting one further along each round: a shared machine's
    speed drifts by 2x within minutes, so models timed one after another would compare the minutes."""
    names = list(classifiers)
    for name in names:
        classifiers[name].predict(batch)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        start = round_ % len(names) if names else 0
        for name in names[start:] + names[:start]:
            started = time.perf_counter()
            classifiers[name].predict(batch)
            times[name].append((time.perf_counter() - started) * 1000)
    return {
        name: {"p50": round(float(np.percentile(t, 50)), 4), "p95": round(float(np.percentile(t, 95)), 4)}
        for name, t in times.items()
    }
