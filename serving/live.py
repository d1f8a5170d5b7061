"""The models a server answers with, one per task, kept in step with the store's production pointers.

A watcher thread reads each task's pointer every ``reload_interval`` seconds. When it moves, the new version
is loaded, its served file verified against its recorded hash, and its session warmed with one prediction;
only then is it swapped in (one dict assignment: requests already running keep the Classifier they hold).
A version that fails leaves the current one serving, is logged and counted, and is not retried until the
pointer moves again. At start-up, a production version that fails verification is reported loudly and the
newest earlier version in the pointer's history that loads is served instead.

    >>> live = LiveModels(ModelStore(".kiln/store"), Settings())  # doctest: +SKIP
    >>> live.refresh(); live.get("image")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from serving import metrics
from serving.preprocess import ImageSpec
from serving.runtime import Classifier
from serving.settings import Settings
from serving.store import TASKS, ModelStore, ModelVersion

log = logging.getLogger("serving")


class LiveModels:
    def __init__(self, store: ModelStore, settings: Settings):
        self.store = store
        self.settings = settings
        self._models: dict[str, Classifier] = {}
        self._acted_on: dict[str, str | None] = {}  # the pointer value each task last loaded or failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, task: str) -> Classifier | None:
        return self._models.get(task)

    def ready(self) -> tuple[bool, str]:
        """Ready when every task that must be served (KILN_TASKS, else every task with a production pointer)
        has a model loaded; the message says what is missing."""
        required = self.settings.required_tasks() or [t for t in TASKS if self.store.production(t)]
        missing = [t for t in required if t not in self._models]
        return (not missing, f"waiting for {', '.join(missing)}" if missing else "ready")

    def _load(self, model: ModelVersion) -> Classifier:
        served = model.manifest["variants"][model.manifest["served_variant"]]["file"]
        self.store.verify(model, served)
        classifier = Classifier.from_version(model, device=self.settings.device, threads=self.settings.ort_threads)
        classifier.info["variant"] = model.manifest["served_variant"]
        _warm(classifier)
        return classifier

    def _swap(self, task: str, classifier: Classifier) -> None:
        old = self._models.get(task)
        self._models[task] = classifier
        if old is not None:  # set to 0, not removed: removal does not reach multiprocess metric files
            metrics.MODEL_INFO.labels(task=task, version=old.info["version"], variant=old.info["variant"]).set(0)
        metrics.MODEL_INFO.labels(
            task=task, version=classifier.info["version"], variant=classifier.info["variant"]
        ).set(1)

    def refresh(self) -> None:
        """Load what moved since the last call (every task at the first)."""
        for task in TASKS:
            try:
                pointer = self.store.production(task)
            except Exception as exc:  # noqa: BLE001 - a pointer being rewritten or unreadable: next tick
                log.warning("cannot read the %s production pointer: %s", task, exc)
                continue
            if pointer is None or self._acted_on.get(task) == pointer:
                continue
            self._acted_on[task] = pointer
            self._load_task(task, pointer)

    def _load_task(self, task: str, pointer: str) -> None:
        first = task not in self._models
        candidates = [pointer]
        if first:  # nothing serving yet: fall back through the pointer's history rather than serve nothing
            candidates += [v for v in reversed(self.store.history(task)) if v != pointer]
        for version in candidates:
            try:
                classifier = self._load(self.store.get(task, version))
            except Exception as exc:  # noqa: BLE001 - a bad version must never take the server down
                metrics.RELOADS.labels(task=task, result="failure").inc()
                log.error("cannot serve %s %s: %s", task, version, exc)
                continue
            self._swap(task, classifier)
            metrics.RELOADS.labels(task=task, result="success").inc()
            if version != pointer:
                log.error(
                    "PRODUCTION %s %s FAILED TO LOAD; serving the earlier %s %s instead - fix the store or "
                    "`kiln rollback --task %s`",
                    task,
                    pointer,
                    task,
                    version,
                    task,
                )
            else:
                log.info("serving %s %s (%s)", task, version, classifier.info["variant"])
            return
        if not first:
            log.error("%s stays on %s", task, self._models[task].info["version"])

    def start(self) -> None:
        """Load now, then watch the pointers in a daemon thread."""
        self.refresh()
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="kiln-model-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            self.refresh()


def _warm(classifier: Classifier) -> None:
    """One prediction, so the first request does not pay for ORT's lazy initialisation."""
    spec = classifier.spec
    if isinstance(spec, ImageSpec):
        batch = np.zeros((1, spec.height, spec.width, spec.channels), dtype=np.float32)
    else:
        batch = classifier.prepare_texts(["warm up"])
    classifier.predict(batch)


def describe(classifier: Classifier) -> dict[str, Any]:
    """The ``model`` field of a response: which version (and variant) answered."""
    return dict(classifier.info)
